"""Scan ingestion under full redirect load: how far storing scans lags behind answering them.

    .venv/bin/python bench/ingest.py [--duration SECONDS] [--connections N] [--one-client]
    .venv/bin/python bench/ingest.py --postgres [--preload N]   # QRFLOW_BENCH_POSTGRES_URL: the server

A real platform (its own Redis, `qrflow api` on SQLite, `qrflow worker -Q scans -c 0`, a process per core, as
`qrflow up` runs it); one dynamic code; after a 2 s warm-up whose scans are stored first, `wrk -t1 -c{N} -d{S}s` drives
GET /r/{slug} at full speed (with a phone's User-Agent, each request from a random client address that a
trusted proxy names in X-Forwarded-For: every scan its own visitor, as people are; --one-client: all from
127.0.0.1, one visitor) while this script samples, every 0.5 s:
  answered  the gateway's /metrics qrflow_http_requests_total{method="GET",route="/r/{slug}",status="302"}
  stored    SELECT count(*) FROM scans (read-only SQLite connection)
  where the backlog waits: qrflow_scan_spool_depth (gateway's spool), qrflow_queue_depth{queue="scans"}
Each sample's time is the middle of its query. Lag of a sample = now - the moment the answered counter
had the value the stored counter has now (answered interpolated linearly between its samples). After wrk
it keeps sampling until stored == answered (the backlog drained) or 60 s passed.
Goals (the issue): largest lag <= 2 s, and stored == answered exactly at the end.

--postgres: the same on a PostgreSQL database of its own (created on QRFLOW_BENCH_POSTGRES_URL, default
postgresql://postgres@127.0.0.1:5432/postgres; dropped afterwards). --preload N (with --postgres): the run
above into the empty table, then N scans loaded over the past year (bench/preload.py), then the same run
again, and after each run the rollup of its scans timed. Goals (issue #19): the stored rate with N scans
in the table >= 0.8 of the empty table's, and the rollup's time per scan folded <= 1.5 times the empty
table's (its cost follows the new scans, not the table).
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import subprocess
import sys
import time
from contextlib import ExitStack
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from rich.table import Table

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # `python bench/ingest.py` puts bench/, not the project, on sys.path

from app.launcher import worker_arguments  # noqa: E402
from bench import preload  # noqa: E402
from bench.common import (  # noqa: E402
    PHONE_USER_AGENT,
    console,
    cpu_seconds,
    create_dynamic_code,
    load_average,
    metric,
    parse_wrk,
    pass_miss,
    platform_running,
    print_load_average,
    require_wrk,
    run_wrk,
    temp_dir,
    write_results,
    wrk_command,
    wrk_script,
)

RESULTS = ROOT / "bench" / "results" / "ingest.json"
RESULTS_POSTGRES = ROOT / "bench" / "results" / "ingest_postgres.json"
WARMUP_SECONDS = 2
INTERVAL = 0.5
DRAIN_TIMEOUT = 60.0
GOAL_LAG_SECONDS = 2.0
GOAL_PRELOADED_RATE = 0.8  # stored/s with the preload / into the empty table
GOAL_ROLLUP_RATIO = 1.5  # rollup µs per scan with the preload / into the empty table
STORING_TRIALS = 5
STORING_SCANS = 20_000  # per trial and database, in batches of 1,000 as the shipper sends them


@dataclass
class Sample:
    t_answered: float  # seconds since wrk started
    answered: int
    t_stored: float
    stored: int
    spool_depth: int
    queue_depth: int
    lag: float = 0.0


class StoredScans:
    """Counts over the scans the platform stored: those with an id above `after` (on PostgreSQL with a
    preload, the preload's and the storing trials' scans have the ids up to it)."""

    def __init__(self, db: Path | str, after: int = 0) -> None:
        if isinstance(db, Path):
            # Read-only, so the benchmark never takes SQLite's write lock away from the worker.
            self.connection: Any = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
        else:
            import psycopg

            self.connection = psycopg.connect(db, autocommit=True)
        self.where = f" WHERE id > {int(after)}"

    def count(self, what: str = "count(*)") -> int:
        return self.connection.execute(f"SELECT {what} FROM scans{self.where}").fetchone()[0]

    def close(self) -> None:
        self.connection.close()


class Sampler:
    def __init__(self, base: str, scans: StoredScans) -> None:
        self.client = httpx.Client(base_url=base, timeout=10)
        self.scans = scans
        self.origin = time.monotonic()

    def stored(self) -> tuple[float, int]:
        started = time.monotonic()
        count = self.scans.count()
        return (started + time.monotonic()) / 2 - self.origin, count

    def metrics(self) -> tuple[float, dict[str, int]]:
        started = time.monotonic()
        payload = self.client.get("/metrics").text
        at = (started + time.monotonic()) / 2 - self.origin
        return at, {
            "answered": int(
                metric(payload, "qrflow_http_requests_total", method="GET", route="/r/{slug}", status="302") or 0
            ),
            "spool_depth": int(metric(payload, "qrflow_scan_spool_depth") or 0),
            "queue_depth": int(metric(payload, "qrflow_queue_depth", queue="scans") or 0),
        }

    def sample(self) -> Sample:
        t_answered, m = self.metrics()
        t_stored, stored = self.stored()
        return Sample(t_answered, m["answered"], t_stored, stored, m["spool_depth"], m["queue_depth"])


def lags(samples: list[Sample], start: Sample) -> None:
    """Fill each sample's lag: how long ago the answered counter had the value the stored counter has now,
    i.e. about how long the oldest scan not yet stored has waited."""
    points = [(start.t_answered, start.answered)] + [(s.t_answered, s.answered) for s in samples]
    for s in samples:
        for (t0, a0), (t1, a1) in zip(points, points[1:], strict=False):
            if a1 >= s.stored:  # the first stretch in which the answered counter passed `stored`
                when = t0 + (s.stored - a0) / (a1 - a0) * (t1 - t0) if a1 > a0 else t0
                s.lag = max(0.0, s.t_stored - when)
                break


def run(
    base: str, scans: StoredScans, url: str, seconds: int, connections: int, script: Path, pids: dict[str, int]
) -> dict[str, Any]:
    sampler = Sampler(base, scans)
    run_wrk(url, WARMUP_SECONDS, connections, script)
    deadline = time.monotonic() + DRAIN_TIMEOUT
    while (start := sampler.sample()).stored < start.answered and time.monotonic() < deadline:
        time.sleep(0.2)  # the warm-up's scans stored: the measured run starts with no backlog
    cpu0 = cpu_seconds(pids)
    wrk = subprocess.Popen(wrk_command(url, seconds, connections, script), stdout=subprocess.PIPE, text=True)
    sampler.origin = time.monotonic()
    start.t_answered = start.t_stored = 0.0
    samples: list[Sample] = []
    wrk_done_at = drained_at = None
    while True:
        tick = time.monotonic()
        samples.append(sampler.sample())
        if wrk_done_at is None and wrk.poll() is not None:
            wrk_done_at, cpu1 = tick - sampler.origin, cpu_seconds(pids)
            samples.append(sampler.sample())  # the final answered count: wrk is done, the gateway too
        if wrk_done_at is not None:
            last = samples[-1]
            if last.stored >= last.answered:
                drained_at = last.t_stored
                break
            if tick - sampler.origin > wrk_done_at + DRAIN_TIMEOUT:
                break
        time.sleep(max(0.0, INTERVAL - (time.monotonic() - tick)))
    cpu2 = cpu_seconds(pids)
    result = parse_wrk(wrk.communicate()[0])
    visitors = scans.count("count(DISTINCT visitor)")
    sampler.client.close()
    lags(samples, start)
    at_wrk_end = max((s for s in samples if s.t_stored <= wrk_done_at), key=lambda s: s.t_stored, default=start)
    final = samples[-1]
    answered, stored = final.answered - start.answered, final.stored - start.stored
    cpu = {role: round((cpu1[role] - cpu0.get(role, 0.0)) / wrk_done_at, 2) for role in cpu1}
    # From wrk's start until drained, every process did the work of exactly the `answered` scans.
    per_scan = {role: round((cpu2[role] - cpu0.get(role, 0.0)) / max(answered, 1) * 1e6) for role in cpu2}
    return {
        "wrk": result,
        "redirects_per_s": result["requests_per_s"],
        "answered": answered,
        "stored": stored,
        "stored_per_s_during_wrk": (
            (at_wrk_end.stored - start.stored) / at_wrk_end.t_stored if at_wrk_end.t_stored else 0.0
        ),
        "stored_per_s_overall": stored / drained_at if drained_at else None,
        "wrk_seconds": wrk_done_at,
        "drained_seconds_after_wrk": drained_at - wrk_done_at if drained_at else None,
        "largest_lag_s": max((s.lag for s in samples), default=0.0),
        "max_spool_depth": max(s.spool_depth for s in samples),
        "max_queue_depth": max(s.queue_depth for s in samples),
        "cores_busy_during_wrk": cpu,
        "cpu_us_per_scan": per_scan,
        "exact": answered == stored and drained_at is not None,
        "distinct_visitors": visitors,
        "samples": [asdict(s) for s in samples],
    }


def report(context: dict[str, Any], r: dict[str, Any]) -> dict[str, Any]:
    table = Table(title=f"Scans under full redirect load: wrk -t1 -c{context['connections']}, "
                        f"samples every {INTERVAL} s")
    for column in ("t s", "answered", "stored", "behind", "lag s", "in spool", "in queue"):
        table.add_column(column, justify="right")
    samples = r["samples"]
    step = max(1, len(samples) // 24)  # about two dozen rows, and always the last
    for s in samples[::step] + ([samples[-1]] if (len(samples) - 1) % step else []):
        table.add_row(f"{s['t_stored']:.1f}", f"{s['answered']:,}", f"{s['stored']:,}",
                      f"{s['answered'] - s['stored']:,}", f"{s['lag']:.2f}", f"{s['spool_depth']:,}",
                      f"{s['queue_depth']:,}")
    console.print(table)
    w = r["wrk"]
    console.print(f"redirects: {r['redirects_per_s']:,.0f}/s for {r['wrk_seconds']:.1f} s (p50 {w['p50_ms']:.1f} ms, "
                  f"p99 {w['p99_ms']:.1f} ms, errors: {w['status_errors']} status, {w['timeouts']} timeouts)")
    overall = f"{r['stored_per_s_overall']:,.0f}/s" if r["stored_per_s_overall"] else "n/a (never drained)"
    console.print(f"stored: {r['stored_per_s_during_wrk']:,.0f}/s while wrk ran "
                  f"({r['stored_per_s_during_wrk'] / r['redirects_per_s']:.2f} "
                  f"of the redirect rate: below 1.00 the backlog, and the lag, grow for as long as the load lasts); "
                  f"{overall} from wrk's start until the last was stored")
    drained = r["drained_seconds_after_wrk"]
    console.print(f"backlog drained {drained:.1f} s after wrk ended" if drained is not None else
                  f"[red]backlog NOT drained {DRAIN_TIMEOUT:.0f} s after wrk ended[/red]")
    console.print(f"largest backlog: {r['max_spool_depth']:,} scans in the gateway's spool, {r['max_queue_depth']:,} "
                  "messages (batches of scans) waiting in the scans queue, besides those the worker had prefetched")
    console.print(f"visitors: {r['distinct_visitors']:,} distinct in the scans table, "
                  f"warm-up included (clients: {context['clients']})")
    console.print(f"cores busy while wrk ran: {r['cores_busy_during_wrk']} ({context['cores']} cores in all)")
    console.print(f"CPU µs per scan, wrk's start to drained: {r['cpu_us_per_scan']}")
    context["load_average_after"] = load_average()
    print_load_average(context)
    console.print(f"goal: largest lag <= {GOAL_LAG_SECONDS:.0f} s -> {r['largest_lag_s']:.2f} s "
                  f"{pass_miss(r['largest_lag_s'] <= GOAL_LAG_SECONDS)}")
    console.print(f"goal: stored == answered at the end -> {r['stored']:,} stored of {r['answered']:,} answered "
                  f"{pass_miss(r['exact'])}")
    return {
        "context": context | {"finished_at": datetime.now(UTC).isoformat(timespec="seconds")},
        "goals": {"lag": r["largest_lag_s"] <= GOAL_LAG_SECONDS, "exact": r["exact"]},
        **r,
    }


def compare(storing: dict[str, Any], loaded: dict[str, Any], count: int) -> dict[str, Any]:
    """The preloaded database against the empty one: the goals of issue #19."""
    empty, full = storing["empty"], storing["preloaded"]
    rate = full["stored_per_s"] / empty["stored_per_s"]
    rollup = full["rollup_us_per_scan"] / empty["rollup_us_per_scan"]
    console.print(f"preload: {count:,} scans in {loaded['seconds']:.0f} s ({loaded['scans_per_s']:,}/s)")
    console.print(f"the scans worker's storing, {STORING_TRIALS} trials of {STORING_SCANS:,} scans each, "
                  f"alternating (median): empty {empty['stored_per_s']:,.0f}/s, with {count:,} stored "
                  f"{full['stored_per_s']:,.0f}/s; rollup of them: {empty['rollup_us_per_scan']} / "
                  f"{full['rollup_us_per_scan']} µs per scan")
    console.print(f"goal: storing rate with {count:,} scans stored >= {GOAL_PRELOADED_RATE} of the empty table's -> "
                  f"{rate:.2f} {pass_miss(rate >= GOAL_PRELOADED_RATE)}")
    console.print(f"goal: rollup µs per scan with {count:,} stored <= {GOAL_ROLLUP_RATIO} x the empty table's -> "
                  f"{rollup:.2f} {pass_miss(rollup <= GOAL_ROLLUP_RATIO)}")
    return {"preload": loaded | {"scans": count}, "storing": storing, "stored_rate_ratio": round(rate, 3),
            "rollup_ratio": round(rollup, 3),
            "preload_goals": {"stored_rate": rate >= GOAL_PRELOADED_RATE, "rollup": rollup <= GOAL_ROLLUP_RATIO}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=int, default=30, help="seconds of full-speed redirects (default 30)")
    parser.add_argument("--connections", type=int, default=64, help="wrk connections (default 64)")
    parser.add_argument("--one-client", action="store_true",
                        help="every scan from one address (one visitor), as before 2026-11-26; by default each "
                             "comes from another address through a trusted proxy (X-Forwarded-For)")
    parser.add_argument("--postgres", action="store_true",
                        help="on a PostgreSQL database of its own (QRFLOW_BENCH_POSTGRES_URL names the server)")
    parser.add_argument("--preload", type=int, default=0, metavar="N",
                        help="with --postgres: run into the empty table, load N scans over the past year, run again")
    args, _ = parser.parse_known_args()  # bench/run.py passes every benchmark the same arguments
    if args.preload and not args.postgres:
        parser.error("--preload needs --postgres")
    require_wrk()
    context: dict[str, Any] = {
        "cores": os.cpu_count(), "duration": args.duration, "connections": args.connections,
        "clients": "one" if args.one_client else "distinct", "load_average_before": load_average(),
        "database": "postgresql" if args.postgres else "sqlite", "preload": args.preload,
    }
    proxied = {} if args.one_client else {"QRFLOW_TRUSTED_PROXIES": "127.0.0.1"}
    console.print(f"ingest benchmark: wrk -t1 -c{args.connections} -d{args.duration}s against the gateway, "
                  f"worker {' '.join(worker_arguments('scans'))}; {context['cores']} cores; {context['database']}")
    admin = os.environ.get("QRFLOW_BENCH_POSTGRES_URL", preload.DEFAULT_ADMIN_URL)
    with temp_dir("qrflow-bench-ingest-") as tmp, ExitStack() as stack:
        url = None
        if args.postgres:
            url = stack.enter_context(preload.database(admin, "platform"))
            proxied |= {"QRFLOW_DATABASE_URL": url}
        base, key, db, pids = stack.enter_context(platform_running(tmp, worker_arguments("scans"), proxied))
        code = create_dynamic_code(base, key)
        script = wrk_script(tmp, distinct_clients=not args.one_client)
        compared: dict[str, Any] = {}
        if args.preload:
            assert url is not None
            empty_url = stack.enter_context(preload.database(admin, "empty"))
            link_id, slug = preload.same_link(url, empty_url)
            console.print(f"loading {args.preload:,} scans over the past year ...")
            loaded = preload.preload(url, args.preload, before=datetime.now(UTC) - timedelta(minutes=5))
            storing = preload.interleaved({"empty": empty_url, "preloaded": url}, link_id, slug,
                                          trials=STORING_TRIALS, scans=STORING_SCANS, batch=1000,
                                          user_agent=PHONE_USER_AGENT)
            compared = compare(storing, loaded, args.preload)
        scans = StoredScans(url or db, after=scans_stored_so_far(url) if url else 0)
        results = run(base, scans, f"{base}/r/{code['slug']}", args.duration, args.connections, script,
                      pids | {"bench": os.getpid()})
        scans.close()
    results = report(context, results) | compared
    write_results(RESULTS_POSTGRES if args.postgres else RESULTS, results)


def scans_stored_so_far(url: str) -> int:
    import psycopg

    with psycopg.connect(url) as connection:
        return connection.execute("SELECT coalesce(max(id), 0) FROM scans").fetchone()[0]


if __name__ == "__main__":
    main()
