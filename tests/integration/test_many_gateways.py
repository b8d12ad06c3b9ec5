"""Many hosts on one machine (issue #19): three `qrflow api` processes, each with a spool directory of its
own as on three hosts, two workers for each queue that does the heavy work (qr, scans), one for analytics,
two beats (one started by mistake), one Redis and PostgreSQL, images in a real S3 server (SeaweedFS,
tests/s3_server.py); each "host" has a data directory of its own."""

from __future__ import annotations

import itertools
import time
import uuid
from pathlib import Path

import httpx
import pytest
import redis
from cryptography.fernet import Fernet
from sqlalchemy import func, select

from app.analytics import rollup as rollups
from app.kit.db import create_sync_engine, sync_sessionmaker
from app.links.cache import CHANNEL
from app.links.models import Link
from app.scans.models import Scan
from tests.integration.analytics_helpers import brute_force, stored_buckets
from tests.integration.gateway_process import GatewayProcess
from tests.integration.test_redirect import IPHONE
from tests.integration.worker_processes import Processes
from tests.s3_server import BUCKET, REGION

pytestmark = pytest.mark.e2e

BROKER_DB = 15
# Generous: the bound on a host busy with other test runs, not the figure (printed, see the test).
PROPAGATION_DEADLINE = 10.0
SCANS_PER_GATEWAY = 100


def store(s3_server, name: str) -> dict[str, str]:
    """Where every process keeps and reads images: a prefix of its own in the test's S3 server, which
    every "host" reaches and none holds on its disk."""
    return {
        "QRFLOW_STORAGE_URL": f"s3://{BUCKET}/{name}",
        "QRFLOW_S3_ENDPOINT_URL": s3_server.endpoint,
        "QRFLOW_S3_REGION": REGION,
        **s3_server.credentials,
    }


def test_three_gateways_two_workers_per_queue_and_a_second_beat(backend, redis_url, alice, request, tmp_path):
    if backend.name != "postgres":
        pytest.skip("many hosts share a database server: PostgreSQL only (SQLite is one host's file)")
    s3_server = request.getfixturevalue("s3_server")  # not started for the skipped run
    common = {
        **store(s3_server, f"many-gateways-{uuid.uuid4().hex[:8]}"),
        # What production sets for every host (a key generated on first start would be each host's own).
        "QRFLOW_WEBHOOK_SECRET_KEY": Fernet.generate_key().decode(),
        "QRFLOW_PUBLIC_BASE_URL": "http://qr.test",
        "QRFLOW_ROLLUP_INTERVAL_SECONDS": "1",
        "QRFLOW_WORKER_NICE": "0",  # the test's pace on a shared host; the redirect's priority is not its subject
    }
    # Every "host" has a data directory of its own: nothing but the servers is shared.
    platform = Processes(
        backend, redis_url, db=BROKER_DB, tmp_path=tmp_path, QRFLOW_DATA_DIR=str(tmp_path / "workers-host"), **common
    )
    gateways: list[GatewayProcess] = []
    engine = create_sync_engine(backend.settings)
    try:
        for queue in ("qr", "qr", "scans", "scans", "analytics,default"):
            platform.worker(queue, concurrency=1)
        platform.beat("beat-a")
        platform.beat("beat-b")  # the mistake: two would schedule every rollup twice
        for host in ("host-a", "host-b", "host-c"):
            gateways.append(
                GatewayProcess(
                    backend,
                    tmp_path / host,
                    **common,
                    QRFLOW_REDIS_URL=platform.broker_url,
                    QRFLOW_SCAN_SPOOL_DIR=str(tmp_path / host / "spool"),
                    QRFLOW_SCAN_FLUSH_INTERVAL_MS="100",
                    wait=False,
                )
            )
        for gateway in gateways:
            gateway.wait_until_answering()
        clients = [gateway.client() for gateway in gateways]
        a, b, c = clients

        # Created through one, rendered by any qr worker, read and fetched through the others.
        created = a.post(
            "/v1/qrcodes", json={"kind": "url", "data": {"url": "https://example.com/before"}}, headers=alice.headers
        )
        assert created.status_code == 202, created.text
        code = created.json()
        ready = _wait_ready(b, alice, code["id"])
        png = c.get(ready["images"]["png"], headers=alice.headers)
        assert png.status_code == 200 and png.content.startswith(b"\x89PNG"), png.text[:200]
        assert png.headers["etag"] == b.get(ready["images"]["png"], headers=alice.headers).headers["etag"]
        assert not list(tmp_path.rglob("images")), "an image was kept on a host's disk"

        # A PATCH through one is announced on Redis and evicted by the others, whose entries would
        # otherwise live HEALTHY_TTL (60 s) while their subscription is up.
        for gateway in gateways:
            _wait_for_log(gateway, "link_cache_subscribed")
        for client in clients:
            assert _location(client, code["slug"]) == "https://example.com/before"  # cached everywhere
        announcements = redis.Redis.from_url(platform.broker_url).pubsub()
        announcements.subscribe(CHANNEL)
        assert _next_message(announcements)["type"] == "subscribe"  # listening before the PATCH
        patched = a.patch(
            f"/v1/qrcodes/{code['id']}", json={"target_url": "https://example.com/after"}, headers=alice.headers
        )
        assert patched.status_code == 200, patched.text
        committed = time.monotonic()
        served_after = {}
        for name, client in (("b", b), ("c", c)):
            while _location(client, code["slug"]) != "https://example.com/after":
                assert time.monotonic() - committed < PROPAGATION_DEADLINE, f"gateway {name} serves the old target"
                time.sleep(0.01)
            served_after[name] = time.monotonic() - committed
        print(
            f"\nPATCH through a served by b after {served_after['b'] * 1000:.0f} ms, "
            f"by c after {served_after['c'] * 1000:.0f} ms"
        )
        message = _next_message(announcements)
        announcements.close()
        assert (message["type"], message["data"].decode()) == ("message", code["slug"])

        # Redirects spread over all three: every answered scan is stored, once.
        spread = a.post(
            "/v1/qrcodes", json={"kind": "url", "data": {"url": "https://example.com/spread"}}, headers=alice.headers
        ).json()
        answered = 0
        for client in itertools.islice(itertools.cycle(clients), 3 * SCANS_PER_GATEWAY):
            response = client.get(
                f"/r/{spread['slug']}", headers={"user-agent": f"{IPHONE} #{answered}"}, follow_redirects=False
            )
            assert response.status_code == 302, response.text
            answered += 1
        for client in clients:
            _wait_metric(client, "qrflow_scans_published_total", SCANS_PER_GATEWAY)
        assert _wait_stored(engine, spread["slug"], answered) == (answered, answered)
        # Each host's scans went through its own spool, none left on its disk.
        for gateway, client in zip(gateways, clients, strict=True):
            assert _metric(client, "qrflow_scan_spool_depth") == 0
            assert list((gateway.tmp_path / "spool").iterdir()), "the gateway did not spool on its own disk"

        # Both beats send the rollup; the buckets still hold each scan once.
        sent = {name: _rollups_sent(tmp_path / f"{name}.log") for name in ("beat-a", "beat-b")}
        last_scan = _max_scan_id(engine)
        sessions = sync_sessionmaker(engine)
        _wait(lambda: rollups.read_state(sessions).last_scan_id >= last_scan, "the rollup caught up")
        for name, before in sent.items():  # and a few more of each beat's rollups ran over the same scans
            _wait(
                lambda name=name, before=before: _rollups_sent(tmp_path / f"{name}.log") >= before + 3,
                f"{name} sent more rollups",
            )
        _wait(lambda: len(platform.logged_events("analytics_rollup")) >= 6, "the rollups ran")
        links = _link_ids(engine, [code["slug"], spread["slug"]])
        watermark = rollups.read_state(sessions).last_scan_id
        # Hourly buckets: daily ones are written once the day is over (app/analytics/rollup.py).
        expected_hourly, _ = brute_force(engine, links, watermark)
        hourly, _ = stored_buckets(engine, links)
        assert hourly == expected_hourly
        people = [n for (link, dimension, _, _), (n, *_) in hourly.items() if link == links[1] and dimension == "all"]
        assert sum(people) == answered
    finally:
        for gateway in gateways:
            gateway.stop()
        platform.stop()
        engine.dispose()


def _location(client: httpx.Client, slug: str) -> str:
    response = client.get(f"/r/{slug}", headers={"user-agent": "scaleout-probe"}, follow_redirects=False)
    assert response.status_code == 302, response.text
    return response.headers["location"]


def _next_message(pubsub) -> dict:
    deadline = time.monotonic() + 30
    while (message := pubsub.get_message(timeout=1.0)) is None:
        assert time.monotonic() < deadline, "nothing on the channel"
    return message


def _wait(condition, what: str, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"{what}: not within {timeout} s"
        time.sleep(0.2)


def _wait_ready(client: httpx.Client, caller, code_id: str) -> dict:
    code: dict = {}

    def ready() -> bool:
        nonlocal code
        code = client.get(f"/v1/qrcodes/{code_id}", headers=caller.headers).json()
        assert code["status"] != "failed", code
        return code["status"] == "ready"

    _wait(ready, "the code was rendered")
    return code


def _wait_for_log(gateway: GatewayProcess, needle: str) -> None:
    _wait(lambda: needle in gateway.log_path.read_text(errors="replace"), f"{needle} in {gateway.log_path}")


def _metric(client: httpx.Client, name: str) -> float:
    for line in client.get("/metrics").text.splitlines():
        if line.startswith((name + " ", name + "{")):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"{name} not in /metrics")


def _wait_metric(client: httpx.Client, name: str, at_least: float) -> None:
    _wait(lambda: _metric(client, name) >= at_least, f"{name} >= {at_least}")


def _stored(engine, slug: str) -> tuple[int, int]:
    with engine.connect() as connection:
        return connection.execute(
            select(func.count(), func.count(func.distinct(Scan.event_id)))
            .join(Link, Link.id == Scan.link_id)
            .where(Link.slug == slug)
        ).one()


def _wait_stored(engine, slug: str, expected: int) -> tuple[int, int]:
    _wait(lambda: _stored(engine, slug)[0] >= expected, f"{expected} scans stored")
    time.sleep(1)  # and not one more after a while
    return tuple(_stored(engine, slug))


def _max_scan_id(engine) -> int:
    with engine.connect() as connection:
        return connection.scalar(select(func.max(Scan.id))) or 0


def _link_ids(engine, slugs: list[str]) -> list[uuid.UUID]:
    with engine.connect() as connection:
        ids = dict(connection.execute(select(Link.slug, Link.id).where(Link.slug.in_(slugs))).all())
    return [ids[slug] for slug in slugs]


def _rollups_sent(log: Path) -> int:
    return log.read_text(errors="replace").count("analytics.rollup")
