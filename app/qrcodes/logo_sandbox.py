"""Rasterising an SVG logo in a child process with CPU-time, wall-time and memory limits.

resvg holds the GIL while it draws, and what it costs is up to the file: a thread does not help, so no
process that serves others (the gateway, a worker's pool process) ever runs it. Each render goes to a
child (`python -m app.qrcodes.logo_sandbox`) that sets its own limits before it reads a job:
RLIMIT_AS (memory), RLIMIT_CORE 0, and per job RLIMIT_CPU (the kernel sends SIGXCPU, which ends it); the
parent kills it when the wall-clock budget passes (a child waiting on nothing uses no CPU). A child that
hit a limit is gone; the next job starts another.

Children are kept warm and reused (starting one, Python and resvg, costs ~0.1 s; bench/logo_sandbox.py),
at most `MAX_CHILDREN` at once per process, each for at most `_JOBS_PER_CHILD` jobs. The parent only
waits on a pipe, which releases the GIL: the gateway calls this from a thread.

Frames on the pipes: a 4-byte big-endian length, then the bytes. A job is JSON (width, height, cpu
seconds) and the SVG text; an answer is one status byte (0 done, 1 refused) and the PNG or the reason.
"""

from __future__ import annotations

import json
import os
import resource
import select
import signal
import struct
import subprocess
import sys
import threading
import time
from dataclasses import dataclass

_LENGTH = struct.Struct(">I")
_DONE, _REFUSED = b"\x00", b"\x01"
_JOBS_PER_CHILD = 200
_IDLE_CHILDREN = 2
MAX_CHILDREN = max(2, os.cpu_count() or 1)


@dataclass(frozen=True)
class Limits:
    cpu_seconds: int
    wall_seconds: float
    memory_bytes: int


# The gateway's check draws the logo once at the largest size a worker draws it (logo_files.MAX_DRAW_SIDE):
# a logo that needs more than this there is refused. The wall-clock limit is several times the CPU limit:
# the child is niced, and on a busy host waits for a core.
CHECK_LIMITS = Limits(cpu_seconds=3, wall_seconds=20.0, memory_bytes=512 * 1024 * 1024)
# A worker's draw: twice the check's CPU time, so a logo that passed the check is drawn on a slower host.
DRAW_LIMITS = Limits(cpu_seconds=6, wall_seconds=25.0, memory_bytes=768 * 1024 * 1024)


class SandboxFailed(ValueError):
    """The logo could not be drawn within its limits, or resvg refused it; the message says which.
    A ValueError: a worker marks the code failed with it, the gateway's check answers 422 with it."""


def render_svg(text: str, width: int, height: int, limits: Limits) -> bytes:
    """resvg's PNG of the SVG at width×height pixels, drawn in a limited child process."""
    job = json.dumps({"width": width, "height": height, "cpu_seconds": limits.cpu_seconds}).encode()
    with _POOL.slot():
        child = _POOL.take(limits.memory_bytes)
        try:
            answer = child.run(job + b"\n" + text.encode("utf-8"), limits)
        except BaseException:
            child.kill()
            raise
        _POOL.give_back(child)
    status, body = answer[:1], answer[1:]
    if status != _DONE:
        raise SandboxFailed(body.decode("utf-8", "replace"))
    return body


class _Child:
    def __init__(self, memory_bytes: int) -> None:
        self.memory_bytes = memory_bytes
        self.jobs = 0
        self.process = subprocess.Popen(
            [sys.executable, "-m", "app.qrcodes.logo_sandbox", str(memory_bytes)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,  # resvg's own warnings; the answer says what went wrong
        )

    def run(self, job: bytes, limits: Limits) -> bytes:
        self.jobs += 1
        try:
            self.process.stdin.write(_LENGTH.pack(len(job)) + job)
            self.process.stdin.flush()
        except (BrokenPipeError, OSError):
            raise SandboxFailed(self._death()) from None
        deadline = time.monotonic() + limits.wall_seconds
        header = self._read(_LENGTH.size, deadline, limits)
        return self._read(_LENGTH.unpack(header)[0], deadline, limits)

    def _read(self, size: int, deadline: float, limits: Limits) -> bytes:
        fd = self.process.stdout.fileno()
        # poll, not select: a gateway with many connections has descriptors past select's 1024.
        waiting = select.poll()
        waiting.register(fd, select.POLLIN)
        chunks, missing = [], size
        while missing:
            left = deadline - time.monotonic()
            if left <= 0 or not waiting.poll(left * 1000):
                self.kill()
                raise SandboxFailed(f"drawing the SVG took longer than {limits.wall_seconds:g} s")
            chunk = os.read(fd, min(missing, 1 << 20))
            if not chunk:
                raise SandboxFailed(self._death(limits))
            chunks.append(chunk)
            missing -= len(chunk)
        return b"".join(chunks)

    def _death(self, limits: Limits | None = None) -> str:
        code = self.process.wait()
        if limits and code == -signal.SIGXCPU:
            return f"drawing the SVG took more than {limits.cpu_seconds} s of CPU time"
        if limits and code in (-signal.SIGABRT, -signal.SIGSEGV, -signal.SIGKILL):
            # resvg aborts when an allocation fails: RLIMIT_AS is what it ran into.
            return f"drawing the SVG needed more than {limits.memory_bytes // 2**20} MiB of memory"
        return f"the SVG renderer stopped (exit code {code})"

    @property
    def reusable(self) -> bool:
        return self.process.poll() is None and self.jobs < _JOBS_PER_CHILD

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()
        for pipe in (self.process.stdin, self.process.stdout):
            try:
                pipe.close()
            except OSError:
                pass


class _Pool:
    """Warm children of this process. After a fork (Celery's prefork pool) the inherited ones belong to
    the parent: a child process starts its own."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._slots = threading.BoundedSemaphore(MAX_CHILDREN)
        self._idle: list[_Child] = []
        self._owner = os.getpid()

    def slot(self) -> threading.BoundedSemaphore:
        return self._slots

    def take(self, memory_bytes: int) -> _Child:
        with self._lock:
            if self._owner != os.getpid():
                self._idle, self._owner = [], os.getpid()
            for index, child in enumerate(self._idle):
                if child.memory_bytes == memory_bytes:
                    return self._idle.pop(index)
        return _Child(memory_bytes)

    def give_back(self, child: _Child) -> None:
        with self._lock:
            if child.reusable and len(self._idle) < _IDLE_CHILDREN and self._owner == os.getpid():
                self._idle.append(child)
                return
        child.kill()

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for child in idle:
            child.kill()


_POOL = _Pool()
close = _POOL.close


# --- the child ---------------------------------------------------------------------------------------


def _serve(memory_bytes: int) -> None:
    resource.setrlimit(resource.RLIMIT_AS, (memory_bytes, memory_bytes))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    os.nice(max(0, 10 - os.nice(0)))  # at least 10, as workers are by default: the gateway's redirects go first
    import resvg_py  # after the limit: what it maps counts too

    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    while header := stdin.read(_LENGTH.size):
        frame = stdin.read(_LENGTH.unpack(header)[0])
        spec, _, svg = frame.partition(b"\n")
        job = json.loads(spec)
        used = resource.getrusage(resource.RUSAGE_SELF)
        spent = int(used.ru_utime + used.ru_stime) + 1
        # Only the soft limit moves (an unprivileged process cannot raise a hard one it lowered).
        _, hard = resource.getrlimit(resource.RLIMIT_CPU)
        resource.setrlimit(resource.RLIMIT_CPU, (spent + job["cpu_seconds"], hard))
        try:
            # bytes(): some resvg-py releases return a list of ints.
            png = bytes(resvg_py.svg_to_bytes(svg_string=svg.decode("utf-8"), width=job["width"],
                                              height=job["height"]))
            answer = _DONE + png
        except MemoryError:
            answer = _REFUSED + f"drawing the SVG needed more than {memory_bytes // 2**20} MiB of memory".encode()
        except Exception as exc:  # resvg raises ValueError and others for what it cannot draw
            answer = _REFUSED + f"the SVG cannot be rendered ({exc})".encode()
        stdout.write(_LENGTH.pack(len(answer)) + answer)
        stdout.flush()


if __name__ == "__main__":
    _serve(int(sys.argv[1]))
