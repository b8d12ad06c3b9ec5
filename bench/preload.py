"""bench/ingest.py on PostgreSQL: databases of its own, millions of scans loaded into one in SQL, and the
workers' storing and rollup timed on both, in this process. Not a benchmark itself.

The preload stands for a long-running platform's past: N scans spread evenly over the 365 days before the
measured runs (ids follow time, as when gateways stored them), on the benchmark's code, all of one month
in one INSERT ... SELECT over generate_series (no rows cross the wire). They count as rolled up long ago:
the rollup watermark is moved past them, as it would have passed them when they were new; folding ten
million scans again is bench/rollup.py's business, not this one's.
"""

from __future__ import annotations

import random
import statistics
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import Any

import psycopg

from app.analytics import rollup as rollups
from app.kit.db import create_sync_engine, sync_sessionmaker
from app.kit.logging import configure_logging
from app.kit.migrate import upgrade
from app.kit.settings import Settings
from app.scans import partitions
from app.scans.enrichment import Enricher
from app.scans.events import ScanRecorded
from app.scans.ingest import record_scans

DEFAULT_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
_ROWS_PER_STATEMENT = 500_000
_PRELOAD_SQL = """
INSERT INTO scans (event_id, link_id, scanned_at, stored_at, user_agent, referrer, referrer_host, browser, os,
                   device, is_bot, agent_class, country, visitor, ip_anonymized)
SELECT gen_random_uuid(), %(link)s, at, at + interval '1 second', 'Mozilla/5.0 (preload)', NULL,
       (ARRAY[NULL, 't.co', 'www.google.com'])[1 + i %% 3],
       (ARRAY['Mobile Safari', 'Chrome Mobile', 'Chrome'])[1 + i %% 3],
       (ARRAY['iOS', 'Android', 'Windows', 'Mac OS X'])[1 + i %% 4], (ARRAY['mobile', 'mobile', 'desktop'])[1 + i %% 3],
       i %% 20 = 0, CASE WHEN i %% 20 = 0 THEN 'bot' ELSE 'person' END, (ARRAY['US', 'FR', 'DE', NULL])[1 + i %% 4],
       md5((i %% 50000)::text), NULL
FROM generate_series(0, %(count)s - 1) AS i,
     LATERAL (SELECT %(start)s + (%(span)s::float8 * i / %(count)s) * interval '1 microsecond' AS at) AS times
"""


def settings(url: str) -> Settings:
    return Settings(database_url=url, redis_url="redis://127.0.0.1:1/0")


@contextmanager
def database(admin_url: str, role: str) -> Iterator[str]:
    """A new database on the server; its URL. Dropped afterwards, whatever happens."""
    name = f"qrflow_bench_ingest_{role}_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(admin_url, autocommit=True) as connection:
        connection.execute(f'CREATE DATABASE "{name}"')
    try:
        yield admin_url.rsplit("/", 1)[0] + "/" + name
    finally:
        with psycopg.connect(admin_url, autocommit=True) as connection:
            connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def preload(url: str, count: int, before: datetime) -> dict[str, float | int]:
    """Load `count` scans over the 365 days before `before`, their months' partitions first; ANALYZE; move
    the rollup watermark past them. Returns the seconds taken and the ids they got: after_id < id <= last_id."""
    started = time.perf_counter()
    start = before - timedelta(days=365)
    span_us = int((before - start).total_seconds() * 1_000_000)
    with psycopg.connect(url, autocommit=True) as connection:
        link = connection.execute("SELECT id FROM links ORDER BY created_at LIMIT 1").fetchone()[0]
        months = partitions.months_from(partitions.month_of(start), 14)
        engine = create_sync_engine(settings(url))
        with engine.begin() as session:
            partitions.ensure(session, [m for m in months if m <= partitions.month_of(before)])
        engine.dispose()
        before_id = connection.execute("SELECT coalesce(max(id), 0) FROM scans").fetchone()[0]
        for offset in range(0, count, _ROWS_PER_STATEMENT):
            rows = min(_ROWS_PER_STATEMENT, count - offset)
            slice_start = start + timedelta(microseconds=span_us * offset // count)
            slice_span = span_us * (offset + rows) // count - span_us * offset // count
            connection.execute(_PRELOAD_SQL, {"link": link, "count": rows, "start": slice_start, "span": slice_span})
        loaded = time.perf_counter() - started
        connection.execute("ANALYZE scans")
        last_id = connection.execute("SELECT max(id) FROM scans").fetchone()[0]
    folded_through(url, last_id)
    return {"seconds": round(loaded, 1), "scans_per_s": round(count / loaded), "after_id": before_id,
            "last_id": last_id}


def folded_through(url: str, last_id: int) -> None:
    with psycopg.connect(url, autocommit=True) as connection:
        connection.execute(
            "INSERT INTO analytics_state (name, last_scan_id, purge_cursor, updated_at) "
            "VALUES ('scans', %(id)s, 0, now()) ON CONFLICT (name) DO UPDATE SET last_scan_id = %(id)s",
            {"id": last_id},
        )


def same_link(source_url: str, target_url: str) -> tuple[uuid.UUID, str]:
    """The target database migrated and given the source's first link (same ids); (link id, slug)."""
    from sqlalchemy import insert

    from app.identity.models import Workspace
    from app.links.models import Link

    upgrade(settings(target_url))
    with psycopg.connect(source_url) as source:
        workspace_id, name = source.execute("SELECT id, name FROM workspaces ORDER BY created_at LIMIT 1").fetchone()
        link_id, slug, url = source.execute(
            "SELECT id, slug, target_url FROM links ORDER BY created_at LIMIT 1").fetchone()
    engine = create_sync_engine(settings(target_url))
    with engine.begin() as connection:
        connection.execute(insert(Workspace), {"id": workspace_id, "name": name})
        connection.execute(insert(Link), {"id": link_id, "workspace_id": workspace_id, "slug": slug,
                                          "target_url": url})
    engine.dispose()
    return link_id, slug


def interleaved(urls: dict[str, str], link_id: uuid.UUID, slug: str, *, trials: int, scans: int,
                batch: int, user_agent: str) -> dict[str, Any]:
    """The scans worker's own storing (record_scans, `batch` scans per transaction) of `scans` new scans into
    each database in turn, then a rollup of them, `trials` times, the order swapped every trial: whatever
    else the machine does weighs on both alike. Per database: scans/s stored and rollup µs per scan,
    medians over the trials."""
    configure_logging(settings(next(iter(urls.values()))).model_copy(update={"log_level": "WARNING"}), service="bench")
    rng = random.Random(19)
    engines = {name: create_sync_engine(settings(url)) for name, url in urls.items()}
    sessions = {name: sync_sessionmaker(engine) for name, engine in engines.items()}
    enricher = Enricher()
    figures: dict[str, dict[str, list[float]]] = {name: {"stored_per_s": [], "rollup_us_per_scan": []} for name in urls}
    try:
        for trial in range(trials):
            order = list(urls) if trial % 2 == 0 else list(reversed(urls))
            for name in order:
                events = [ScanRecorded(slug=slug, link_id=link_id, user_agent=user_agent,
                                       ip=f"10.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(1, 255)}")
                          for _ in range(scans)]
                started = time.perf_counter()
                for offset in range(0, scans, batch):
                    record_scans(sessions[name], enricher, events[offset : offset + batch])
                figures[name]["stored_per_s"].append(scans / (time.perf_counter() - started))
                started = time.perf_counter()
                report = rollups.rollup(sessions[name])
                figures[name]["rollup_us_per_scan"].append((time.perf_counter() - started) / report.folded * 1e6)
    finally:
        for engine in engines.values():
            engine.dispose()
    return {name: {key: round(statistics.median(values), 1) for key, values in measures.items()}
            | {"trials": {key: [round(v, 1) for v in values] for key, values in measures.items()}}
            for name, measures in figures.items()}
