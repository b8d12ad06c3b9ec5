"""`qrflow up` end to end: a fresh data dir, no Redis running, a real QR code through real processes,
then Ctrl-C, and nothing left behind.

The test run's own redis-server (tests/conftest.py) is deliberately not used: QRFLOW_REDIS_URL points at a
free port where nothing listens, so `qrflow up` has to start a redis-server of its own, and stop it.
"""

from __future__ import annotations

import io
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import httpx
import psutil
import pytest
import zxingcpp
from PIL import Image

from app.kit.redis_server import free_port
from app.launcher import FIRST_ADMIN_EMAIL

pytestmark = pytest.mark.e2e

PROJECT_ROOT = Path(__file__).resolve().parents[2]
READY_TIMEOUT = 90.0
RENDER_TIMEOUT = 60.0
STOP_TIMEOUT = 60.0
TAIL_CHARS = 6000
KEY_PREFIX = "QRFLOW_API_KEY="
ADMIN_PASSWORD_PREFIX = "QRFLOW_ADMIN_PASSWORD="
# Inherited by every process `qrflow up` starts, grandchildren included: finds any that escaped the tree
# recorded before shutdown (reparented, or started after it was recorded).
MARKER_VARIABLE = "E2E_QRFLOW_UP_RUN_ID"  # not QRFLOW_-prefixed: no setting of qrflow

T = TypeVar("T")


@dataclass
class Up:
    """One `qrflow up` child, its output files, and every process of its tree seen so far."""

    process: subprocess.Popen[bytes]
    stdout_path: Path
    stderr_path: Path
    api: str
    flower: str
    redis_port: int
    marker: str  # the value of MARKER_VARIABLE in the child's environment, inherited by all it starts
    # pid -> create_time: a pid alone may be reused by an unrelated process after ours exit.
    seen: dict[int, float] = field(default_factory=dict)
    names: dict[int, str] = field(default_factory=dict)

    def stdout(self) -> str:
        return self.stdout_path.read_text(errors="replace")

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def tail(self) -> str:
        return (
            f"\n--- qrflow up (pid {self.process.pid}, exit code {self.process.poll()}) stdout, tail ---\n"
            f"{self.stdout()[-TAIL_CHARS:]}"
            f"\n--- stderr, tail ---\n{self.stderr()[-TAIL_CHARS:]}"
        )

    def api_key(self) -> str | None:
        for line in self.stdout().splitlines():
            if line.startswith(KEY_PREFIX):
                return line.removeprefix(KEY_PREFIX).strip()
        return None

    def collect_tree(self) -> dict[int, float]:
        """Record the supervisor and all its descendants (their create_time identifies them)."""
        try:
            root = psutil.Process(self.process.pid)
            members = [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            return self.seen
        for member in members:
            try:
                if member.pid not in self.seen:
                    self.seen[member.pid] = member.create_time()
                    self.names[member.pid] = " ".join(member.cmdline())
            except psutil.NoSuchProcess:
                pass
        return self.seen

    def _marked(self) -> list[psutil.Process]:
        marked = []
        for candidate in psutil.process_iter():
            try:
                if candidate.pid != os.getpid() and candidate.environ().get(MARKER_VARIABLE) == self.marker:
                    marked.append(candidate)
            except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
                continue
        return marked

    def _still_running(self) -> list[psutil.Process]:
        """The recorded tree, plus any process carrying our marker, minus what has exited.

        A zombie has exited; it only awaits reaping by its parent (or by PID 1, which in a container
        may never reap), so it does not count.
        """
        found: dict[int, psutil.Process] = {}
        for pid, created in self.seen.items():
            if not psutil.pid_exists(pid):
                continue
            try:
                member = psutil.Process(pid)
                if member.create_time() == created:
                    found[pid] = member
            except psutil.NoSuchProcess:
                continue
        for member in self._marked():
            found.setdefault(member.pid, member)
        running = []
        for member in found.values():
            try:
                if member.is_running() and member.status() != psutil.STATUS_ZOMBIE:
                    running.append(member)
            except psutil.NoSuchProcess:
                continue
        return running

    def survivors(self) -> list[str]:
        alive = []
        for member in self._still_running():
            try:
                alive.append(f"pid {member.pid} (parent {member.ppid()}): {' '.join(member.cmdline())[:200]}")
            except psutil.NoSuchProcess:
                continue
        return alive

    def kill_survivors(self) -> None:
        for member in self._still_running():
            try:
                member.kill()
            except psutil.NoSuchProcess:
                pass


def _child_env(data_dir: Path, api_port: int, flower_port: int, redis_port: int, marker: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("QRFLOW_")}
    env.update(
        {MARKER_VARIABLE: marker},
        QRFLOW_DATA_DIR=str(data_dir),
        QRFLOW_API_PORT=str(api_port),
        QRFLOW_FLOWER_PORT=str(flower_port),
        QRFLOW_REDIS_URL=f"redis://127.0.0.1:{redis_port}/0",
    )
    # `app` must import from the checkout even though the child's cwd is elsewhere.
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(PROJECT_ROOT), env.get("PYTHONPATH")]))
    env["PYTHONUNBUFFERED"] = "1"
    return env


def _free_ports(count: int) -> list[int]:
    ports: list[int] = []
    while len(ports) < count:
        port = free_port()
        if port not in ports:
            ports.append(port)
    return ports


def _wait_for(what: str, up: Up, check: Callable[[], T | None], timeout: float, interval: float = 0.25) -> T:
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result is not None and result is not False:
            return result
        if up.process.poll() is not None:
            raise AssertionError(f"qrflow up exited while waiting for {what}{up.tail()}")
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}{up.tail()}")
        time.sleep(interval)


def _status(url: str, **kwargs: object) -> int | None:
    try:
        return httpx.get(url, timeout=2, **kwargs).status_code  # type: ignore[arg-type]
    except httpx.HTTPError:
        return None


def _stop(up: Up, timeout: float = STOP_TIMEOUT) -> int | None:
    """Ctrl-C, as a terminal would send it; None if `qrflow up` did not exit in time."""
    if up.process.poll() is None:
        up.process.send_signal(signal.SIGINT)
    try:
        return up.process.wait(timeout)
    except subprocess.TimeoutExpired:
        return None


@contextmanager
def qrflow_up(
    tmp_path: Path, data_dir: Path, run: str, command: list[str] | None = None, **settings: str | int
) -> Iterator[Up]:
    """Start `qrflow up` (or `command`, run from the checkout); whatever happens, stop it and kill whatever
    of its tree is left. `settings` override the child's QRFLOW_ variables (api_port=..., redis_url=...)."""
    api_port, flower_port, redis_port = _free_ports(3)
    api_port, flower_port = int(settings.get("api_port", api_port)), int(settings.get("flower_port", flower_port))
    workdir = tmp_path / f"cwd-{run}"  # no stray .env is picked up from here
    workdir.mkdir()
    marker = uuid.uuid4().hex
    stdout_path, stderr_path = tmp_path / f"up-{run}.stdout", tmp_path / f"up-{run}.stderr"
    env = _child_env(data_dir, api_port, flower_port, redis_port, marker)
    env.update({f"QRFLOW_{name.upper()}": str(value) for name, value in settings.items()})
    with open(stdout_path, "wb") as stdout, open(stderr_path, "wb") as stderr:
        process = subprocess.Popen(
            command or [sys.executable, "-m", "app.cli", "up"],
            cwd=PROJECT_ROOT if command else workdir,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=stdout,
            stderr=stderr,
        )
    up = Up(
        process, stdout_path, stderr_path,
        api=f"http://127.0.0.1:{api_port}", flower=f"http://127.0.0.1:{flower_port}",
        redis_port=redis_port, marker=marker,
    )
    try:
        yield up
    finally:
        if process.poll() is None:
            up.collect_tree()
            if _stop(up) is None:
                up.collect_tree()
                process.kill()
                process.wait(10)
        up.kill_survivors()


def _wait_until_up(up: Up, expect_key: bool) -> str | None:
    """Wait for the banner (printed only once /readyz answered) and for /readyz ourselves."""
    _wait_for("the banner", up, lambda: "qrflow is up" in up.stderr() or None, READY_TIMEOUT)
    if expect_key:
        _wait_for(f"the {KEY_PREFIX} line on stdout", up, up.api_key, 10)
    _wait_for("GET /readyz == 200", up, lambda: _status(f"{up.api}/readyz") == 200, 10)
    return up.api_key()


def _sign_in_as_the_first_admin(up: Up) -> None:
    """The banner names the dashboard and prints the first admin's password once; it signs in."""
    lines = [line for line in up.stdout().splitlines() if line.startswith(ADMIN_PASSWORD_PREFIX)]
    assert len(lines) == 1, up.tail()
    assert "Dashboard" in up.stderr() and "/app" in up.stderr() and FIRST_ADMIN_EMAIL in up.stderr(), up.tail()
    password = lines[0].removeprefix(ADMIN_PASSWORD_PREFIX).strip()
    with httpx.Client(base_url=up.api, timeout=10) as client:
        signed_in = client.post("/app/sign-in", data={"email": FIRST_ADMIN_EMAIL, "password": password})
        assert signed_in.status_code == 303, f"{signed_in.status_code} {signed_in.text}{up.tail()}"
        first = client.get("/app/people")  # a one-time password: the admin chooses their own first
        assert first.headers.get("location") == "/app/account/password", f"{first.status_code}{up.tail()}"
        csrf = re.search(r'name="csrf_token" value="([^"]+)"', client.get(first.headers["location"]).text).group(1)
        own = "an admin's own password"
        chosen = client.post("/app/account/password", data={
            "csrf_token": csrf, "current_password": password, "new_password": own, "repeated_password": own})
        assert chosen.status_code == 303, f"{chosen.status_code} {chosen.text}{up.tail()}"
        people = client.get("/app/people")
        assert people.status_code == 200 and FIRST_ADMIN_EMAIL in people.text, up.tail()


def _stop_and_check_no_orphans(up: Up) -> None:
    up.collect_tree()
    commands = list(up.names.values())
    for expected in ("redis-server", "app.cli api", "app.cli worker -Q qr", "app.cli beat", "app.cli flower"):
        assert any(expected in c for c in commands), f"no {expected!r} in the tree: {commands}{up.tail()}"
    code = _stop(up)
    assert code is not None, f"qrflow up did not exit within {STOP_TIMEOUT:.0f}s of SIGINT{up.tail()}"
    assert code == 0, f"qrflow up exited with {code} after SIGINT, expected 0{up.tail()}"
    # `qrflow up` waits for every child before it exits, so anything still running now is an orphan. The
    # short grace only covers a process the kernel is still tearing down.
    deadline = time.monotonic() + 1
    while (left := up.survivors()) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not left, "processes of qrflow up outlived it:\n" + "\n".join(left) + up.tail()


def _check_the_logs_read_well(up: Up) -> None:
    """What a new user saw in the terminal (issue #14): no warning repeated per process or about workers
    that are merely not up yet, every line saying which service wrote it, and a last line saying it is over."""
    stdout, stderr = up.stdout(), up.stderr()
    both = stdout + stderr
    assert "superuser privileges" not in both, up.tail()  # said once, as running_as_root, when root
    assert ("running_as_root" in stderr) == (os.geteuid() == 0), up.tail()
    assert "Inspect method" not in both, up.tail()
    assert "Warm shutdown (MainProcess)" not in stdout, up.tail()  # a structured line on stderr instead
    assert any("Warm shutdown" in line and "service=worker" in line for line in stderr.splitlines()), up.tail()
    beat_lines = [line for line in stderr.splitlines() if "celery.beat" in line]
    assert beat_lines and all("service=beat" in line for line in beat_lines), beat_lines
    assert "qrflow_stopped" in stderr.strip().splitlines()[-1], up.tail()


def _create_and_fetch_a_code(up: Up, key: str) -> dict:
    headers = {"Authorization": f"Bearer {key}"}
    with httpx.Client(base_url=up.api, headers=headers, timeout=10) as client:
        created = client.post("/v1/qrcodes", json={"kind": "text", "data": {"text": "hello from qrflow up"}})
        assert created.status_code == 202, f"{created.status_code} {created.text}{up.tail()}"
        location = created.headers.get("location")
        assert location, f"202 without Location: {created.headers}{up.tail()}"
        code_id = created.json()["id"]

        def rendered() -> dict | None:
            response = client.get(location)
            assert response.status_code == 200, f"{response.status_code} {response.text}{up.tail()}"
            body = response.json()
            return None if body["status"] == "pending" else body

        code = _wait_for(f"code {code_id} to render", up, rendered, RENDER_TIMEOUT)
        assert code["status"] == "ready", f"{code}{up.tail()}"
        assert code["content"] == "hello from qrflow up", code

        png = client.get(f"/v1/qrcodes/{code_id}/image.png")
        assert png.status_code == 200, f"{png.status_code} {png.text}{up.tail()}"
        assert png.headers["content-type"] == "image/png", png.headers
        with Image.open(io.BytesIO(png.content)) as image:
            decoded = [barcode.text for barcode in zxingcpp.read_barcodes(image)]
        assert decoded == [code["content"]], f"the PNG decodes to {decoded}, expected {code['content']!r}"
        return code


def test_qrflow_up_starts_everything_serves_a_code_and_stops_cleanly(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"

    # --- first start: a fresh data dir, no Redis anywhere ----------------------------------------------
    with qrflow_up(tmp_path, data_dir, "first") as up:
        key = _wait_until_up(up, expect_key=True)
        assert key and key.startswith("qrf_"), f"unexpected key {key!r}{up.tail()}"
        assert "so qrflow started its own redis-server" in up.stderr(), up.tail()
        assert f"on 127.0.0.1:{up.redis_port}" in up.stderr(), up.tail()

        code = _create_and_fetch_a_code(up, key)
        _sign_in_as_the_first_admin(up)

        docs = httpx.get(f"{up.api}/docs", timeout=5)
        assert docs.status_code == 200, f"GET /docs: {docs.status_code}{up.tail()}"

        # Flower is not part of readiness: give it a moment to listen.
        _wait_for("Flower to listen", up, lambda: _status(up.flower) is not None, 30)
        assert (status := _status(up.flower)) == 401, f"Flower without credentials: {status}{up.tail()}"
        password = (data_dir / "flower-password").read_text().strip()
        assert (status := _status(up.flower, auth=("admin", "wrong-" + password))) == 401, f"{status}{up.tail()}"
        assert (status := _status(up.flower, auth=("admin", password))) == 200, f"Flower as admin: {status}{up.tail()}"

        _stop_and_check_no_orphans(up)
        _check_the_logs_read_well(up)

    # --- second start on the same data dir: the workspace exists, no new key -------------------------
    with qrflow_up(tmp_path, data_dir, "second") as again:
        assert _wait_until_up(again, expect_key=False) is None, f"a second key was printed{again.tail()}"
        assert KEY_PREFIX not in again.stdout(), again.tail()
        stderr = again.stderr()
        assert "a workspace exists already" in stderr, again.tail()
        assert "qrflow apikey create --workspace" in stderr, again.tail()
        assert ADMIN_PASSWORD_PREFIX not in again.stdout() and "qrflow user create" in stderr, again.tail()

        # The first key and its code survived the restart.
        listed = httpx.get(f"{again.api}/v1/qrcodes", headers={"Authorization": f"Bearer {key}"}, timeout=5)
        assert listed.status_code == 200, f"{listed.status_code} {listed.text}{again.tail()}"
        assert [c["id"] for c in listed.json()["items"]] == [code["id"]]

        _stop_and_check_no_orphans(again)
