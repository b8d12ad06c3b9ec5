"""The scan spool: where a scan becomes durable before its redirect is answered.

One Celery message per scan caps near 1.4k scans/s, and publishing inside the redirect makes it ~8x
slower (shared/MEASUREMENTS.md). So each gateway process appends its scans to a local file and one
background thread, the flusher, publishes them in batches: one `scans.record` task per up to
`max_batch` events, at least every `interval` seconds. A burst of 10,000 scans is about ten tasks.

What it guarantees, and how:
- Durable before answered. `append` is a single write(2) of one JSON line to a file opened O_APPEND.
  When it returns, the line is in the kernel's page cache, which outlives the process however it dies
  (SIGKILL, OOM). A crash of the whole host can lose what the kernel had not yet written to disk: the
  last seconds, the same bound Redis's own `appendfsync everysec` has.
- Leaves only when accepted. A segment file is deleted once the broker has accepted every batch made
  from it. While the broker is away, segments pile up on disk and the flusher retries with backoff
  (at most BACKOFF_MAX seconds apart); scans are delivered when it is back.
- Stored exactly once. A segment half-published when its process died is published again in full; the
  workers insert on the event id with ON CONFLICT DO NOTHING.
- Several processes. Each owns a directory `spool/<random>/` for its lifetime, claimed by an exclusive
  flock on its `lock` file. The kernel drops that lock when the process dies, whatever kills it; every
  flusher looks for unlocked directories (at start, then every ADOPT_EVERY seconds), takes the lock and
  publishes what it finds. A killed gateway's scans are delivered by the next one to start, or by any
  other still running.

Bounds: past `max_bytes` on disk (an outage of hours), new scans are still redirected but dropped and
counted in qrflow_scans_dropped_total rather than filling the disk.
"""

from __future__ import annotations

import fcntl
import itertools
import os
import shutil
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import structlog
from prometheus_client import Counter, Gauge

log = structlog.get_logger(__name__)

SPOOLED = Counter("qrflow_scans_spooled_total", "Scan events written to the local spool")
DROPPED = Counter("qrflow_scans_dropped_total", "Scans redirected but not recorded (spool full or unwritable)")
PUBLISHED = Counter("qrflow_scans_published_total", "Scan events accepted by the broker")
PUBLISH_FAILURES = Counter("qrflow_scan_publish_failures_total", "Batches of scans the broker did not accept")
DEPTH = Gauge("qrflow_scan_spool_depth", "Scan events on local disk, waiting for the broker")

ADOPT_EVERY = 5.0
BACKOFF_MAX = 5.0
_SEGMENT_GLOB = "seg-*.jsonl"


@dataclass
class _Segment:
    path: Path
    events: int
    size: int


class ScanSpool:
    def __init__(
        self,
        root: Path,
        publish: Callable[[list[str]], bool],
        *,
        max_batch: int,
        interval: float,
        max_bytes: int,
    ) -> None:
        self._root = root
        self._publish = publish
        self._max_batch = max_batch
        self._interval = interval
        self._max_bytes = max_bytes
        self._lock = threading.Lock()  # the current segment, between the event loop and the flusher
        self._wake = threading.Event()
        self._stopping = False
        self._ready: deque[_Segment] = deque()  # closed segments, oldest first
        self._adopted: dict[Path, int] = {}  # another process's directory → our fd holding its lock
        self._bytes = 0
        self._thread: threading.Thread | None = None

    @property
    def directory(self) -> Path:
        return self._dir

    # --- the event loop's side -------------------------------------------------------------------

    def append(self, line: bytes) -> bool:
        """Write one event (a JSON line); False when it could not be kept (counted as dropped)."""
        with self._lock:
            if self._bytes >= self._max_bytes:
                DROPPED.inc()
                return False
            try:
                written = os.write(self._fd, line)
            except OSError as exc:  # disk full, I/O error: the person still gets the redirect
                DROPPED.inc()
                log.error("scan_spool_write_failed", error=repr(exc))
                return False
            self._waiting += 1
            self._bytes += written
            waiting = self._waiting
        SPOOLED.inc()
        DEPTH.inc()
        if waiting >= self._max_batch:
            self._wake.set()
        return True

    # --- life cycle ------------------------------------------------------------------------------

    def open(self) -> None:
        """Claim a directory of our own and start the flusher (which first adopts any orphans)."""
        self._root.mkdir(parents=True, exist_ok=True)
        # Claimed under a hidden name, renamed once locked: no other process can take a directory
        # whose owner has not locked it yet.
        name = uuid.uuid4().hex
        claiming = self._root / f".{name}"
        claiming.mkdir()
        self._lock_fd = os.open(claiming / "lock", os.O_RDWR | os.O_CREAT, 0o600)
        fcntl.flock(self._lock_fd, fcntl.LOCK_EX)
        self._dir = self._root / name
        claiming.rename(self._dir)
        self._sequence = itertools.count(1)
        self._fd, self._path = self._new_segment()
        self._waiting = 0
        self._thread = threading.Thread(target=self._flush_forever, name="scan-spool-flusher", daemon=True)
        self._thread.start()

    def close(self, timeout: float = 5.0) -> None:
        """Publish what is waiting (one attempt), then let go. What the broker did not take stays on
        disk, unlocked, for the next gateway to adopt."""
        if self._thread is None:
            return
        self._stopping = True
        self._wake.set()
        self._thread.join(timeout)
        self._thread = None
        os.close(self._fd)
        for directory, fd in [*self._adopted.items(), (self._dir, self._lock_fd)]:
            self._release(directory, fd)

    # --- the flusher's side ------------------------------------------------------------------------

    def _flush_forever(self) -> None:
        next_adoption = 0.0
        backoff = 0.0
        while True:
            self._wake.wait(self._interval)
            self._wake.clear()
            stopping = self._stopping
            try:
                if time.monotonic() >= next_adoption:
                    self._adopt_orphans()
                    next_adoption = time.monotonic() + ADOPT_EVERY
                self._rotate()
                delivered = self._publish_ready()
            except Exception:  # the disk, most likely: keep the thread alive and try again
                log.exception("scan_spool_flush_failed")
                delivered = False
            if stopping:
                return
            if delivered:
                backoff = 0.0
            else:
                backoff = min(BACKOFF_MAX, max(self._interval, backoff * 2))
                self._wake.wait(backoff)  # close() cuts the wait short

    def _new_segment(self) -> tuple[int, Path]:
        path = self._dir / f"seg-{next(self._sequence):012d}.jsonl"
        return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600), path

    def _rotate(self) -> None:
        """Close the current segment (if anything was written to it) so it can be published."""
        with self._lock:
            if self._waiting == 0:
                return
            closed = _Segment(self._path, self._waiting, os.fstat(self._fd).st_size)
            old_fd = self._fd
            self._fd, self._path = self._new_segment()
            self._waiting = 0
        os.close(old_fd)
        self._ready.append(closed)

    def _publish_ready(self) -> bool:
        while self._ready:
            segment = self._ready[0]
            if not self._publish_segment(segment):
                return False
            self._ready.popleft()
            segment.path.unlink(missing_ok=True)
            with self._lock:
                self._bytes -= segment.size
            DEPTH.dec(segment.events)
            self._release_emptied_adoptions()
        return True

    def _publish_segment(self, segment: _Segment) -> bool:
        # Lines go out as they are: the worker validates each event (a line torn by a failed write, whose
        # scan append() reported as dropped, is refused there and logged).
        # Split on b"\n" only: str.splitlines would also split inside a user agent holding U+0085.
        events = [line.decode("utf-8", "replace") for line in segment.path.read_bytes().split(b"\n") if line]
        for start in range(0, len(events), self._max_batch):
            batch = events[start : start + self._max_batch]
            if not self._publish(batch):
                PUBLISH_FAILURES.inc()
                return False
            PUBLISHED.inc(len(batch))
        return True

    def _adopt_orphans(self) -> None:
        for directory in self._root.iterdir():
            if directory == self._dir or directory in self._adopted or not directory.is_dir():
                continue
            if directory.name.startswith("."):
                # Being claimed (see open), or left by a process that died claiming it; such a directory
                # never holds segments, so once it is old it is simply removed.
                if time.time() - directory.stat().st_mtime > 60:
                    shutil.rmtree(directory, ignore_errors=True)
                continue
            try:
                fd = os.open(directory / "lock", os.O_RDWR)
            except FileNotFoundError:  # being removed by whoever emptied it
                continue
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:  # its process is alive
                os.close(fd)
                continue
            segments = [_Segment(p, _count_lines(p), p.stat().st_size) for p in sorted(directory.glob(_SEGMENT_GLOB))]
            self._adopted[directory] = fd
            self._ready.extend(segments)
            waiting = sum(s.events for s in segments)
            with self._lock:
                self._bytes += sum(s.size for s in segments)
            DEPTH.inc(waiting)
            log.info("scan_spool_adopted", directory=directory.name, scans=waiting, segments=len(segments))
        self._release_emptied_adoptions()

    def _release_emptied_adoptions(self) -> None:
        waiting_in = {segment.path.parent for segment in self._ready}
        for directory, fd in list(self._adopted.items()):
            if directory not in waiting_in:
                del self._adopted[directory]
                self._release(directory, fd)

    def _release(self, directory: Path, lock_fd: int) -> None:
        """Remove a directory whose segments are all published (empty ones included); else just unlock."""
        try:
            if not any(p.stat().st_size > 0 for p in directory.glob(_SEGMENT_GLOB)):
                shutil.rmtree(directory)
        except FileNotFoundError:  # another flusher emptied and removed it first
            pass
        os.close(lock_fd)  # unlocks


def _count_lines(path: Path) -> int:
    return path.read_bytes().count(b"\n")
