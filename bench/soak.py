"""Soak: a long scan flood on the whole platform as `qrflow up` runs it, the API read every second.

    .venv/bin/python bench/soak.py [--duration 180] [--connections 64] [--postgres ADMIN_URL]

`qrflow up` itself (its own redis-server, the gateway, a worker per queue, beat with its rollup every
QRFLOW_ROLLUP_INTERVAL_SECONDS, Flower) on the embedded SQLite, or with --postgres on a database it creates
on that server (e.g. postgresql://postgres@127.0.0.1:5432/postgres) and drops afterwards. One dynamic code;
after a 2 s warm-up whose scans are stored first, `wrk -t1 -c{N} -d{S}s` drives GET /r/{slug} at full speed,
every request with a user agent drawn from 200 real ones (phones, desktops, in-app browsers, a few link
previewers) and from a random client address a trusted proxy names (X-Forwarded-For). Meanwhile:
  every 0.5 s   answered (the gateway's /metrics), stored (count of the scans table): the lag, as
                bench/ingest.py computes it; until stored == answered after wrk, or 60 s passed
  every 1 s     GET /v1/qrcodes/{id} with the key `qrflow up` issued (10 s client timeout): status, latency;
                from 5 s before the flood (the baseline) until 10 s after the backlog drained
  every 0.5 s   SQLite only: how long a writer waits for the database's write lock (BEGIN IMMEDIATE, then
                ROLLBACK on a connection of its own: it never writes)
and afterwards reads from the platform's log how many scans each rollup folded and its longest transaction,
and counts "database is locked" anywhere in it.
Goals (issue #21): stored == answered; backlog drained within 60 s of the flood's end; every API read 200
within 1 s (p99 reported, against the baseline's); on SQLite no writer waits > 1 s for the lock.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import secrets
import signal
import sqlite3
import statistics
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # `python bench/soak.py` puts bench/, not the project, on sys.path

from app.kit.redis_server import free_port  # noqa: E402
from bench import common, soak_faults  # noqa: E402
from bench.common import console, create_dynamic_code, load_average, parse_wrk, pass_miss, temp_dir  # noqa: E402
from bench.ingest import Sample, lags  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "soak.json"  # soak-<backend>.json, and the platform's log beside it
BASELINE_SECONDS = 5
AFTER_DRAIN_SECONDS = 10
DRAIN_TIMEOUT = 60.0
GOAL_READ_SECONDS = 1.0
GOAL_LOCK_WAIT_SECONDS = 1.0


def user_agents() -> list[str]:
    """200 user agents as real browsers send them: the versions vary, the shapes are the real ones."""
    iphone = [f"Mozilla/5.0 (iPhone; CPU iPhone OS {v} like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
              f"Version/{v.split('_')[0]}.{v.split('_')[1]} Mobile/15E148 Safari/604.1"
              for v in ("15_7", "16_1", "16_3", "16_5", "16_6", "17_0", "17_1", "17_2", "17_3", "17_4", "17_5",
                        "17_6", "18_0", "18_1", "18_2")]
    models = ("SM-S918B", "SM-A546B", "SM-G991B", "Pixel 7", "Pixel 8 Pro", "M2101K6G", "CPH2451", "K")
    android = [f"Mozilla/5.0 (Linux; Android {a}; {m}) AppleWebKit/537.36 (KHTML, like Gecko) "
               f"Chrome/{c}.0.0.0 Mobile Safari/537.36"
               for a in (11, 12, 13, 14) for m in models for c in (120, 124, 126, 128)]
    samsung = [f"Mozilla/5.0 (Linux; Android 14; SM-S921B) AppleWebKit/537.36 (KHTML, like Gecko) "
               f"SamsungBrowser/{s}.0 Chrome/{c}.0.0.0 Mobile Safari/537.36"
               for s, c in ((23, 115), (24, 117), (25, 121))]
    crios = [f"Mozilla/5.0 (iPhone; CPU iPhone OS 17_{m} like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
             f"CriOS/{c}.0.6478.54 Mobile/15E148 Safari/604.1" for m in (1, 4, 5) for c in (122, 125, 126)]
    in_app = [
        "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148 "
        "Instagram 334.0.4.32.98 (iPhone14,5; iOS 17_5; en_US; en; scale=3.00; 1170x2532; 606120379)",
        "Mozilla/5.0 (Linux; Android 14; Pixel 8 Build/AP2A.240605.024; wv) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Version/4.0 Chrome/126.0.6478.71 Mobile Safari/537.36 [FB_IAB/FB4A;FBAV/470.0.0.40.94;]",
    ]
    desktop = [f"Mozilla/5.0 ({os_}) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/{c}.0.0.0 Safari/537.36{edge}"
               for os_ in ("Windows NT 10.0; Win64; x64", "Macintosh; Intel Mac OS X 10_15_7", "X11; Linux x86_64")
               for c in (119, 121, 123, 125, 126) for edge in ("", f" Edg/{c}.0.0.0")]
    firefox = [f"Mozilla/5.0 ({os_}; rv:{v}.0) Gecko/20100101 Firefox/{v}.0"
               for os_ in ("Windows NT 10.0; Win64; x64", "Macintosh; Intel Mac OS X 14.5", "X11; Ubuntu; Linux x86_64")
               for v in (115, 126, 127)]
    previewers = [
        "WhatsApp/2.24.12.78 A", "facebookexternalhit/1.1 (+http://www.facebook.com/externalhit_uatext.php)",
        "Slackbot-LinkExpanding 1.0 (+https://api.slack.com/robots)", "TelegramBot (like TwitterBot)",
        "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
    ]
    agents = iphone + android + samsung + crios + in_app + desktop + firefox + previewers
    return random.Random(21).sample(agents, 200)


def wrk_script(directory: Path) -> Path:
    agents = ", ".join(json.dumps(agent) for agent in user_agents())
    path = directory / "soak.lua"
    path.write_text(f"""
local agents = {{{agents}}}
math.randomseed(os.time())
request = function()
  local client = string.format("%d.%d.%d.%d", math.random(1, 223), math.random(0, 255), math.random(0, 255),
                               math.random(1, 254))
  return wrk.format(nil, nil, {{["User-Agent"] = agents[math.random(#agents)], ["X-Forwarded-For"] = client}})
end
""" + common._WRK_SCRIPT)
    return path


# --- the platform ----------------------------------------------------------------------------------------


@contextmanager
def qrflow_up(tmp: Path, database_url: str) -> Any:
    """`qrflow up` in its own process group; yields (base url, API key, log path)."""
    port = free_port()
    env = common.platform_env(tmp, f"redis://127.0.0.1:{free_port()}/0", port) | {
        "QRFLOW_FLOWER_PORT": str(free_port()), "QRFLOW_TRUSTED_PROXIES": "127.0.0.1",
        "QRFLOW_LOG_LEVEL": "INFO",  # the rollups' reports; redirects are never logged
    } | ({"QRFLOW_DATABASE_URL": database_url} if database_url else {})
    log_path = tmp / "qrflow-up.log"
    with open(log_path, "wb") as log:
        up = subprocess.Popen([sys.executable, "-m", "app.cli", "up"], env=env, cwd=tmp, stdout=log,
                              stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while not (key := re.search(r"QRFLOW_API_KEY=(\S+)", log_path.read_text(errors="replace"))):
            if up.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"qrflow up did not come up:\n{log_path.read_text(errors='replace')[-3000:]}")
            time.sleep(0.5)
        yield f"http://127.0.0.1:{port}", key.group(1), log_path
    finally:
        up.send_signal(signal.SIGINT)  # as Ctrl-C: the supervisor stops every service in order
        try:
            up.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(up.pid, signal.SIGKILL)
            up.wait()


@contextmanager
def database(tmp: Path, admin_url: str | None) -> Any:
    """('', count of scans) on SQLite; (a fresh database's URL, its count) on PostgreSQL."""
    if admin_url is None:
        path = tmp / "data" / "qrflow.db"
        yield "", lambda: _count_sqlite(path), path
        return
    import psycopg

    name = f"qrflow_soak_{secrets.token_hex(4)}"
    with psycopg.connect(admin_url, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    url = admin_url.rsplit("/", 1)[0] + f"/{name}"
    try:
        with psycopg.connect(url, autocommit=True) as connection:
            yield url, lambda: connection.execute("SELECT count(*) FROM scans").fetchone()[0], None
    finally:
        with psycopg.connect(admin_url, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _count_sqlite(path: Path) -> int:
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:  # read-only: never takes the write lock
        return db.execute("SELECT count(*) FROM scans").fetchone()[0]


# --- what runs beside the flood ------------------------------------------------------------------------


class Every(threading.Thread):
    """Calls `probe()` every `interval` s (on a schedule, not after each call) until stopped; keeps
    (seconds since `origin`, result)."""

    def __init__(self, interval: float, probe: Any, origin: float) -> None:
        super().__init__(daemon=True)
        self.interval, self.probe, self.origin = interval, probe, origin
        self.results: list[tuple[float, Any]] = []
        self.stopped = threading.Event()

    def run(self) -> None:
        tick = time.monotonic()
        while not self.stopped.is_set():
            self.results.append((time.monotonic() - self.origin, self.probe()))
            tick += self.interval
            self.stopped.wait(max(0.0, tick - time.monotonic()))


def api_reader(base: str, key: str, code_id: str) -> Any:
    client = httpx.Client(base_url=base, headers={"Authorization": f"Bearer {key}"}, timeout=10)

    def read() -> tuple[int | str, float]:
        started = time.monotonic()
        try:
            status: int | str = client.get(f"/v1/qrcodes/{code_id}").status_code
        except httpx.HTTPError as exc:
            status = type(exc).__name__
        return status, time.monotonic() - started

    return read


def lock_prober(db: Path) -> Any:
    connection = sqlite3.connect(db, timeout=60, isolation_level=None, check_same_thread=False)

    def wait_for_lock() -> float:
        started = time.monotonic()
        connection.execute("BEGIN IMMEDIATE")
        waited = time.monotonic() - started
        connection.execute("ROLLBACK")
        return waited

    return wait_for_lock


def quantiles(values: list[float]) -> dict[str, float]:
    if not values:
        return {"n": 0}
    ordered = sorted(values)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    return {"n": len(values), "p50": round(statistics.median(values), 4), "p99": round(p99, 4),
            "max": round(ordered[-1], 4)}


def rollups_from_log(text: str) -> list[dict[str, float]]:
    runs = []
    for line in text.splitlines():
        if "analytics_rollup " in line or '"analytics_rollup"' in line:
            fields = dict(re.findall(r"(folded|longest_transaction_s|transactions)['\"]?[=:] ?([\d.]+)", line))
            if fields:
                runs.append({k: float(v) for k, v in fields.items()})
    return runs


# --- the run -----------------------------------------------------------------------------------------------


def run(args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    with database(tmp, args.postgres) as (url, count, sqlite_path), qrflow_up(tmp, url) as (base, key, log_path):
        code = create_dynamic_code(base, key)
        target = f"{base}/r/{code['slug']}"
        script = wrk_script(tmp)
        http = httpx.Client(base_url=base, timeout=10)

        def answered() -> int:
            payload = http.get("/metrics").text
            return int(common.metric(payload, "qrflow_http_requests_total", method="GET", route="/r/{slug}",
                                     status="302") or 0)

        command = [common.require_wrk(), "-t1", f"-c{args.connections}", "--latency", "-s", str(script)]
        subprocess.run([*command, "-d2s", target], check=True, capture_output=True)  # warm-up
        deadline = time.monotonic() + DRAIN_TIMEOUT
        while count() < (start_answered := answered()) and time.monotonic() < deadline:
            time.sleep(0.2)
        start = Sample(0.0, start_answered, 0.0, count(), 0, 0)
        origin = time.monotonic()
        reader = Every(1.0, api_reader(base, key, code["id"]), origin)
        prober = Every(0.5, lock_prober(sqlite_path), origin) if sqlite_path else None
        for thread in (reader, prober):
            if thread:
                thread.start()
        time.sleep(BASELINE_SECONDS)
        flood_at = time.monotonic() - origin
        wrk = subprocess.Popen([*command, f"-d{args.duration}s", target], stdout=subprocess.PIPE, text=True)
        samples: list[Sample] = []
        ended_at = drained_at = None
        while True:
            tick = time.monotonic()
            t_answered, a = tick - origin, answered()
            t_stored, stored = time.monotonic() - origin, count()
            samples.append(Sample(t_answered, a, t_stored, stored, 0, 0))
            if ended_at is None and wrk.poll() is not None:
                ended_at = time.monotonic() - origin
                continue  # one more sample: the final answered count
            if ended_at is not None:
                if stored >= samples[-1].answered:
                    drained_at = t_stored
                    break
                if t_stored > ended_at + DRAIN_TIMEOUT:
                    break
            time.sleep(max(0.0, 0.5 - (time.monotonic() - tick)))
        time.sleep(AFTER_DRAIN_SECONDS)
        for thread in (reader, prober):
            if thread:
                thread.stopped.set()
                thread.join()
        result = parse_wrk(wrk.communicate()[0])
    log_text = log_path.read_text(errors="replace")  # read after `qrflow up` stopped: every line is in
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    (RESULTS.parent / f"soak-{'postgresql' if args.postgres else 'sqlite'}.log").write_text(log_text)
    for s in samples:
        s.t_answered -= flood_at  # lags() wants seconds since the flood began, the start sample at 0
        s.t_stored -= flood_at
    lags(samples, start)
    ended, drained = ended_at - flood_at, (drained_at - flood_at if drained_at else None)
    final = samples[-1]
    reads = {
        phase: [(t - flood_at, status, seconds) for t, (status, seconds) in reader.results if keep(t - flood_at)]
        for phase, keep in (("before", lambda t: t < 0), ("flood", lambda t: 0 <= t < ended),
                            ("after", lambda t: t >= ended))
    }
    waits = {phase: [w for t, w in (prober.results if prober else []) if keep(t - flood_at)]
             for phase, keep in (("flood", lambda t: 0 <= t < ended), ("after", lambda t: t >= ended))}
    rollups = rollups_from_log(log_text)
    return {
        "backend": "postgresql" if args.postgres else "sqlite",
        "wrk": result, "redirects_per_s": result["requests_per_s"],
        "answered": final.answered - start.answered, "stored": final.stored - start.stored,
        "exact": final.answered == final.stored and drained is not None,
        "flood_seconds": ended, "drained_seconds_after_flood": drained - ended if drained else None,
        "largest_lag_s": max(s.lag for s in samples),
        "backlog_at_flood_end": max((s.answered - s.stored for s in samples if s.t_stored <= ended), default=0),
        "drain_rate_per_s": ((final.stored - max(s.stored for s in samples if s.t_stored <= ended))
                             / (drained - ended) if drained and drained > ended else None),
        "api_reads": {phase: quantiles([seconds for _, _, seconds in rows]) | {
            "not_200": [(round(t, 1), status) for t, status, _ in rows if status != 200],
            "over_1s": sum(seconds > GOAL_READ_SECONDS for _, _, seconds in rows)} for phase, rows in reads.items()},
        "lock_wait_s": {phase: quantiles(values) for phase, values in waits.items()},
        "rollups": rollups,
        "rollup_longest_transaction_s": max((r.get("longest_transaction_s", 0.0) for r in rollups), default=None),
        "database_is_locked_in_log": log_text.count("database is locked"),
        "samples": [[round(s.t_stored, 1), s.answered, s.stored, round(s.lag, 2)] for s in samples],
    }


def report(r: dict[str, Any]) -> None:
    w = r["wrk"]
    console.print(f"[bold]{r['backend']}[/bold]: {r['redirects_per_s']:,.0f} redirects/s "
                  f"for {r['flood_seconds']:.0f} s "
                  f"(p99 {w['p99_ms']:.1f} ms; {w['status_errors']} status errors, {w['timeouts']} timeouts)")
    console.print(f"stored {r['stored']:,} of {r['answered']:,} answered; largest lag {r['largest_lag_s']:.1f} s; "
                  f"backlog at the flood's end {r['backlog_at_flood_end']:,}, drained "
                  + (f"{r['drained_seconds_after_flood']:.1f} s later"
                     if r["drained_seconds_after_flood"] is not None else "[red]NOT within 60 s[/red]")
                  + (f" at {r['drain_rate_per_s']:,.0f}/s" if (r["drained_seconds_after_flood"] or 0) >= 2 else ""))
    reads = r["api_reads"]
    for phase, q in reads.items():
        if q["n"]:
            console.print(f"API reads {phase:>6}: {q['n']} reads, p50 {q['p50'] * 1000:.0f} ms, p99 "
                          f"{q['p99'] * 1000:.0f} ms, max {q['max'] * 1000:.0f} ms; not 200: {q['not_200'] or 'none'}")
    base = reads["before"].get("p99") or 0
    worst = max(reads["flood"].get("p99", 0), reads["after"].get("p99", 0))
    if base:
        console.print(f"API read p99 under load / before the flood: {worst / base:.1f}x")
    for phase, q in r["lock_wait_s"].items():
        if q["n"]:
            console.print(f"a writer's wait for SQLite's lock, {phase}: p50 {q['p50'] * 1000:.0f} ms, "
                          f"p99 {q['p99'] * 1000:.0f} ms, max {q['max'] * 1000:.0f} ms ({q['n']} probes)")
    folded = [int(x.get("folded", 0)) for x in r["rollups"]]
    console.print(f"rollups: {len(folded)} runs folded {sum(folded):,} scans; longest transaction "
                  f"{r['rollup_longest_transaction_s']} s; 'database is locked' in the log: "
                  f"{r['database_is_locked_in_log']}")
    reads_ok = all(q.get("max", 0) <= GOAL_READ_SECONDS and not q["not_200"] for q in reads.values())
    lock_max = max((q.get("max", 0) for q in r["lock_wait_s"].values()), default=0)
    console.print(f"goal: stored == answered -> {pass_miss(r['exact'])}")
    console.print(f"goal: drained within {DRAIN_TIMEOUT:.0f} s of the flood's end -> "
                  f"{pass_miss(r['drained_seconds_after_flood'] is not None)}")
    console.print(f"goal: every API read 200 within {GOAL_READ_SECONDS:.0f} s -> {pass_miss(reads_ok)}")
    if r["backend"] == "sqlite":
        console.print(f"goal: no writer waits > {GOAL_LOCK_WAIT_SECONDS:.0f} s for the lock -> "
                      f"{pass_miss(lock_max <= GOAL_LOCK_WAIT_SECONDS)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__ + "\n" + (soak_faults.__doc__ or ""),
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=int, default=180, help="seconds of full-speed redirects (default 180)")
    parser.add_argument("--connections", type=int, default=64, help="wrk connections (default 64)")
    parser.add_argument("--postgres", metavar="ADMIN_URL", help="on a database created on this server, not SQLite")
    parser.add_argument("--minutes", type=float,
                        help="the faults soak instead (issue #19): this many minutes of mixed load and faults")
    parser.add_argument("--redirect-threads", type=int, default=4, help="faults soak: redirect loops (default 4)")
    parser.add_argument("--drain-minutes", type=float, default=soak_faults.DRAIN_MINUTES,
                        help="faults soak: how long the end waits for stored == answered (default 17)")
    args, _ = parser.parse_known_args()
    if args.minutes:
        faults_soak(args)
        return
    common.require_wrk()
    before = load_average()
    with temp_dir("qrflow-bench-soak-") as tmp:
        results = run(args, tmp)
    report(results)
    results["context"] = {"cores": os.cpu_count(), "duration": args.duration, "connections": args.connections,
                          "load_average_before": before, "load_average_after": load_average()}
    console.print(f"load average before {before}, after {results['context']['load_average_after']}")
    path = RESULTS.with_name(f"soak-{results['backend']}.json")
    common.write_results(path, results)


def faults_soak(args: argparse.Namespace) -> None:
    before = load_average()
    with temp_dir("qrflow-bench-soak-faults-") as tmp, database(tmp, args.postgres) as (url, count, sqlite_path):
        sql = soak_faults.query(url, sqlite_path)
        results = soak_faults.run(args, tmp, url, count, sql)
    results["context"] = {"cores": os.cpu_count(), "redirect_threads": args.redirect_threads,
                          "load_average_before": before, "load_average_after": load_average()}
    soak_faults.report(results)
    console.print(f"load average before {before}, after {results['context']['load_average_after']}")
    common.write_results(RESULTS.with_name(f"soak-faults-{results['backend']}.json"), results)


if __name__ == "__main__":
    main()
