"""Webhook delivery throughput: N link.scanned events fanned out to 2 endpoints, against a raw async
httpx POST loop to the same receiver in the same run.

    python bench/webhooks.py [--events 20000] [--pace SCANS_PER_SECOND]

A receiver (uvicorn, verifying every signature with `standardwebhooks`, as a receiver would) runs in a
process of its own. The baseline posts signed envelopes to it from one asyncio loop (64 at a time). Then
the scans worker's own function (app/scans/ingest.record_scans) stores the scans in batches of 1,000,
which records the events in the outbox, and the webhooks worker, as `qrflow up` runs it, delivers them.
Reported: deliveries per second of each, their ratio, and end-to-end lag (scan stored → delivered).
By default the scans come as fast as they are stored (a backlog: the lag is mostly the time to drain it);
--pace stores them at a steady rate instead, in a batch every 0.2 s, as a steady stream of visitors does.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import time
import uuid
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.common import console, stop, temp_dir, wait_until_answering  # noqa: E402

PHONE = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 Version/17.4 Mobile Safari/604.1"


def receiver_app(secrets: dict[str, str]):  # noqa: ANN201 - an ASGI app
    from standardwebhooks import Webhook

    verifiers = {path: Webhook(secret) for path, secret in secrets.items()}
    stats: dict = {"ids": set(), "requests": 0, "lags": [], "bad": 0}

    async def app(scope, receive, send) -> None:  # noqa: ANN001
        if scope["type"] != "http":
            return
        body, more = b"", True
        while more:
            message = await receive()
            body, more = body + message.get("body", b""), message.get("more_body", False)
        status, answer = 204, b""
        if scope["method"] == "GET":
            lags = sorted(stats["lags"])
            summary = {"requests": stats["requests"], "distinct": len(stats["ids"]), "bad": stats["bad"],
                       "p50": lags[len(lags) // 2] if lags else None,
                       "p99": lags[int(len(lags) * 0.99)] if lags else None}
            status, answer = 200, json.dumps(summary).encode()
        elif scope["path"] == "/reset":
            stats.update(ids=set(), requests=0, lags=[], bad=0)
        else:
            headers = {k.decode(): v.decode() for k, v in scope["headers"]}
            try:
                event = verifiers[scope["path"]].verify(body, headers)
            except Exception:  # noqa: BLE001 - counted: a bad signature is a failed benchmark
                stats["bad"] += 1
                status = 400
            else:
                stats["requests"] += 1
                stats["ids"].add((scope["path"], event["id"]))
                stats["lags"].append(time.time() - datetime.fromisoformat(event["created_at"]).timestamp())
        length = [(b"content-length", str(len(answer)).encode())]
        await send({"type": "http.response.start", "status": status, "headers": length})
        await send({"type": "http.response.body", "body": answer})

    return app


async def raw_loop(url: str, secret: str, count: int, concurrency: int = 64) -> float:
    import httpx

    from app.webhooks.secrets import sign

    queue: asyncio.Queue[int] = asyncio.Queue()
    for index in range(count):
        queue.put_nowait(index)

    async def post(client: httpx.AsyncClient) -> None:
        while not queue.empty():
            queue.get_nowait()
            event_id = str(uuid.uuid4())
            body = json.dumps({"id": event_id, "type": "link.scanned", "created_at": _now(), "workspace_id": event_id,
                               "data": {"version": 1, "slug": "bench"}}).encode()
            stamp = int(time.time())
            headers = {"webhook-id": event_id, "webhook-timestamp": str(stamp),
                       "webhook-signature": sign(secret, event_id, stamp, body), "content-type": "application/json"}
            (await client.post(url, content=body, headers=headers)).raise_for_status()

    started = time.perf_counter()
    async with httpx.AsyncClient(timeout=15) as client:
        await asyncio.gather(*(post(client) for _ in range(concurrency)))
    return count / (time.perf_counter() - started)


def _now() -> str:
    from app.kit.db import utcnow

    return utcnow().isoformat().replace("+00:00", "Z")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--pace", type=int, default=0, help="scans stored per second (default: at once)")
    parser.add_argument("--receiver", nargs=3, metavar=("PORT", "SECRET1", "SECRET2"), help=argparse.SUPPRESS)
    options = parser.parse_args()
    if options.receiver:
        import uvicorn

        port, first, second = options.receiver
        uvicorn.run(receiver_app({"/e1": first, "/e2": second}), port=int(port), log_level="warning", access_log=False)
        return
    with temp_dir("qrflow-bench-webhooks-") as tmp:
        run(tmp, options.events, options.pace)



def run(tmp: Path, count: int, pace: int = 0) -> None:
    from app.kit import redis_server

    found = redis_server.find_binary()
    redis = redis_server.RedisServer(found[0], redis_server.free_port(), tmp / "redis").start()
    os.environ.update({
        "QRFLOW_DATA_DIR": str(tmp / "data"), "QRFLOW_REDIS_URL": redis.url, "QRFLOW_WEBHOOK_ALLOW_PRIVATE": "true",
        "QRFLOW_LOG_LEVEL": "WARNING", "QRFLOW_WORKER_NICE": "0",
    })
    from app.kit.db import create_sync_engine, sync_sessionmaker
    from app.kit.migrate import upgrade
    from app.kit.redis_server import free_port
    from app.kit.settings import get_settings
    from app.launcher import worker_arguments
    from app.webhooks.models import WebhookEndpoint
    from app.webhooks.secrets import new_secret, secret_box

    settings = get_settings()
    upgrade(settings)
    sessions = sync_sessionmaker(create_sync_engine(settings))
    secrets = [new_secret(), new_secret()]
    port = free_port()
    processes = {}
    try:
        processes["receiver"] = subprocess.Popen([sys.executable, __file__, "--receiver", str(port), *secrets])
        base = f"http://127.0.0.1:{port}"
        wait_until_answering(f"{base}/stats", processes, "the receiver")
        baseline = asyncio.run(raw_loop(f"{base}/e1", secrets[0], 2 * count))
        import httpx

        assert httpx.get(f"{base}/stats").json()["bad"] == 0
        httpx.post(f"{base}/reset")

        workspace_id, links = _code_with_link(sessions)
        box = secret_box(settings)
        with sessions.begin() as session:
            for path, secret in (("/e1", secrets[0]), ("/e2", secrets[1])):
                session.add(WebhookEndpoint(workspace_id=workspace_id, url=f"{base}{path}", events=["link.scanned"],
                                            secret=box.seal(secret)))
        with open(tmp / "worker.log", "wb") as log:
            processes["worker"] = subprocess.Popen(
                [sys.executable, "-m", "app.cli", "worker", *worker_arguments("webhooks")],
                env=os.environ, cwd=tmp, stdout=log, stderr=subprocess.STDOUT,
            )
        time.sleep(3)  # the worker connects
        worker_cpu = _cpu_seconds(processes["worker"].pid)
        started = time.perf_counter()
        _store_scans(sessions, links, count, pace)
        stored = time.perf_counter() - started
        deadline = time.monotonic() + 600
        while (stats := httpx.get(f"{base}/stats").json())["distinct"] < 2 * count:
            if time.monotonic() > deadline:
                raise SystemExit(f"only {stats} after 10 minutes")
            time.sleep(0.2)
        elapsed = time.perf_counter() - started
        worker_cpu = _cpu_seconds(processes["worker"].pid) - worker_cpu
    finally:
        for process in processes.values():
            stop(process)
        redis.stop()
    rate = 2 * count / elapsed
    paced = f", {pace} a second" if pace else ""
    console.print(f"{count} link.scanned events × 2 endpoints = {2 * count} deliveries; "
                  f"scans stored in {stored:.1f} s{paced}")
    console.print(f"raw async httpx POST loop (64 in flight): {baseline:,.0f}/s")
    console.print(f"qrflow webhooks worker ({' '.join(worker_arguments('webhooks'))}): {rate:,.0f}/s "
                  f"= {rate / baseline:.2f} of the raw loop; duplicates {stats['requests'] - stats['distinct']}, "
                  f"bad signatures {stats['bad']}")
    console.print(f"lag scan stored → delivered: p50 {stats['p50']:.2f} s, p99 {stats['p99']:.2f} s; "
                  f"webhooks worker CPU {1000 * worker_cpu / (2 * count):.2f} ms per delivery")


def _cpu_seconds(pid: int) -> float:
    """User + system CPU of a process and its descendants (Linux /proc), in seconds."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK") + sum(_cpu_seconds(int(c)) for c in children)


def _code_with_link(sessions):  # noqa: ANN001, ANN202
    from sqlalchemy import select

    from app.identity.models import Scope, Workspace
    from app.identity.service import issue_api_key
    from app.links.models import Link
    from app.qrcodes.models import QRCode

    with sessions.begin() as session:
        issue_api_key(session, "bench", Scope.ADMIN)
        workspace_id = session.scalar(select(Workspace.id).where(Workspace.name == "bench"))
        links = []
        for index in range(10):
            link = Link(workspace_id=workspace_id, slug=f"bench{index}", target_url="https://example.com/")
            session.add(QRCode(workspace_id=workspace_id, kind="url", data={}, content="x", style={}, link=link))
            session.flush()
            links.append(link.id)
    return workspace_id, links



def _store_scans(sessions, links, count: int, pace: int) -> None:  # noqa: ANN001
    from app.kit.db import utcnow
    from app.scans.enrichment import Enricher
    from app.scans.events import ScanRecorded
    from app.scans.ingest import record_scans

    enricher = Enricher(None, False)
    size = max(1, pace // 5) if pace else 1000
    started = time.monotonic()
    for start in range(0, count, size):
        if pace:
            time.sleep(max(0.0, started + start / pace - time.monotonic()))
        batch = [
            ScanRecorded(link_id=links[index % len(links)], slug=f"bench{index % len(links)}",
                         ip=f"10.0.{index % 250}.1", user_agent=PHONE, referrer=None, occurred_at=utcnow())
            for index in range(start, min(count, start + size))
        ]
        record_scans(sessions, enricher, batch)


if __name__ == "__main__":
    main()
