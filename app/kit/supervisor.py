"""`qrflow up`: every service of the platform as child processes of one supervisor.

Children run in their own sessions, so a Ctrl-C reaches only the supervisor, which then stops them in
order (SIGTERM, then SIGKILL after a grace period); on Linux each child also gets SIGTERM from the kernel
if the supervisor itself dies (PR_SET_PDEATHSIG), so nothing is left orphaned. A child that exits on
its own is restarted with backoff; one that keeps crashing brings the whole platform down, loudly.
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import structlog

log = structlog.get_logger("qrflow.supervisor")

MAX_RESTARTS_PER_MINUTE = 5


def _die_with_parent() -> None:
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


@dataclass
class Service:
    name: str
    argv: list[str]
    process: subprocess.Popen[bytes] | None = None
    restarts: list[float] = field(default_factory=list)

    def start(self, env: dict[str, str]) -> None:
        self.process = subprocess.Popen(
            self.argv, env=env, start_new_session=True, preexec_fn=_die_with_parent
        )
        log.info("service_started", service=self.name, pid=self.process.pid)


class Supervisor:
    def __init__(self, services: list[Service], env: dict[str, str], grace_seconds: float = 20.0) -> None:
        self.services = services
        self.env = env
        self.grace_seconds = grace_seconds
        self._stopping = False

    def start(self) -> None:
        # Handlers first: a Ctrl-C while services start or warm up must still stop them in order.
        signal.signal(signal.SIGINT, self.request_stop)
        signal.signal(signal.SIGTERM, self.request_stop)
        for service in self.services:
            service.start(self.env)

    def request_stop(self, *_: object) -> None:
        self._stopping = True

    @property
    def stopping(self) -> bool:
        return self._stopping

    def run(self, on_tick: Callable[[], None] | None = None) -> int:
        """Watch the children until asked to stop; returns the exit status for `qrflow up`."""
        status = 0
        while not self._stopping:
            for service in self.services:
                if service.process is not None and service.process.poll() is not None:
                    if not self._restart(service):
                        status = 1
                        self._stopping = True
                        break
            if on_tick:
                on_tick()
            time.sleep(0.2)
        self.stop()
        return status

    def _restart(self, service: Service) -> bool:
        code = service.process.returncode if service.process else None
        now = time.monotonic()
        service.restarts = [t for t in service.restarts if now - t < 60] + [now]
        if len(service.restarts) > MAX_RESTARTS_PER_MINUTE:
            log.error("service_keeps_crashing", service=service.name, exit_code=code)
            return False
        log.warning("service_exited_restarting", service=service.name, exit_code=code)
        time.sleep(min(2 ** len(service.restarts) * 0.25, 5))
        service.start(self.env)
        return True

    def stop(self) -> None:
        """Idempotent: signals only the services still running."""
        running = [s for s in reversed(self.services) if s.process and s.process.poll() is None]
        for service in running:
            log.info("service_stopping", service=service.name)
            service.process.send_signal(signal.SIGTERM)  # type: ignore[union-attr]
        deadline = time.monotonic() + self.grace_seconds
        for service in running:
            try:
                service.process.wait(max(0.0, deadline - time.monotonic()))  # type: ignore[union-attr]
            except subprocess.TimeoutExpired:
                log.warning("service_killed", service=service.name)
                os.killpg(service.process.pid, signal.SIGKILL)  # type: ignore[union-attr]
                service.process.wait()  # type: ignore[union-attr]
