"""The scan shipper: the process that publishes a gateway's spooled scans (app/scans/spool.py says why
it is a process of its own, and what the spool guarantees).

Each gateway process spawns one. A pass runs whenever the gateway closes a segment, and at least every
flush interval:
- every ADOPT_EVERY seconds, it takes the directories of dead gateways (unlocked), whose segments are all
  complete;
- it publishes complete segments, oldest first, one `scans.record` task per up to `max_batch` events:
  its gateway's (all but the newest, which is being written; all of them once the gateway has stopped),
  then the adopted ones; each is deleted once the broker has accepted all of it;
- after a failed publish it waits, doubling from the flush interval up to BACKOFF_MAX.
It exits after one last pass when its gateway stops, and when its gateway is gone (its wake-up pipe reads
end-of-file): the kernel has then unlocked the gateway's directory, and whichever shipper adopts it
publishes it.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import signal
import time
from collections.abc import Callable
from multiprocessing.connection import Connection
from pathlib import Path

import structlog

from app.kit.logging import configure_logging
from app.kit.messaging import task_publisher
from app.kit.settings import Settings
from app.scans.events import ScanRecorded
from app.scans.spool import ADOPT_EVERY, BACKOFF_MAX, SEGMENT_GLOB, ShipperState, release_directory

log = structlog.get_logger(__name__)

# A directory being claimed (see ScanSpool.open) is renamed within microseconds; one this old was left by
# a process that died claiming it, and never holds segments.
_ABANDONED_CLAIM_SECONDS = 60


def ship(settings: Settings, directory: Path, state: ShipperState, woken: Connection) -> None:
    """The shipper process's entry point. `woken`: the read end of a pipe the gateway writes to when it
    closes a segment."""
    # Ctrl-C in a terminal reaches the whole process group; the gateway decides when its shipper stops.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    configure_logging(settings, service="scan-shipper")
    publish = task_publisher(ScanRecorded.task_name)
    Shipper(settings, directory, state, woken, publish).run()


class GatewayGone(Exception):
    pass


class Shipper:
    def __init__(
        self,
        settings: Settings,
        directory: Path,
        state: ShipperState,
        woken: Connection,
        publish: Callable[[list[str]], bool],
    ) -> None:
        self._root = settings.spool_dir
        self._dir = directory
        self._max_batch = settings.scan_batch_max_events
        self._interval = settings.scan_flush_interval_ms / 1000
        self._state = state
        self._woken = woken
        self._publish = publish
        self._adopted: dict[Path, int] = {}  # a dead gateway's directory → our fd holding its lock

    def run(self) -> None:
        self._state.adopted_waiting.value = 0
        next_adoption = 0.0
        backoff = 0.0
        while True:
            stopping = bool(self._state.stopping.value)
            try:
                if time.monotonic() >= next_adoption:
                    self._adopt_orphans()
                    next_adoption = time.monotonic() + ADOPT_EVERY
                delivered = self._publish_ready(final=stopping)
            except Exception:  # the disk, most likely: keep going and try again
                log.exception("scan_shipper_pass_failed")
                delivered = False
            if stopping:
                return
            backoff = 0.0 if delivered else min(BACKOFF_MAX, max(self._interval, backoff * 2))
            try:
                self._sleep(backoff or self._interval, woken_by_segments=delivered)
            except GatewayGone:
                log.warning("scan_shipper_orphaned", directory=self._dir.name)
                return

    def _sleep(self, seconds: float, *, woken_by_segments: bool) -> None:
        """Until the next pass: cut short by a newly closed segment (unless backing off from a broker that
        refused the last one) and by the gateway stopping."""
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0 and not self._state.stopping.value:
            if not self._woken.poll(left):
                continue
            if not os.read(self._woken.fileno(), 4096):
                raise GatewayGone
            if woken_by_segments:
                return

    def _publish_ready(self, *, final: bool) -> bool:
        own = sorted(self._dir.glob(SEGMENT_GLOB))
        for path in own if final else own[:-1]:
            published = self._publish_segment(path)
            if published is None:
                return False
            self._state.published_own.value += published[0]
            self._state.published_own_bytes.value += published[1]
        for directory in list(self._adopted):
            for path in sorted(directory.glob(SEGMENT_GLOB)):
                published = self._publish_segment(path)
                if published is None:
                    return False
                self._state.adopted_waiting.value -= published[0]
            release_directory(directory, self._adopted.pop(directory))
        return True

    def _publish_segment(self, path: Path) -> tuple[int, int] | None:
        """Publish a whole segment and delete it: (events, bytes), or None if the broker refused it."""
        data = path.read_bytes()
        events = _events(data)
        for start in range(0, len(events), self._max_batch):
            if not self._publish(events[start : start + self._max_batch]):
                self._state.failures.value += 1
                return None
        path.unlink(missing_ok=True)
        self._state.published.value += len(events)
        return len(events), len(data)

    def _adopt_orphans(self) -> None:
        for directory in self._root.iterdir():
            if directory == self._dir or directory in self._adopted or not directory.is_dir():
                continue
            if directory.name.startswith("."):
                if time.time() - directory.stat().st_mtime > _ABANDONED_CLAIM_SECONDS:
                    shutil.rmtree(directory, ignore_errors=True)
                continue
            try:
                fd = os.open(directory / "lock", os.O_RDWR)
            except FileNotFoundError:  # being removed by whoever emptied it
                continue
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:  # its gateway (or another shipper) holds it
                os.close(fd)
                continue
            scans = sum(len(_events(path.read_bytes())) for path in directory.glob(SEGMENT_GLOB))
            self._adopted[directory] = fd
            self._state.adopted_waiting.value += scans
            log.info("scan_spool_adopted", directory=directory.name, scans=scans)


def _events(segment: bytes) -> list[str]:
    """A segment's events, each line as it is: the worker validates them (a line torn by a failed write,
    whose scan append() reported as dropped, is refused there and logged). Split at newline bytes only:
    str.splitlines would also split inside a user agent holding U+0085."""
    return [line.decode("utf-8", "replace") for line in segment.split(b"\n") if line]
