"""A real `qrflow api` process for tests about the server itself, and a poller that checks, all the while,
that /healthz and a redirect keep answering: the "no stall for anyone else" of issue #13."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psutil

from app.kit.redis_server import free_port
from tests.conftest import Caller, _issue

# The functional bound the issue sets: no answer of the poller's takes longer, whatever the attack does.
MAX_STALL_SECONDS = 1.0


class GatewayProcess:
    def __init__(self, backend, tmp_path: Path, wait: bool = True, **env: str) -> None:
        """Started, and answering unless `wait` is false (then call wait_until_answering: several start
        side by side)."""
        self.port = free_port()
        self.tmp_path = tmp_path
        self.backend = backend
        env = {
            **os.environ,
            "QRFLOW_DATABASE_URL": backend.settings.database_url,
            "QRFLOW_REDIS_URL": backend.settings.redis_url,
            "QRFLOW_DATA_DIR": str(tmp_path / "data"),
            "QRFLOW_API_PORT": str(self.port),
            "QRFLOW_LOG_FORMAT": "json",
            **env,
        }
        tmp_path.mkdir(parents=True, exist_ok=True)
        self.log_path = tmp_path / "api.log"
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen([sys.executable, "-m", "app.cli", "api"], env=env, stdout=log, stderr=log)
        if wait:
            self.wait_until_answering()

    def wait_until_answering(self) -> None:
        # A wide margin: a gateway took 38 s to import and bind on a host busy with other test runs.
        deadline = time.monotonic() + 120
        while not self._answers():
            assert self.process.poll() is None, self.log_path.read_text()
            assert time.monotonic() < deadline, "the gateway did not start"
            time.sleep(0.1)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def address(self) -> tuple[str, int]:
        return ("127.0.0.1", self.port)

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=60)

    def caller(self, workspace: str, scope=None) -> Caller:
        from app.identity.models import Scope

        return _issue(self.backend.settings, workspace, scope or Scope.WRITE)

    def rss(self) -> int:
        return psutil.Process(self.process.pid).memory_info().rss

    def dynamic_slug(self, caller: Caller) -> str:
        with self.client() as client:
            response = client.post(
                "/v1/qrcodes", json={"kind": "url", "data": {"url": "https://example.com/poll"}}, headers=caller.headers
            )
        assert response.status_code == 202, response.text
        return response.json()["slug"]

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def _answers(self) -> bool:
        try:
            return httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False


class Poller:
    """Asks for /healthz and HEAD /r/{slug} in turn, on fresh connections, until stopped, from a process of
    its own (so that the attack's client threads do not hold it up); keeps the longest wait and any answer
    that was not the expected one."""

    def __init__(self, gateway: GatewayProcess, slug: str) -> None:
        self.gateway = gateway
        self.slug = slug
        self.report = gateway.tmp_path / f"poller-{slug}.json"
        self.process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Poller:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tests.integration.poller", self.gateway.url, self.slug, str(self.report)]
        )
        deadline = time.monotonic() + 30
        while self.answered() < 2:  # warm: the link cache, the first connections
            assert self.process.poll() is None and time.monotonic() < deadline, "the poller did not start"
            time.sleep(0.05)
        return self

    def __exit__(self, *exc: object) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        self.process.wait(30)

    def state(self) -> dict:
        try:
            return json.loads(self.report.read_text())
        except (FileNotFoundError, ValueError):  # not written yet, or being replaced
            return {"answered": 0, "longest": 0.0, "slowest": "", "wrong": []}

    def answered(self) -> int:
        return self.state()["answered"]

    def check(self) -> None:
        """After an attack: the answers so far were right and prompt, and the next round comes too."""
        after = self.answered() + 2
        deadline = time.monotonic() + 10
        while self.answered() < after and time.monotonic() < deadline:
            time.sleep(0.05)
        state = self.state()
        assert state["answered"] >= after, "the poller got no answer after the attack"
        assert not state["wrong"], state["wrong"][:5]
        assert state["longest"] < MAX_STALL_SECONDS, (
            f"{state['slowest']} took {state['longest']:.2f} s during the attack"
        )
