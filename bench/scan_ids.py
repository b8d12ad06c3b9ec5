"""What the kind of event id costs a scans worker: random UUIDv4 (the baseline) against time-ordered UUIDv7.

    .venv/bin/python bench/scan_ids.py [--scans N]
    QRFLOW_BENCH_POSTGRES_URL=postgresql://postgres@127.0.0.1:5432/postgres  # also on PostgreSQL

On each backend (SQLite; PostgreSQL too when QRFLOW_BENCH_POSTGRES_URL names a server to create a database on),
for each kind of id, a fresh database stores N scans (default 300,000) in batches of scan_batch_max_events
through the workers' own ingest.record_scans, as they arrive from gateways: a few codes, a phone's user agent,
the events already parsed (parsing does not depend on the id). Each batch is timed on its own. Reported: µs
per scan over the first and the last tenth of the batches, and over all of them. A random id puts every new
row of the unique event_id index on a page of its own; the cost of that grows with the table, which is
why the last tenth is the figure to watch (and why a scans table of millions makes it matter more).
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rich.table import Table

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # `python bench/scan_ids.py` puts bench/, not the project, on sys.path

from app.kit.db import create_sync_engine, new_id, sync_sessionmaker  # noqa: E402
from app.kit.logging import configure_logging  # noqa: E402
from app.kit.settings import Settings  # noqa: E402
from app.scans import ingest  # noqa: E402
from app.scans.enrichment import Enricher  # noqa: E402
from app.scans.events import ScanRecorded  # noqa: E402
from bench.common import console, load_average, print_load_average, write_results  # noqa: E402
from bench.rollup import Backend, on_every_backend, seed_links  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "scan_ids.json"
LINKS = 20
PHONE = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/18.1 Mobile/15E148 Safari/604.1"
)
ID_KINDS: dict[str, Callable[[], uuid.UUID]] = {"uuid4 (baseline)": uuid.uuid4, "uuid7 (new_id)": new_id}


def store(settings: Settings, make_id: Callable[[], uuid.UUID], scans: int) -> list[float]:
    """Seconds per batch of storing `scans` scans, in order, but for the first batch (it pays for compiling
    statements)."""
    configure_logging(settings, service="bench")  # the workers' logging, and no line per batch
    links, _, _ = seed_links(settings, LINKS)
    engine = create_sync_engine(settings)
    sessions, enricher = sync_sessionmaker(engine), Enricher()
    batch = settings.scan_batch_max_events
    timings = []
    try:
        for start in range(0, scans, batch):
            events = [
                ScanRecorded(
                    event_id=make_id(), slug="bench", link_id=links[i % LINKS], user_agent=PHONE,
                    referrer=None, ip=f"203.0.{i % 250}.{i % 199}",
                )
                for i in range(start, min(start + batch, scans))
            ]
            started = time.perf_counter()
            ingest.record_scans(sessions, enricher, events)
            timings.append(time.perf_counter() - started)
    finally:
        engine.dispose()
    return timings[1:]


def quiet(settings: Settings) -> Settings:
    return settings.model_copy(update={"log_level": "WARNING"})


def per_scan_us(timings: list[float], batch: int) -> float:
    return sum(timings) / (len(timings) * batch) * 1e6


def run_backend(backend: Backend, scans: int) -> dict[str, Any]:
    figures: dict[str, Any] = {}
    # Process-wide caches (parsed user agents, compiled statements) filled before either kind is timed.
    store(quiet(backend.new_database("qrflow_bench_ids_warmup")), new_id, 5_000)
    for n, (kind, make_id) in enumerate(ID_KINDS.items()):
        settings = quiet(backend.new_database(f"qrflow_bench_ids_{n}"))
        console.print(f"{backend.kind}: storing {scans:,} scans with {kind} ids ...")
        timings = store(settings, make_id, scans)
        tenth, batch = max(1, len(timings) // 10), settings.scan_batch_max_events
        figures[kind] = {
            "first_tenth_us_per_scan": round(per_scan_us(timings[:tenth], batch), 1),
            "last_tenth_us_per_scan": round(per_scan_us(timings[-tenth:], batch), 1),
            "all_us_per_scan": round(per_scan_us(timings, batch), 1),
        }
    baseline, ordered = figures.values()
    figures["ratio"] = {key: round(ordered[key] / baseline[key], 2) for key in baseline}
    return figures


def report(results: dict[str, Any]) -> None:
    table = Table(title=f"Storing {results['context']['scans']:,} scans: µs per scan by kind of event id")
    for column in ("backend", "ids", "first tenth", "last tenth", "all"):
        table.add_column(column, justify="left" if column in ("backend", "ids") else "right")
    for backend, figures in results["backends"].items():
        for kind, row in figures.items():
            table.add_row(backend, kind, *(f"{value:g}" for value in row.values()))
    console.print(table)
    console.print("ratio: uuid7 ÷ uuid4 (below 1: time-ordered ids are cheaper), same database, same run")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scans", type=int, default=300_000, help="scans stored per kind of id (default 300,000)")
    args, _ = parser.parse_known_args()  # bench/run.py passes every benchmark the same arguments
    context: dict[str, Any] = {
        "cores": os.cpu_count(), "python": platform.python_version(), "scans": args.scans, "links": LINKS,
        "load_average_before": load_average(),
    }
    workdir = Path(tempfile.mkdtemp(prefix="qrflow-bench-ids-"))
    try:
        figures = on_every_backend(workdir, lambda backend: run_backend(backend, args.scans))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    results: dict[str, Any] = {"context": context, "backends": figures}
    context["load_average_after"] = load_average()
    context["finished_at"] = datetime.now(UTC).isoformat(timespec="seconds")
    report(results)
    print_load_average(context)
    write_results(RESULTS, results)


if __name__ == "__main__":
    main()
