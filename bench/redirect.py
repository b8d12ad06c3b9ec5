"""Redirect throughput and latency: the real gateway's GET /r/{slug} against a bare Starlette 302.

    .venv/bin/python bench/redirect.py [--duration SECONDS] [--connections N] [--capped]

Both measured in one run, so that their ratio compares (absolute figures drift with the machine):
  bare      bench/bare_redirect.py: a Starlette route returning the same 302 (Location, Cache-Control:
            no-store), served by uvicorn as `qrflow api` serves the gateway (one process, uvloop and
            httptools when installed, no access log)
  gateway   a real `qrflow api` (SQLite, its own Redis) with recording on: the link from the in-process
            cache, each scan into the spool, its shipper process publishing batches to a real `qrflow worker
            -Q scans -c 0` (a process per core, as `qrflow up` runs it) that stores them meanwhile
Each is driven by `wrk -t1 -c{N} -d{S}s --latency` with a phone's User-Agent (a scan without one is a bot,
stored but not counted in scans_total), after a 2 s warm-up run that is discarded. A Lua done() hook
gives the exact figures (req/s, p50, p99). Goals (the issue): gateway/bare >= 0.5, p99 <= 10 ms at 64
connections. Then it waits until the worker has stored every answered scan and compares answered (wrk's
count and the gateway's own counter) with stored (scans_total from the API and rows in SQLite).
"""

from __future__ import annotations

import argparse
import os
import resource
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from rich.table import Table

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # `python bench/redirect.py` puts bench/, not the project, on sys.path

from app.kit import redis_server  # noqa: E402
from app.launcher import worker_arguments  # noqa: E402
from bench.common import (  # noqa: E402
    console,
    cpu_seconds,
    create_dynamic_code,
    load_average,
    metric,
    pass_miss,
    platform_running,
    print_load_average,
    require_wrk,
    run_wrk,
    stop,
    temp_dir,
    wait_until_answering,
    write_results,
    wrk_script,
)

RESULTS = ROOT / "bench" / "results" / "redirect.json"
WARMUP_SECONDS = 2
GOAL_RATIO = 0.5
GOAL_P99_MS = 10.0
STORE_TIMEOUT = 60.0


def children_cpu() -> float:
    """CPU seconds of this process's reaped children: around one wrk run, that wrk's CPU."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def measure(
    url: str,
    seconds: int,
    connections: int,
    script: Path,
    pids: dict[str, int],
    settle: Callable[[], Any] = lambda: None,
) -> tuple[dict[str, Any], Any]:
    """wrk's figures of the measured run, CPU per process; and what `settle` returned after the warm-up."""
    run_wrk(url, WARMUP_SECONDS, connections, script)  # imports, connections, caches: discarded
    settled = settle()
    cpu0, wrk0 = cpu_seconds(pids), children_cpu()
    result = run_wrk(url, seconds, connections, script)
    cpu1, wrk1 = cpu_seconds(pids), children_cpu()
    cpu = {role: cpu1[role] - cpu0.get(role, 0.0) for role in cpu1} | {"wrk": wrk1 - wrk0}
    wall = result["duration_us"] / 1e6
    result["cores_busy"] = {role: round(s / wall, 2) for role, s in cpu.items()}
    result["cpu_us_per_request"] = {role: round(s / max(result["requests"], 1) * 1e6, 1) for role, s in cpu.items()}
    return result, settled


def bare_rate(tmp: Path, seconds: int, connections: int, script: Path) -> dict[str, Any]:
    port = redis_server.free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("QRFLOW_")} | {"PYTHONPATH": str(ROOT)}
    # The flags `qrflow api` gives uvicorn.run (app/cli.py): loop and http "auto" (uvloop, httptools when
    # installed), one process, no access log, no Server header.
    command = [sys.executable, "-m", "uvicorn", "bench.bare_redirect:app", "--host", "127.0.0.1", "--port", str(port),
               "--no-access-log", "--no-server-header", "--log-level", "warning"]
    with open(tmp / "bare.log", "wb") as log:
        process = subprocess.Popen(command, env=env, cwd=tmp, stdout=log, stderr=subprocess.STDOUT)
    try:
        url = f"http://127.0.0.1:{port}/r/bench"
        wait_until_answering(url, {"bare": process}, "the bare app", status=302)
        return measure(url, seconds, connections, script, {"server": process.pid})[0]
    finally:
        stop(process)


def counts(base: str, key: str, db: Path, code_id: str, slug: str) -> dict[str, int]:
    """Scans answered (the gateway's own 302 counter) and stored (scans_total; rows in SQLite)."""
    payload = httpx.get(f"{base}/metrics", timeout=10).text
    answered = metric(payload, "qrflow_http_requests_total", method="GET", route="/r/{slug}", status="302") or 0
    code = httpx.get(f"{base}/v1/qrcodes/{code_id}", headers={"Authorization": f"Bearer {key}"}, timeout=10).json()
    # Read-only, so the benchmark never takes SQLite's write lock away from the worker.
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        (rows,) = conn.execute(
            "SELECT count(*) FROM scans JOIN links ON links.id = scans.link_id WHERE links.slug = ?", (slug,)
        ).fetchone()
    return {"answered": int(answered), "scans_total": int(code["scans_total"] or 0), "rows": int(rows)}


def wait_stored(base: str, key: str, db: Path, code_id: str, slug: str) -> tuple[dict[str, int], float]:
    """Poll until stored rows reach the answered count (or STORE_TIMEOUT); (last counts, seconds waited)."""
    started = time.monotonic()
    while True:
        now = counts(base, key, db, code_id, slug)
        waited = time.monotonic() - started
        if (now["rows"] >= now["answered"] and now["scans_total"] >= now["answered"]) or waited > STORE_TIMEOUT:
            return now, waited
        time.sleep(0.2)


def gateway_rate(tmp: Path, seconds: int, connections: int, script: Path, max_scans: int) -> dict[str, Any]:
    with platform_running(tmp, worker_arguments("scans")) as (base, key, db, pids):
        code = create_dynamic_code(base, key, **({"max_scans": max_scans} if max_scans else {}))
        code_id, slug = code["id"], code["slug"]
        url = f"{base}/r/{slug}"
        # The warm-up's scans are stored before the measured run starts: an empty backlog, clean counts.
        result, before = measure(url, seconds, connections, script, pids,
                                 lambda: wait_stored(base, key, db, code_id, slug)[0])
        after, waited = wait_stored(base, key, db, code_id, slug)
        result["scans"] = {name: after[name] - before[name] for name in after} | {
            "answered_per_wrk": result["answered_ok"], "seconds_to_store_after_wrk": round(waited, 2),
        }
        return result


def report(context: dict[str, Any], bare: dict[str, Any], gate: dict[str, Any]) -> dict[str, Any]:
    c = context["connections"]
    ratio = gate["requests_per_s"] / bare["requests_per_s"]
    table = Table(title=f"GET /r/{{slug}}: wrk -t1 -c{c} -d{context['duration']}s (after a {WARMUP_SECONDS} s warm-up)")
    for column in ("server", "req/s", "p50 ms", "p90 ms", "p99 ms", "max ms", "server CPU µs/req", "gateway / this"):
        table.add_column(column, justify="left" if column == "server" else "right")
    rows = (("bare Starlette 302", bare, "server"), ("gateway (cache + spool, worker storing)", gate, "gateway"))
    for name, r, server in rows:
        table.add_row(name, f"{r['requests_per_s']:,.0f}", f"{r['p50_ms']:.2f}", f"{r['p90_ms']:.2f}",
                      f"{r['p99_ms']:.2f}", f"{r['max_ms']:.1f}", f"{r['cpu_us_per_request'][server]:.0f}",
                      f"{gate['requests_per_s'] / r['requests_per_s']:.2f}")
    console.print(table)
    cpu = Table(title=f"CPU while measuring ({context['cores']} cores in all; 1.00 = one core all the time)")
    for column in ("process", "cores busy", "CPU µs per request"):
        cpu.add_column(column, justify="left" if column == "process" else "right")
    for label, r in (("bare", bare), ("gateway", gate)):
        for role, busy in r["cores_busy"].items():
            cpu.add_row(f"{label}: {role}", f"{busy:.2f}", f"{r['cpu_us_per_request'][role]:.0f}")
    console.print(cpu)
    kinds = ("connect_errors", "read_errors", "write_errors", "status_errors", "timeouts")
    errors = {k: gate[k] + bare[k] for k in kinds}
    if any(errors.values()):
        console.print(f"[red]wrk errors (both runs): {errors}[/red]")
    s = gate["scans"]
    exact = s["rows"] == s["answered"] == s["scans_total"]
    console.print(
        f"scans: answered {s['answered_per_wrk']:,} per wrk, {s['answered']:,} per the gateway's 302 counter; "
        f"stored {s['scans_total']:,} (scans_total), {s['rows']:,} (rows in SQLite), "
        f"{s['seconds_to_store_after_wrk']:.1f} s after wrk ended -> "
        f"{'[green]exact[/green]' if exact else '[red]NOT exact[/red]'}"
    )
    console.print("  (wrk stops counting at its deadline: up to one response per connection it was still waiting for "
                  "was answered and recorded but not counted by wrk)")
    cpu_ratio = bare["cpu_us_per_request"]["server"] / gate["cpu_us_per_request"]["gateway"]
    console.print(f"per CPU second of the server process (steadier than req/s when others load the machine): "
                  f"gateway / bare = {cpu_ratio:.2f}")
    context["load_average_after"] = load_average()
    print_load_average(context)
    console.print(f"goal: gateway / bare >= {GOAL_RATIO} -> {ratio:.2f} {pass_miss(ratio >= GOAL_RATIO)}")
    console.print(f"goal: gateway p99 <= {GOAL_P99_MS:.0f} ms at {c} connections -> {gate['p99_ms']:.2f} ms "
                  f"{pass_miss(gate['p99_ms'] <= GOAL_P99_MS)}")
    return {
        "context": context | {"finished_at": datetime.now(UTC).isoformat(timespec="seconds")},
        "bare": bare, "gateway": gate, "ratio_gateway_vs_bare": round(ratio, 3),
        "ratio_per_server_cpu_second": round(cpu_ratio, 3),
        "goals": {"ratio": ratio >= GOAL_RATIO, "p99": gate["p99_ms"] <= GOAL_P99_MS, "stored_exact": exact},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=int, default=10, help="seconds of each measured wrk run (default 10)")
    parser.add_argument("--connections", type=int, default=64, help="wrk connections (default 64)")
    parser.add_argument("--capped", action="store_true",
                        help="a capped link (max_scans 10^9): every scan takes a use in Redis, as the person the "
                        "classifier says it is")
    args, _ = parser.parse_known_args()  # bench/run.py passes every benchmark the same arguments
    require_wrk()
    context: dict[str, Any] = {
        "cores": os.cpu_count(), "duration": args.duration, "connections": args.connections, "capped": args.capped,
        "load_average_before": load_average(),
    }
    console.print(f"redirect benchmark: wrk -t1 -c{args.connections} -d{args.duration}s; {context['cores']} cores")
    with temp_dir("qrflow-bench-redirect-") as tmp:
        script = wrk_script(tmp)
        console.print("bare Starlette 302 ...")
        bare = bare_rate(tmp, args.duration, args.connections, script)
        console.print("gateway (Redis + qrflow api + qrflow worker -Q scans) ...")
        gate = gateway_rate(tmp, args.duration, args.connections, script, 10**9 if args.capped else 0)
    results = report(context, bare, gate)
    write_results(RESULTS, results)


if __name__ == "__main__":
    main()
