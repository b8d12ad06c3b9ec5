"""Render throughput: the whole platform against raw segno loops, with the same number of processes.

    .venv/bin/python bench/render.py [--codes N] [--processes P] [--worker-concurrency C] [--in-flight K]

Four paths, measured in one run so that their ratios compare (absolute figures drift with the machine):
  raw segno PNG    make_qr + PNG at scale 10, in a Pool of P: the issue's yardstick
  raw render       render_images (one matrix; PNG+SVG+PDF+EPS): the worker's CPU work per code, nothing else
  platform         POST /v1/qrcodes to a real gateway -> Redis -> one Celery worker (-c C) -> SQLite,
                   timed from the first POST until every code is `ready`
  batch            one POST /v1/batches of N codes to the same platform (a fresh one), timed from the POST
                   until every code is `ready`; then its archive (PNG) is downloaded and checked
`--paths platform` or `--paths batch` runs one of the platform paths (the raw loops always run: the ratios need them).
"""

from __future__ import annotations

import argparse
import asyncio
import io
import multiprocessing
import os
import platform
import random
import shutil
import sqlite3
import string
import sys
import tempfile
import time
import zipfile
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import psutil
import segno
from rich.table import Table

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # `python bench/render.py` puts bench/, not the project, on sys.path

from app.qrcodes.rendering import render_images  # noqa: E402
from app.qrcodes.style import Style  # noqa: E402
from bench.common import (  # noqa: E402
    PUBLIC_BASE_URL,
    console,
    cpu_seconds,
    load_average,
    platform_running,
    print_load_average,
    print_log_errors,
    temp_dir,
    write_results,
)

RESULTS = ROOT / "bench" / "results" / "render.json"
MAX_FAILED_POSTS = 10  # then the platform is wedged: stop instead of timing out request by request


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


def raw_rate(work: Callable[[str], int], contents: list[str], processes: int) -> tuple[float, float]:
    """(codes/s, CPU ms per code) of `work` over `contents` in a Pool of `processes`."""
    with multiprocessing.Pool(processes) as pool:
        pool.map(work, contents[: processes * 4])  # warm up: forked, imports touched, caches hot
        chunk = max(1, len(contents) // (processes * 16))  # few round trips, still balanced at the end
        cpu0, started = _children_cpu(), time.perf_counter()
        for _ in pool.imap_unordered(work, contents, chunksize=chunk):
            pass
        elapsed, cpu = time.perf_counter() - started, _children_cpu() - cpu0
        return len(contents) / elapsed, cpu / len(contents) * 1000


def _children_cpu() -> float:
    # Only the pool's processes are children of this one while a raw loop runs.
    return sum(sum(c.cpu_times()[:2]) for c in psutil.Process().children())


# --- the platform ----------------------------------------------------------------------------------


class PlatformFailed(Exception):
    """The platform path produced no valid figure (failed POSTs, a stall); the message says why."""


def statuses(db: Path) -> dict[str, int]:
    # Read-only, so the benchmark never takes SQLite's write lock away from the gateway or the worker.
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        return dict(conn.execute("SELECT status, count(*) FROM qrcodes GROUP BY status").fetchall())


async def submit(base: str, key: str, n: int, in_flight: int, first: int = 0) -> tuple[int, int]:
    """POST n dynamic URL codes, `in_flight` at a time; returns (accepted, rejected).

    A failed POST is counted, not retried: a retry of a request that did reach the gateway would create
    a second code and spoil the exact count checked at the end.
    """
    counter = iter(range(first, first + n))
    accepted = rejected = 0

    async def sender(client: httpx.AsyncClient) -> None:
        nonlocal accepted, rejected
        for i in counter:  # the shared iterator hands each index to exactly one sender
            if rejected >= MAX_FAILED_POSTS:
                return
            try:
                response = await client.post("/v1/qrcodes", json={"kind": "url", "data": {"url": f"https://example.com/p/{i}"}})
                error = None if response.status_code == 202 else f"{response.status_code} {response.text[:200]}"
            except httpx.TransportError as exc:
                error = repr(exc)
            accepted, rejected = (accepted + 1, rejected) if error is None else (accepted, rejected + 1)
            if error and rejected <= 3:
                console.print(f"POST failed: {error}", style="red", markup=False)

    limits = httpx.Limits(max_connections=in_flight, max_keepalive_connections=in_flight)
    headers = {"Authorization": f"Bearer {key}"}
    async with httpx.AsyncClient(base_url=base, headers=headers, limits=limits, timeout=60) as client:
        await asyncio.gather(*(sender(client) for _ in range(in_flight)))
    return accepted, rejected


async def wait_ready(db: Path, target: int, stall_timeout: float = 60.0) -> float:
    """Poll the database every 0.25 s until at least `target` codes exist and none is pending.

    At least: a POST that failed in transit may still have created its code. Returns perf_counter() then.
    """
    last, last_change = -1, time.monotonic()
    while True:
        counts = await asyncio.to_thread(statuses, db)
        done = counts.get("ready", 0) + counts.get("failed", 0)
        if done >= target and not counts.get("pending"):
            return time.perf_counter()
        if done != last:
            last, last_change = done, time.monotonic()
        elif time.monotonic() - last_change > stall_timeout:
            raise PlatformFailed(f"no code finished for {stall_timeout:.0f} s; statuses {counts}")
        await asyncio.sleep(0.25)


def platform_rate(n: int, worker_concurrency: int, in_flight: int) -> dict[str, Any]:
    tmp = Path(tempfile.mkdtemp(prefix="qrflow-bench-"))
    try:
        with platform_running(tmp, ["-Q", "qr,default", "-c", str(worker_concurrency)]) as (base, key, db, pids):
            warmup = 2 * worker_concurrency  # first requests and tasks pay for imports and connections
            asyncio.run(submit(base, key, warmup, in_flight))
            asyncio.run(wait_ready(db, warmup))
            try:
                return asyncio.run(_measure(base, key, db, pids | {"bench client": os.getpid()}, n, warmup, in_flight))
            except PlatformFailed as exc:
                print_log_errors(tmp)
                return {"ok": False, "error": str(exc)}
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


async def _measure(
    base: str, key: str, db: Path, pids: dict[str, int], n: int, warmup: int, in_flight: int
) -> dict[str, Any]:
    cpu0, wall0, started = cpu_seconds(pids), time.time(), time.perf_counter()
    accepted, rejected = await submit(base, key, n, in_flight, first=warmup)
    submitted, cpu1 = time.perf_counter(), cpu_seconds(pids)
    if rejected >= MAX_FAILED_POSTS:
        raise PlatformFailed(f"{rejected} POSTs failed after {accepted:,} succeeded in {submitted - started:.0f} s")
    finished = await wait_ready(db, warmup + accepted)  # polling only now: the end time is rendered_at
    cpu2, counts = cpu_seconds(pids), statuses(db)
    created = sum(counts.values()) - warmup  # what the rates count: a few failed POSTs must not stop the run
    # The poll sees `ready` up to 0.25 s late; the newest rendered_at says when it really happened.
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        newest = conn.execute("SELECT max(rendered_at) FROM qrcodes").fetchone()[0]
    exact = datetime.fromisoformat(newest).replace(tzinfo=UTC).timestamp() - wall0
    elapsed = min(finished - started, exact) if exact > 0 else finished - started
    phases = {
        "submitting": (cpu0, cpu1, submitted - started),
        "draining": (cpu1, cpu2, max(finished - submitted, 1e-9)),
    }
    return {
        "codes": created,
        "codes_per_s": created / elapsed,
        "seconds": elapsed,
        "posts_per_s": accepted / (submitted - started),
        "posts_rejected": rejected,
        "submit_seconds": submitted - started,
        "statuses": counts,
        "ok": rejected == 0 and counts == {"ready": warmup + n},
        # Cores each role kept busy in each phase (1.0 = one core all the time), and its CPU per code.
        "cpu_cores": {
            phase: {role: round((b[role] - a.get(role, 0)) / seconds, 2) for role in b}
            for phase, (a, b, seconds) in phases.items()
        },
        "cpu_ms_per_code": {role: round((cpu2[role] - cpu0.get(role, 0)) / created * 1000, 2) for role in cpu2},
    }


# --- the batch path ----------------------------------------------------------------------------------


def batch_rate(n: int, worker_concurrency: int) -> dict[str, Any]:
    worker_args = ["-Q", "qr,qr_batch,default", "-c", str(worker_concurrency)]
    with temp_dir("qrflow-bench-batch-") as tmp, platform_running(tmp, worker_args) as (base, key, db, pids):
        warmup = 2 * worker_concurrency
        _post_batch(base, key, 0, warmup)
        asyncio.run(wait_ready(db, warmup))
        try:
            return _measure_batch(base, key, db, pids | {"bench client": os.getpid()}, n, warmup)
        except PlatformFailed as exc:
            print_log_errors(tmp)
            return {"ok": False, "error": str(exc)}


def _post_batch(base: str, key: str, first: int, n: int) -> dict[str, Any]:
    # The same codes as the platform path: dynamic URL codes, each encoding its short link.
    items = [{"kind": "url", "data": {"url": f"https://example.com/p/{i}"}} for i in range(first, first + n)]
    response = httpx.post(
        f"{base}/v1/batches",
        json={"items": items, "formats": ["png"]},
        headers={"Authorization": f"Bearer {key}"},
        timeout=600,
    )
    if response.status_code != 202:
        raise PlatformFailed(f"POST /v1/batches: {response.status_code} {response.text[:300]}")
    return response.json()


def _measure_batch(base: str, key: str, db: Path, pids: dict[str, int], n: int, warmup: int) -> dict[str, Any]:
    cpu0, wall0, started = cpu_seconds(pids), time.time(), time.perf_counter()
    batch = _post_batch(base, key, warmup, n)
    accepted, cpu1 = time.perf_counter(), cpu_seconds(pids)
    finished = asyncio.run(wait_ready(db, warmup + n))
    cpu2, counts = cpu_seconds(pids), statuses(db)
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        newest = conn.execute("SELECT max(rendered_at) FROM qrcodes").fetchone()[0]
    exact = datetime.fromisoformat(newest).replace(tzinfo=UTC).timestamp() - wall0
    elapsed = min(finished - started, exact) if exact > 0 else finished - started
    headers = {"Authorization": f"Bearer {key}"}
    status = httpx.get(f"{base}/v1/batches/{batch['id']}", headers=headers, timeout=30).json()
    download_started = time.perf_counter()
    archive = httpx.get(f"{base}{batch['archive']}", headers=headers, timeout=600)
    download_seconds = time.perf_counter() - download_started
    names = zipfile.ZipFile(io.BytesIO(archive.content)).namelist() if archive.status_code == 200 else []
    pngs = sum(name.endswith(".png") for name in names)
    return {
        "codes": n,
        "codes_per_s": n / elapsed,
        "seconds": elapsed,
        "post_seconds": accepted - started,  # validating and inserting every row, publishing the chunks
        "statuses": counts,
        "batch_status": status["status"],
        "archive_seconds": download_seconds,
        "archive_bytes": len(archive.content),
        "archive_pngs": pngs,
        "ok": counts == {"ready": warmup + n} and status["done"] == n and pngs == n and "manifest.csv" in names,
        "cpu_cores": {
            phase: {role: round((b[role] - a.get(role, 0)) / seconds, 2) for role in b}
            for phase, (a, b, seconds) in {
                "posting": (cpu0, cpu1, accepted - started), "draining": (cpu1, cpu2, max(finished - accepted, 1e-9))
            }.items()
        },
        "cpu_ms_per_code": {role: round((cpu2[role] - cpu0.get(role, 0)) / n * 1000, 2) for role in cpu2},
    }


def report_batch(context: dict[str, Any], raw: dict[str, tuple[float, float]], batch: dict[str, Any]) -> dict[str, Any]:
    (png, _), (full, _) = raw["segno_png"], raw["render_images"]
    rate = batch.get("codes_per_s", 0.0)
    total_ms = sum(batch.get("cpu_ms_per_code", {}).values())
    n, c = context["codes"], context["worker_concurrency"]
    context["load_average_after"] = load_average()
    table = Table(title=f"A batch of {n:,} codes (one POST /v1/batches, worker -c {c})")
    for column in ("path", "codes/s", "CPU ms per code", "batch / this"):
        table.add_column(column, justify="left" if column == "path" else "right")
    table.add_row("raw segno PNG (make_qr + PNG)", f"{png:,.0f}", f"{raw['segno_png'][1]:.1f}", f"{rate / png:.2f}")
    table.add_row("raw render_images (PNG+SVG+PDF+EPS)", f"{full:,.0f}", f"{raw['render_images'][1]:.1f}",
                  f"{rate / full:.2f}")
    table.add_row("batch (POST -> all ready)", f"{rate:,.0f}" if rate else "FAILED", f"{total_ms:.1f}", "1.00")
    console.print(table)
    if "error" in batch:
        console.print(f"[red]batch path failed: {batch['error']}[/red]")
        return {"batch": batch}
    console.print(f"POST /v1/batches answered in {batch['post_seconds']:.2f} s (every row validated and inserted); "
                  f"all {n:,} codes ready {batch['seconds']:.1f} s after it was sent; "
                  f"archive of {batch['archive_pngs']:,} PNGs ({batch['archive_bytes'] / 1e6:.1f} MB) "
                  f"downloaded in {batch['archive_seconds']:.1f} s; "
                  f"statuses {batch['statuses']} -> {'[green]OK[/green]' if batch['ok'] else '[red]NOT OK[/red]'}")
    cpu = Table(title="CPU during the batch run")
    for column in ("process", "cores busy: posting", "cores busy: draining", "CPU ms per code"):
        cpu.add_column(column, justify="left" if column == "process" else "right")
    for role, ms in batch["cpu_ms_per_code"].items():
        busy = [f"{batch['cpu_cores'][phase].get(role, 0):.2f}" for phase in ("posting", "draining")]
        cpu.add_row(role, *busy, f"{ms:.1f}")
    console.print(cpu)
    console.print(f"load average before {context['load_average_before']}, after {context['load_average_after']}; "
                  f"per CPU second, batch / raw segno PNG = {raw['segno_png'][1] / total_ms:.2f}")
    console.print(f"goal: batch >= 0.8 x raw segno PNG loop -> {rate / png:.2f} "
                  f"({'met' if rate / png >= 0.8 else 'not met'})")
    return {
        "batch": batch,
        "batch_ratios": {
            "batch_vs_raw_segno_png": round(rate / png, 3),
            "batch_vs_raw_render_images": round(rate / full, 3),
        },
    }


def report(context: dict[str, Any], raw: dict[str, tuple[float, float]], plat: dict[str, Any]) -> dict[str, Any]:
    (png, png_ms), (full, full_ms) = raw["segno_png"], raw["render_images"]
    n, p, c = context["codes"], context["processes"], context["worker_concurrency"]
    rate = plat.get("codes_per_s", 0.0)  # 0 when the platform path failed: every ratio then says 0.00
    total_ms = sum(plat.get("cpu_ms_per_code", {}).values())
    table = Table(title=f"Rendering {n:,} codes with {p} processes")
    # Codes per CPU-second compare even when other work on the machine steals cores from one path.
    for column in ("path", "codes/s", "CPU ms per code", "platform / this", "same, per CPU second"):
        table.add_column(column, justify="left" if column == "path" else "right")
    per_cpu = (lambda ms: f"{ms / total_ms:.2f}") if total_ms else (lambda ms: "-")
    table.add_row("raw segno PNG (make_qr + PNG)", f"{png:,.0f}", f"{png_ms:.1f}", f"{rate / png:.2f}", per_cpu(png_ms))
    table.add_row("raw render_images (PNG+SVG+PDF+EPS)", f"{full:,.0f}", f"{full_ms:.1f}", f"{rate / full:.2f}",
                  per_cpu(full_ms))
    platform_row = f"{rate:,.0f}" if rate else "FAILED"
    table.add_row(f"platform (POST -> ready, worker -c {c})", platform_row, f"{total_ms:.1f}", "1.00", "1.00")
    console.print(table)
    if "error" in plat:
        console.print(f"[red]platform path failed: {plat['error']}[/red]")
    else:
        console.print(f"submission: {plat['posts_per_s']:,.0f} POSTs/s ({context['in_flight']} in flight, "
                      f"{plat['submit_seconds']:.1f} s, {plat['posts_rejected']} failed); "
                      f"all {plat['codes']:,} codes done {plat['seconds']:.1f} s after the first POST; "
                      f"statuses {plat['statuses']} -> {'[green]OK[/green]' if plat['ok'] else '[red]NOT OK[/red]'}")
        cpu = Table(title=f"CPU during the platform run ({context['cores']} cores in all)")
        for column in ("process", "cores busy: submitting", "cores busy: draining", "CPU ms per code"):
            cpu.add_column(column, justify="left" if column == "process" else "right")
        for role, ms in plat["cpu_ms_per_code"].items():
            busy = [f"{plat['cpu_cores'][phase].get(role, 0):.2f}" for phase in ("submitting", "draining")]
            cpu.add_row(role, *busy, f"{ms:.1f}")
        console.print(cpu)
    context["load_average_after"] = load_average()
    print_load_average(context)
    console.print(f"goal: platform >= 0.8 x raw segno PNG loop -> {rate / png:.2f} "
                  f"({'met' if rate / png >= 0.8 else 'not met'})")
    return {
        "context": context | {"finished_at": datetime.now(UTC).isoformat(timespec="seconds")},
        "codes_per_s": {
            "raw_segno_png": round(png, 1), "raw_render_images": round(full, 1), "platform": round(rate, 1)
        },
        "cpu_ms_per_code": {
            "raw_segno_png": round(png_ms, 2), "raw_render_images": round(full_ms, 2), "platform": round(total_ms, 2)
        },
        "ratios": {
            "platform_vs_raw_segno_png": round(rate / png, 3), "platform_vs_raw_render_images": round(rate / full, 3)
        },
        "ratios_per_cpu_second": {
            "platform_vs_raw_segno_png": round(png_ms / total_ms, 3) if total_ms else 0.0,
            "platform_vs_raw_render_images": round(full_ms / total_ms, 3) if total_ms else 0.0,
        },
        "platform": plat,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--codes", type=int, default=10_000, help="codes per path (default 10,000)")
    parser.add_argument("--processes", type=int, default=2, help="processes per path (default 2)")
    parser.add_argument("--worker-concurrency", type=int, help="the worker's -c (default: --processes)")
    parser.add_argument("--in-flight", type=int, default=32, help="concurrent POSTs (default 32)")
    parser.add_argument("--paths", default="platform,batch",
                        help="platform paths to run, comma-separated (default both)")
    args, _ = parser.parse_known_args()  # bench/run.py passes every benchmark the same arguments
    n, p = args.codes, args.processes
    c = args.worker_concurrency or p
    context: dict[str, Any] = {
        "cores": os.cpu_count(), "python": platform.python_version(), "segno": segno.__version__,
        "machine": platform.machine(), "codes": n, "processes": p, "worker_concurrency": c, "in_flight": args.in_flight,
        "load_average_before": load_average(),
    }
    console.print(f"render benchmark: {n:,} codes, {p} processes, worker -c {c}; {context['cores']} cores, "
                  f"Python {context['python']}, segno {context['segno']}")
    paths = set(args.paths.split(","))
    contents = short_links(n)
    raw = {}
    for name, work in (("segno_png", segno_png), ("render_images", render_all)):
        console.print(f"raw {name} loop ...")
        raw[name] = raw_rate(work, contents, p)
    plat = {"ok": True, "skipped": True}
    if "platform" in paths:
        console.print("platform (gateway + Redis + worker + SQLite) ...")
        plat = platform_rate(n, c, args.in_flight)
    results = report(context, raw, plat) if "platform" in paths else {"context": context}
    batch = {"ok": True, "skipped": True}
    if "batch" in paths:
        console.print("batch (one POST /v1/batches to a fresh platform) ...")
        batch = batch_rate(n, c)
        results |= report_batch(context, raw, batch)
    write_results(RESULTS, results)
    if not (plat["ok"] and batch["ok"]):
        sys.exit(1)


if __name__ == "__main__":
    main()
