"""RabbitMQ for the tests that run on both brokers: a virtual host of a test's own on the machine's RabbitMQ
(QRFLOW_TEST_RABBITMQ_URL, default 127.0.0.1:5672), so parallel runs do not share queues; and, for a test
that stops the broker and brings it back, a RabbitMQ node of the test's own on free ports and a temporary
directory, so that it never touches the machine's RabbitMQ service."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
import uuid
from pathlib import Path
from urllib.parse import quote, urlsplit

import pytest
from kombu import Connection

from app.kit.redis_server import free_port

# The tests that run on both brokers: a selection (rendering, a batch, scans through the spool, a killed
# worker, a stopped broker), as each RabbitMQ run of them adds its time to the suite's.
ON_BOTH_BROKERS = pytest.mark.parametrize("broker", ["redis", "rabbitmq"])

ADMIN_URL = os.environ.get("QRFLOW_TEST_RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:5672/")
# The Debian package's /usr/sbin/rabbitmq-server switches to the rabbitmq user (and that user's files); the
# script it calls runs a node as whoever starts it.
_SERVER_BINARIES = ("/usr/lib/rabbitmq/bin/rabbitmq-server", "rabbitmq-server")


def reachable(url: str, timeout: float = 2) -> bool:
    try:
        with Connection(url, connect_timeout=timeout) as connection:
            connection.connect()
        return True
    except Exception:  # refused, timed out, refused login: in every case, not a broker to use
        return False


def require_rabbitmq() -> None:
    """Skips unless the machine's RabbitMQ answers; CI sets QRFLOW_TEST_RABBITMQ_URL to make it a failure."""
    if reachable(ADMIN_URL):
        return
    if "QRFLOW_TEST_RABBITMQ_URL" in os.environ:
        pytest.fail(f"QRFLOW_TEST_RABBITMQ_URL={ADMIN_URL} is unreachable")
    pytest.skip(f"no RabbitMQ at {ADMIN_URL}; set QRFLOW_TEST_RABBITMQ_URL")


class Vhost:
    """A virtual host of its own on the machine's RabbitMQ, made with rabbitmqctl and deleted after."""

    def __init__(self) -> None:
        require_rabbitmq()
        self.name = f"qrflow-test-{uuid.uuid4().hex[:12]}"
        parts = urlsplit(ADMIN_URL)
        self.user = parts.username or "guest"
        self._ctl("add_vhost", self.name)
        self._ctl("set_permissions", "-p", self.name, self.user, ".*", ".*", ".*")
        self.url = f"{parts.scheme}://{parts.netloc}/{quote(self.name, safe='')}"

    def delete(self) -> None:
        self._ctl("delete_vhost", self.name)

    @staticmethod
    def _ctl(*args: str) -> None:
        subprocess.run(["rabbitmqctl", "-q", *args], check=True, capture_output=True, timeout=120)


class RabbitNode:
    """A RabbitMQ node of its own: its own node name, AMQP and distribution ports, data, logs and Erlang
    cookie (HOME) in `directory`. Its data stays across stop() and start(), as a restarted broker's does."""

    def __init__(self, directory: Path) -> None:
        self.binary = next((found for b in _SERVER_BINARIES if (found := shutil.which(b))), None)
        if self.binary is None:
            pytest.skip("no rabbitmq-server on this machine")
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.env = {
            **os.environ,
            "HOME": str(directory),  # its own Erlang cookie, made on first start
            "RABBITMQ_NODENAME": f"qrflow-test-{uuid.uuid4().hex[:8]}@localhost",
            "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
            "RABBITMQ_NODE_PORT": str(self.port),
            "RABBITMQ_DIST_PORT": str(free_port()),
            "RABBITMQ_MNESIA_BASE": str(directory / "mnesia"),
            "RABBITMQ_LOG_BASE": str(directory / "log"),
            "RABBITMQ_PID_FILE": str(directory / "node.pid"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(directory / "enabled_plugins"),  # none: a faster start
            "RABBITMQ_CONFIG_FILE": str(directory / "rabbitmq"),  # none: the defaults
        }
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"amqp://guest:guest@127.0.0.1:{self.port}//"

    def start(self, timeout: float = 180) -> RabbitNode:
        with (self.directory / "server.log").open("ab") as log:
            self.process = subprocess.Popen(
                [self.binary], env=self.env, cwd=self.directory, stdout=log, stderr=log, start_new_session=True
            )
        # 14 s on an idle 2-core host; the margin is for one busy with other test runs.
        deadline = time.monotonic() + timeout
        while not reachable(self.url, timeout=1):
            assert self.process.poll() is None, (self.directory / "server.log").read_text(errors="replace")
            assert time.monotonic() < deadline, "the RabbitMQ node did not start"
            time.sleep(0.5)
        return self

    def stop(self) -> None:
        """A clean stop (SIGTERM), as a service manager does; the node's whole process group after it."""
        if self.process is None or self.process.poll() is not None:
            return
        # The Erlang VM (its pid file), not the script that started it: the script exits when it does.
        pid_file = self.directory / "node.pid"
        os.kill(int(pid_file.read_text()) if pid_file.exists() else self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
        # Erlang's helpers (the disk monitor's shell) follow the node out.
        try:
            os.killpg(self.process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
