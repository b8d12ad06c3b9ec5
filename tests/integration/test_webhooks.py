"""Webhooks against real receivers: a receiver process on loopback, the gateway, the in-process worker
(renders, scans) and a `qrflow worker -Q webhooks` process, on SQLite and PostgreSQL. Every delivery is
verified with the `standardwebhooks` package, as a receiver would."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from cryptography.fernet import Fernet
from fastapi.testclient import TestClient
from pydantic import SecretStr
from standardwebhooks import Webhook

from app.gateway.main import create_app
from app.identity.models import Scope
from app.kit.redis_server import RedisServer, find_binary, free_port
from tests.conftest import Caller, _issue, wait_until_rendered

RECEIVER = Path(__file__).with_name("webhook_receiver.py")
SCHEDULE = "1,2,4,8,16,32"
IPHONE = {"user-agent": "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 "
          "(KHTML, like Gecko) Version/17.0 Mobile/15E148 Safari/604.1"}


class Receiver:
    def __init__(self, tmp: Path, port: int | None = None) -> None:
        self.port = port or free_port()
        self.log = tmp / f"received-{self.port}.jsonl"
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def start(self, status: int = 204, delay: float = 0.0) -> Receiver:
        self.process = subprocess.Popen(
            [sys.executable, str(RECEIVER), "--port", str(self.port), "--log", str(self.log),
             "--status", str(status), "--delay", str(delay)]
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                httpx.get(f"http://127.0.0.1:{self.port}/", timeout=0.5)
                return self
            except httpx.HTTPError:
                time.sleep(0.05)
        raise AssertionError("the receiver did not start")

    def stop(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait()
            self.process = None

    def received(self) -> list[dict]:
        if not self.log.exists():
            return []
        return [json.loads(line) for line in self.log.read_text().splitlines() if line.strip()]

    def wait_for(self, predicate, timeout: float = 30) -> list[dict]:  # noqa: ANN001
        deadline = time.monotonic() + timeout
        while True:
            got = self.received()
            if predicate(got):
                return got
            if time.monotonic() > deadline:
                raise AssertionError(f"receiver got {len(got)} requests: {[r['body'][:120] for r in got][:5]}")
            time.sleep(0.1)


def verified(request: dict, *secrets: str) -> dict:
    """The event, once each secret verifies the request's signature as a receiver would."""
    for secret in secrets:
        event = Webhook(secret).verify(request["body"], request["headers"])
    return event


def deliveries(client: TestClient, caller: Caller, endpoint_id: str, predicate, query: str = "") -> list[dict]:  # noqa: ANN001
    """The endpoint's deliveries once `predicate` holds for them: a receiver has a request before the worker
    has stored the attempt's outcome."""
    deadline = time.monotonic() + 15
    while True:
        items = client.get(f"/v1/webhooks/{endpoint_id}/deliveries{query}", headers=caller.headers).json()["items"]
        if predicate(items):
            return items
        if time.monotonic() > deadline:
            raise AssertionError(items)
        time.sleep(0.1)


def events_of(requests: list[dict], event_type: str) -> list[dict]:
    return [json.loads(r["body"]) for r in requests if json.loads(r["body"])["type"] == event_type]


@pytest.fixture(scope="module")
def hooks(backend, worker, tmp_path_factory) -> Iterator[TestClient]:
    """A gateway allowing loopback receivers, and a webhooks worker process, both on the backend."""
    settings = backend.settings.model_copy(
        update={"webhook_allow_private": True, "webhook_retry_schedule": SCHEDULE}
    )
    env = {
        **os.environ,
        "QRFLOW_DATABASE_URL": settings.database_url,
        "QRFLOW_DATA_DIR": str(settings.data_dir),
        "QRFLOW_REDIS_URL": settings.redis_url,
        "QRFLOW_WEBHOOK_ALLOW_PRIVATE": "true",
        "QRFLOW_WEBHOOK_RETRY_SCHEDULE": SCHEDULE,
        "QRFLOW_WEBHOOK_SWEEP_AFTER_SECONDS": "2",
        "QRFLOW_WORKER_NICE": "0",
        "QRFLOW_LOG_LEVEL": "INFO",
    }
    command = [sys.executable, "-m", "app.cli", "worker", "-Q", "webhooks", "--pool", "threads", "-c", "12"]
    log = tmp_path_factory.mktemp("webhooks-worker") / "worker.log"
    processes = [subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=log.open("wb"))]
    try:
        with TestClient(create_app(settings)) as client:
            client.webhooks_worker = (command, env)  # type: ignore[attr-defined]
            client.webhooks_workers = processes  # type: ignore[attr-defined]
            yield client
    finally:
        for process in processes:
            process.kill()
            process.wait()


@pytest.fixture(scope="module")
def admin(backend, alice) -> Caller:
    return _issue(backend.settings, alice.workspace, Scope.ADMIN)


@pytest.fixture
def receiver(tmp_path) -> Iterator[Receiver]:
    made = Receiver(tmp_path)
    yield made
    made.stop()


def subscribe(client: TestClient, admin: Caller, url: str, events: list[str], **more: object) -> dict:
    answer = client.post("/v1/webhooks", json={"url": url, "events": events, **more}, headers=admin.headers)
    assert answer.status_code == 201, answer.text
    return answer.json()


def test_managing_endpoints_needs_an_admin_key_and_stays_in_its_workspace(hooks, admin, alice, alice_reader, bob):
    created = subscribe(hooks, admin, "http://127.0.0.1:9/hook", ["qrcode.ready"], description="ci")
    assert created["secret"].startswith("whsec_")
    endpoint = f"/v1/webhooks/{created['id']}"
    shown = hooks.get(endpoint, headers=alice_reader.headers)
    assert shown.status_code == 200 and shown.json()["secret"] is None  # shown once
    listed = hooks.get("/v1/webhooks", headers=alice_reader.headers).json()["items"]
    assert any(e["id"] == created["id"] for e in listed)
    assert hooks.post("/v1/webhooks", json={"url": "http://127.0.0.1:9/", "events": ["*"]},
                      headers=alice.headers).status_code == 403
    assert hooks.patch(endpoint, json={"enabled": False}, headers=alice.headers).status_code == 403
    assert hooks.get(endpoint, headers=bob.headers).status_code == 404
    assert hooks.delete(endpoint, headers=_issue(hooks.app.state.settings, bob.workspace, Scope.ADMIN).headers
                        ).status_code == 404
    bad = hooks.post("/v1/webhooks", json={"url": "http://127.0.0.1:9/", "events": ["qrcode.exploded"]},
                     headers=admin.headers)
    assert bad.status_code == 422 and bad.json()["errors"][0]["field"] == "events"
    assert hooks.patch(endpoint, json={"events": ["*"]}, headers=admin.headers).json()["events"] == ["*"]
    assert hooks.delete(endpoint, headers=admin.headers).status_code == 204
    assert hooks.get(endpoint, headers=alice_reader.headers).status_code == 404


def test_a_code_s_life_arrives_signed_each_event_with_one_id(hooks, admin, receiver):
    receiver.start()
    endpoint = subscribe(hooks, admin, receiver.url, ["*"])
    created = hooks.post("/v1/qrcodes", json={"kind": "url", "data": {"url": "https://example.com/hooks"},
                                               "dynamic": True, "tags": ["hooks"]}, headers=admin.headers).json()
    wait_until_rendered(hooks, admin, created["id"])
    hooks.patch(f"/v1/qrcodes/{created['id']}", json={"title": "renamed"}, headers=admin.headers)
    hooks.delete(f"/v1/qrcodes/{created['id']}", headers=admin.headers)
    wanted = ["qrcode.created", "qrcode.ready", "qrcode.updated", "qrcode.deleted"]
    got = receiver.wait_for(lambda got: all(events_of(got, name) for name in wanted))
    for request in got:
        event = verified(request, endpoint["secret"])
        assert request["headers"]["webhook-id"] == event["id"]
    for name in wanted:
        (event,) = [e for e in events_of(got, name) if e["data"]["code_id"] == created["id"]]
        assert event["workspace_id"] and event["data"]["slug"] == created["slug"]
    assert events_of(got, "qrcode.updated")[0]["data"]["title"] == "renamed"
    listed = deliveries(hooks, admin, endpoint["id"], lambda items: len(items) == 4, "?status=delivered")
    assert {d["event_type"] for d in listed} == set(wanted)
    assert all(d["attempts"][0]["status_code"] == 204 for d in listed)
    metrics = hooks.get("/metrics").text
    assert 'qrflow_webhook_attempts_total{result="delivered"}' in metrics
    assert "qrflow_webhook_attempt_seconds_bucket" in metrics
    hooks.delete(f"/v1/webhooks/{endpoint['id']}", headers=admin.headers)


def test_after_a_rotation_both_secrets_sign_for_a_day(hooks, admin, receiver):
    receiver.start()
    endpoint = subscribe(hooks, admin, receiver.url, ["qrcode.ready"])
    rotated = hooks.post(f"/v1/webhooks/{endpoint['id']}/rotate-secret", headers=admin.headers).json()
    assert rotated["secret"] != endpoint["secret"] and rotated["previous_secret_until"]
    ping = hooks.post(f"/v1/webhooks/{endpoint['id']}/test", headers=admin.headers)
    assert ping.status_code == 202
    (request,) = receiver.wait_for(lambda got: len(got) == 1)
    assert len(request["headers"]["webhook-signature"].split(" ")) == 2
    event = verified(request, endpoint["secret"], rotated["secret"])
    assert event["type"] == "ping" and event["id"] == ping.json()["event_id"]
    hooks.delete(f"/v1/webhooks/{endpoint['id']}", headers=admin.headers)


def test_a_receiver_down_for_30_s_gets_every_event_once_it_is_back(hooks, admin, receiver):
    endpoint = subscribe(hooks, admin, receiver.url, ["qrcode.ready"])
    pings = {hooks.post(f"/v1/webhooks/{endpoint['id']}/test", headers=admin.headers).json()["event_id"]
             for _ in range(3)}
    time.sleep(30)  # the fault: nothing listens on the endpoint's port
    receiver.start()
    # Schedule 1,2,4,8,16,32 (±20%): the attempt after the outage comes within ~32 s.
    got = receiver.wait_for(lambda got: {r["headers"]["webhook-id"] for r in got} >= pings, timeout=60)
    assert {verified(r, endpoint["secret"])["id"] for r in got} == pings
    listed = deliveries(hooks, admin, endpoint["id"], lambda items: all(d["status"] == "delivered" for d in items))
    assert len(listed) == 3 and all(len(d["attempts"]) > 1 for d in listed)
    assert all(a["error"] for d in listed for a in d["attempts"][:-1])  # refused connections were recorded
    hooks.delete(f"/v1/webhooks/{endpoint['id']}", headers=admin.headers)


def test_an_endpoint_answering_410_is_disabled_and_says_why(hooks, admin, receiver):
    receiver.start(status=410)
    endpoint = subscribe(hooks, admin, receiver.url, ["*"])
    hooks.post(f"/v1/webhooks/{endpoint['id']}/test", headers=admin.headers)
    receiver.wait_for(lambda got: len(got) == 1)
    deadline = time.monotonic() + 10
    while (shown := hooks.get(f"/v1/webhooks/{endpoint['id']}", headers=admin.headers).json())["enabled"]:
        assert time.monotonic() < deadline, shown
        time.sleep(0.1)
    assert "410" in shown["disabled_reason"]
    (dead,) = hooks.get(f"/v1/webhooks/{endpoint['id']}/deliveries?status=dead", headers=admin.headers).json()["items"]
    assert dead["attempts"][0]["status_code"] == 410
    hooks.delete(f"/v1/webhooks/{endpoint['id']}", headers=admin.headers)


def test_1000_scans_are_1000_distinct_link_scanned_events(hooks, admin, receiver):
    receiver.start()
    code = hooks.post("/v1/qrcodes", json={"kind": "url", "data": {"url": "https://example.com/scanned"},
                                            "dynamic": True}, headers=admin.headers).json()
    endpoint = subscribe(hooks, admin, receiver.url, ["link.scanned"], code_ids=[code["id"]])
    for _ in range(1000):
        assert hooks.get(f"/r/{code['slug']}", headers=IPHONE, follow_redirects=False).status_code in (302, 307)
    got = receiver.wait_for(lambda got: len({r["headers"]["webhook-id"] for r in got}) >= 1000, timeout=120)
    time.sleep(2)  # anything more would be a duplicate, or an extra event
    got = receiver.received()
    events = {verified(r, endpoint["secret"])["id"]: json.loads(r["body"]) for r in got}
    assert len(events) == 1000
    assert all(e["type"] == "link.scanned" and e["data"]["code_id"] == code["id"] and "ip" not in e["data"]
               for e in events.values())
    hooks.delete(f"/v1/webhooks/{endpoint['id']}", headers=admin.headers)


def test_a_slow_endpoint_does_not_delay_another(hooks, admin, tmp_path):
    slow, fast = Receiver(tmp_path).start(delay=14), Receiver(tmp_path).start()
    try:
        slow_endpoint = subscribe(hooks, admin, slow.url, ["qrcode.ready"])
        fast_endpoint = subscribe(hooks, admin, fast.url, ["qrcode.ready"])
        for _ in range(20):
            hooks.post(f"/v1/webhooks/{slow_endpoint['id']}/test", headers=admin.headers)
        sent = {}
        for _ in range(5):
            answer = hooks.post(f"/v1/webhooks/{fast_endpoint['id']}/test", headers=admin.headers)
            sent[answer.json()["event_id"]] = time.time()
            time.sleep(0.5)
        got = fast.wait_for(lambda got: len(got) >= len(sent), timeout=30)
        for request in got:
            assert request["received_at"] - sent[request["headers"]["webhook-id"]] < 2, "a fast event waited"
    finally:
        slow.stop()
        fast.stop()
        for endpoint in hooks.get("/v1/webhooks", headers=admin.headers).json()["items"]:
            hooks.delete(f"/v1/webhooks/{endpoint['id']}", headers=admin.headers)


def test_refused_destinations_are_422_naming_url(backend, worker, admin):
    settings = backend.settings.model_copy(update={"webhook_allow_private": False})
    with TestClient(create_app(settings)) as client:
        for url in ("http://127.0.0.1:8080/", "http://169.254.169.254/latest", "http://10.0.0.5/", "http://[::1]/",
                    "ftp://example.com/"):
            answer = client.post("/v1/webhooks", json={"url": url, "events": ["*"]}, headers=admin.headers)
            assert answer.status_code == 422, url
            assert answer.json()["errors"][0]["field"] == "url", answer.json()
    production = backend.settings.model_copy(
        update={
            "environment": "production",
            "metrics_token": SecretStr("token"),
            "webhook_secret_key": SecretStr(Fernet.generate_key().decode()),
        }
    )
    with TestClient(create_app(production)) as client:
        answer = client.post(
            "/v1/webhooks", json={"url": "http://example.com/", "events": ["*"]}, headers=admin.headers
        )
        assert answer.status_code == 422 and "https" in answer.json()["message"]


def test_broker_down_when_a_code_is_created_its_events_arrive_once_it_is_back(hooks, admin, receiver, tmp_path):
    from app.kit.messaging import EventPublisher
    from tests.integration.test_faults import celery_on
    from workers.celery_app import celery_app

    receiver.start()
    endpoint = subscribe(hooks, admin, receiver.url, ["qrcode.created", "qrcode.ready"])
    gone = RedisServer(find_binary()[0], free_port(), tmp_path / "redis")  # never started: the broker is down
    state = hooks.app.state
    original, state.publisher = state.publisher, EventPublisher(celery_on(gone.url))
    try:
        code = hooks.post("/v1/qrcodes", json={"kind": "text", "data": {"text": "broker down"}}, headers=admin.headers)
        assert code.status_code == 202
    finally:
        state.publisher.close()
        state.publisher = original
    code_id = code.json()["id"]
    time.sleep(2.5)  # past the sweeper's QRFLOW_WEBHOOK_SWEEP_AFTER_SECONDS (2 s in these tests)

    def this_codes_events() -> list[tuple[str, str]]:
        # The workspace's other codes may become ready meanwhile (the republisher this test runs renders
        # what other tests left pending): only this code's events are this test's.
        bodies = [json.loads(r["body"]) for r in receiver.received()]
        return sorted((b["type"], b["data"]["code_id"]) for b in bodies if b["data"].get("code_id") == code_id)

    assert this_codes_events() == []
    # The broker is back: what beat sends (every 10 s and every minute), until both events arrived.
    deadline = time.monotonic() + 60
    while len(this_codes_events()) < 2:
        assert time.monotonic() < deadline, receiver.received()
        celery_app.send_task("webhooks.sweep_outbox")
        celery_app.send_task("qrcodes.republish_stale_renders")
        time.sleep(1)
    for delivery in receiver.received():
        verified(delivery, endpoint["secret"])
    assert this_codes_events() == [("qrcode.created", code_id), ("qrcode.ready", code_id)]  # each once
    hooks.delete(f"/v1/webhooks/{endpoint['id']}", headers=admin.headers)


def test_a_worker_killed_mid_delivery_loses_nothing(hooks, admin, receiver):
    from workers.celery_app import celery_app

    receiver.start(delay=4)
    endpoint = subscribe(hooks, admin, receiver.url, ["qrcode.ready"])
    event_id = hooks.post(f"/v1/webhooks/{endpoint['id']}/test", headers=admin.headers).json()["event_id"]
    command, env = hooks.webhooks_worker
    time.sleep(2)  # the attempt is in flight: the receiver holds it for 4 s
    running = hooks.webhooks_workers[-1]  # the module's worker process (a threads pool: one process)
    running.send_signal(signal.SIGKILL)
    running.wait()
    hooks.webhooks_workers.append(subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL))
    # The killed attempt's lease (30 s) runs out; then beat's sweeper publishes the delivery again.
    deadline = time.monotonic() + 90
    while deliveries(hooks, admin, endpoint["id"], lambda items: True)[0]["status"] != "delivered":
        assert time.monotonic() < deadline, "the delivery was never sent again"
        celery_app.send_task("webhooks.sweep_outbox")
        time.sleep(1)
    got = receiver.wait_for(lambda got: len(got) >= 2)
    assert {verified(r, endpoint["secret"])["id"] for r in got} == {event_id}  # duplicates share the id
    hooks.delete(f"/v1/webhooks/{endpoint['id']}", headers=admin.headers)


def test_a_batch_completes_once_with_its_counts(hooks, admin, receiver):
    receiver.start()
    endpoint = subscribe(hooks, admin, receiver.url, ["batch.completed"])
    items = [{"kind": "text", "data": {"text": f"batch item {n}"}} for n in range(5)]
    batch = hooks.post("/v1/batches", json={"items": items, "formats": ["png"]}, headers=admin.headers)
    assert batch.status_code == 202, batch.text
    (request,) = receiver.wait_for(lambda got: len(got) >= 1)
    time.sleep(2)  # and no second one
    assert len(receiver.received()) == 1
    event = verified(request, endpoint["secret"])
    assert event["type"] == "batch.completed" and event["data"]["batch_id"] == batch.json()["id"]
    assert (event["data"]["total"], event["data"]["ready"], event["data"]["failed"]) == (5, 5, 0)
    hooks.delete(f"/v1/webhooks/{endpoint['id']}", headers=admin.headers)


def test_a_link_reaching_max_scans_is_exhausted_once(hooks, admin, receiver):
    receiver.start()
    code = hooks.post("/v1/qrcodes", json={"kind": "url", "data": {"url": "https://example.com/capped"},
                                            "dynamic": True, "max_scans": 3}, headers=admin.headers).json()
    endpoint = subscribe(hooks, admin, receiver.url, ["link.exhausted"])
    browser = {"user-agent": "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) "
               "Chrome/124.0 Mobile Safari/537.36"}
    statuses = [hooks.get(f"/r/{code['slug']}", headers=browser, follow_redirects=False).status_code
                for _ in range(5)]
    assert statuses.count(302) == 3
    (request,) = receiver.wait_for(lambda got: len(got) >= 1)
    time.sleep(2)
    assert len(receiver.received()) == 1
    event = verified(request, endpoint["secret"])
    assert event["type"] == "link.exhausted"
    assert (event["data"]["code_id"], event["data"]["max_scans"], event["data"]["scans_total"]) == (code["id"], 3, 3)
    hooks.delete(f"/v1/webhooks/{endpoint['id']}", headers=admin.headers)


def test_deliveries_past_a_message_s_time_budget_go_back_unattempted_and_arrive_once(hooks, admin, receiver):
    # Each answer takes 6 s: a message carrying the three scans' deliveries sends two within its 10 s budget
    # and puts the third back, unclaimed, for another message; each is attempted once, as attempt 1.
    receiver.start(delay=6)
    code = hooks.post("/v1/qrcodes", json={"kind": "url", "data": {"url": "https://example.com/budget"},
                                            "dynamic": True}, headers=admin.headers).json()
    endpoint = subscribe(hooks, admin, receiver.url, ["link.scanned"], code_ids=[code["id"]])
    for _ in range(3):
        assert hooks.get(f"/r/{code['slug']}", headers=IPHONE, follow_redirects=False).status_code in (302, 307)
    got = receiver.wait_for(lambda got: len(got) >= 3, timeout=60)
    assert len({verified(r, endpoint["secret"])["id"] for r in got}) == 3
    listed = deliveries(hooks, admin, endpoint["id"], lambda items: len(items) == 3 and all(
        d["status"] == "delivered" for d in items))
    assert [[a["attempt"] for a in d["attempts"]] for d in listed] == [[1], [1], [1]]
    time.sleep(2)
    assert len(receiver.received()) == 3  # no duplicate
    hooks.delete(f"/v1/webhooks/{endpoint['id']}", headers=admin.headers)
