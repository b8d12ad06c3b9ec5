"""The scan spool: where a scan becomes durable before its redirect is answered.

One Celery message per scan caps near 1.4k scans/s, and publishing inside the redirect makes it ~8x
slower (shared/MEASUREMENTS.md). So each gateway process appends its scans to local files, and a
shipper, a process of its own (app/scans/shipper.py), publishes them in batches: one `scans.record`
task per segment of up to `max_batch` events, each segment closed after at most `interval` seconds. A
burst of 10,000 scans is about ten tasks.

Why a process and not a thread: publishing 1,000 events (JSON, base64, a Redis round trip) holds the GIL
for milliseconds, and the redirect's event loop waited for it: with a flusher thread the gateway served
23k redirects/s at p99 8.6 ms; without the publishing in its process, 27k/s at p99 4.5 ms (bench/results/ingest.md).

What it guarantees, and how:
- Durable before answered. `append` is a single write(2) of one JSON line to a file opened O_APPEND.
  When it returns, the line is in the kernel's page cache, which outlives the process however it dies
  (SIGKILL, OOM). A crash of the whole host can lose what the kernel had not yet written to disk: the
  last seconds, the same bound Redis's own `appendfsync everysec` has.
- Leaves only when accepted. The gateway writes to one segment at a time, `seg-<n>.jsonl`, and opens
  `seg-<n+1>` before it closes `seg-<n>`: so in a live directory every segment but the newest is
  complete. The shipper publishes complete segments and deletes each once the broker has accepted it.
  While the broker is away, segments pile up on disk and the shipper retries with backoff (at most
  BACKOFF_MAX seconds apart); scans are delivered when it is back.
- Stored exactly once. A segment half-published when a process died is published again in full; the
  workers insert on the event id with ON CONFLICT DO NOTHING.
- Several processes. Each gateway owns a directory `spool/<random>/` for its lifetime, claimed by an
  exclusive flock on its `lock` file. The kernel drops that lock when the process dies, whatever kills
  it; every shipper looks for unlocked directories (at start, then every ADOPT_EVERY seconds), takes the
  lock and publishes what it finds. A killed gateway's scans are delivered by the next one to start, or
  by any other still running. A shipper whose gateway died exits; one that dies alone is restarted.

Bounds: past `max_bytes` on disk (an outage of hours), new scans are still redirected but dropped and
counted in qrflow_scans_dropped_total rather than filling the disk.
"""

from __future__ import annotations

import asyncio
import fcntl
import itertools
import multiprocessing
import os
import shutil
import threading
import uuid
import weakref
from collections.abc import Iterator
from multiprocessing.context import SpawnProcess
from pathlib import Path

import structlog
from prometheus_client import REGISTRY, Counter
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from app.kit.settings import Settings

log = structlog.get_logger(__name__)

SPOOLED = Counter("qrflow_scans_spooled_total", "Scan events written to the local spool")
DROPPED = Counter("qrflow_scans_dropped_total", "Scans redirected but not recorded (spool full or unwritable)")

ADOPT_EVERY = 5.0
BACKOFF_MAX = 5.0
SEGMENT_GLOB = "seg-*.jsonl"
# Spawned, not forked: the gateway has threads (and uvloop), which a fork would copy half-way.
_PROCESSES = multiprocessing.get_context("spawn")


class ShipperState:
    """What the gateway and its shipper share, in shared memory: the shipper's figures (read by /metrics
    and by the disk bound) and whether the gateway is stopping."""

    def __init__(self) -> None:
        # Unlocked: each has one writer, and an aligned 64-bit load or store is atomic; the redirect reads
        # published_own_bytes on every scan.
        self.published = _PROCESSES.RawValue("q", 0)  # events accepted by the broker, adopted ones included
        self.published_own = _PROCESSES.RawValue("q", 0)  # events of this gateway's own segments
        self.published_own_bytes = _PROCESSES.RawValue("q", 0)  # and their bytes
        # Events in dead gateways' directories that the shipper holds and has not published yet. A shipper
        # sets it to 0 when it starts: a dead predecessor's adoptions were unlocked with it, and are
        # adopted (and counted) again.
        self.adopted_waiting = _PROCESSES.RawValue("q", 0)
        self.failures = _PROCESSES.RawValue("q", 0)  # publishes the broker did not accept
        self.stopping = _PROCESSES.RawValue("b", 0)  # the gateway has closed its last segment


class ScanSpool:
    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._root = settings.spool_dir
        self._max_batch = settings.scan_batch_max_events
        self._interval = settings.scan_flush_interval_ms / 1000
        self._max_bytes = settings.scan_spool_max_bytes
        # The current segment, between the event loop and close() (which lifespan runs in a thread).
        self._lock = threading.Lock()
        self._closed = True
        self._spooled = 0
        self._written_bytes = 0

    @property
    def directory(self) -> Path:
        return self._dir

    # --- the event loop's side -------------------------------------------------------------------

    def append(self, line: bytes) -> bool:
        """Write one event (a JSON line); False when it could not be kept (counted as dropped)."""
        with self._lock:
            if self._closed or self._written_bytes - self._state.published_own_bytes.value >= self._max_bytes:
                DROPPED.inc()
                return False
            try:
                self._written_bytes += os.write(self._fd, line)
            except OSError as exc:  # disk full, I/O error: the person still gets the redirect
                DROPPED.inc()
                log.error("scan_spool_write_failed", error=repr(exc))
                return False
            self._spooled += 1
            self._waiting += 1
            if self._waiting >= self._max_batch:
                self._rotate()
        SPOOLED.inc()
        return True

    def _tick(self) -> None:
        """Every `interval`: close a segment that has waited long enough; keep a shipper running."""
        with self._lock:  # and so not once close() has begun, which lets the shipper exit
            if self._closed:
                return
            if self._waiting:
                self._rotate()
            if not self._shipper.is_alive():
                log.error("scan_shipper_died", exitcode=self._shipper.exitcode)
                self._start_shipper()
        self._loop.call_later(self._interval, self._tick)

    def _rotate(self) -> None:
        """Open the next segment, then close the current one (the order the shipper relies on); the lock
        is held."""
        old_fd = self._fd
        self._fd = self._new_segment()
        os.close(old_fd)
        self._waiting = 0
        self._wake_shipper()

    def _wake_shipper(self) -> None:
        try:
            os.write(self._wake.fileno(), b"\0")
        except BlockingIOError:  # the pipe is full of wake-ups the shipper has not read yet: it will
            pass

    # --- life cycle ------------------------------------------------------------------------------

    def open(self) -> None:
        """Claim a directory of our own, start the shipper (which first adopts any orphans) and the
        segment timer. Called on the event loop."""
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
        self._fd = self._new_segment()
        self._waiting = 0
        self._state = ShipperState()
        # A segment was closed: publish now rather than at the shipper's next tick. The shipper holds the
        # read end only, so when this process dies, however it dies, the shipper reads end-of-file.
        self._woken, self._wake = _PROCESSES.Pipe(duplex=False)
        os.set_blocking(self._wake.fileno(), False)
        self._closed = False
        self._start_shipper()
        self._loop = asyncio.get_running_loop()
        self._loop.call_later(self._interval, self._tick)
        _OPEN_SPOOLS.add(self)

    def close(self, timeout: float = 5.0) -> None:
        """Close the last segment and give the shipper `timeout` seconds to publish what is left (one
        attempt), then let go. What the broker did not take stays on disk, unlocked, for the next gateway
        to adopt."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            os.close(self._fd)
        self._state.stopping.value = 1
        self._wake_shipper()
        self._shipper.join(timeout)
        if self._shipper.is_alive():
            log.warning("scan_shipper_slow_to_stop", timeout=timeout)
            self._shipper.kill()
            self._shipper.join()
        _OPEN_SPOOLS.discard(self)
        self._wake.close()
        self._woken.close()
        release_directory(self._dir, self._lock_fd)

    def _start_shipper(self) -> None:
        from app.scans.shipper import ship  # the shipper's imports (Celery) load in its process only

        self._shipper: SpawnProcess = _PROCESSES.Process(
            target=ship,
            args=(self._settings, self._dir, self._state, self._woken),
            name="qrflow-scan-shipper",
            daemon=True,
        )
        self._shipper.start()

    def _new_segment(self) -> int:
        path = self._dir / f"seg-{next(self._sequence):012d}.jsonl"
        return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)

    # --- figures -----------------------------------------------------------------------------------

    def depth(self) -> int:
        """Scan events on local disk, waiting for the broker (this gateway's and those its shipper adopted)."""
        return self._spooled - self._state.published_own.value + self._state.adopted_waiting.value


def release_directory(directory: Path, lock_fd: int) -> None:
    """Remove a spool directory whose segments are all published (empty ones included); else just unlock it."""
    try:
        if not any(p.stat().st_size > 0 for p in directory.glob(SEGMENT_GLOB)):
            shutil.rmtree(directory)
    except FileNotFoundError:  # another shipper emptied and removed it first
        pass
    os.close(lock_fd)  # unlocks


_OPEN_SPOOLS: weakref.WeakSet[ScanSpool] = weakref.WeakSet()


class _ShipperFigures:
    """/metrics figures kept by the shipper processes, summed over this process's open spools."""

    def collect(self) -> Iterator[Metric]:
        spools = list(_OPEN_SPOOLS)
        published = CounterMetricFamily("qrflow_scans_published", "Scan events accepted by the broker")
        published.add_metric([], sum(s._state.published.value for s in spools))
        failures = CounterMetricFamily("qrflow_scan_publish_failures", "Batches of scans the broker did not accept")
        failures.add_metric([], sum(s._state.failures.value for s in spools))
        depth = GaugeMetricFamily("qrflow_scan_spool_depth", "Scan events on local disk, waiting for the broker")
        depth.add_metric([], sum(s.depth() for s in spools))
        yield from (published, failures, depth)


REGISTRY.register(_ShipperFigures())
