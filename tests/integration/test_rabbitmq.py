"""What is RabbitMQ's own when it is the broker: quorum queues with a delivery limit and a dead-letter queue,
the republishers' inventory (a count, and what workers hold), the queue depths /metrics reports. Each test
runs on a virtual host of its own; the broker-dependent flows themselves (rendering, batches, scans through
the spool, a killed worker, a stopped broker) run on both brokers in their own files (ON_BOTH_BROKERS)."""

from __future__ import annotations

import json
import subprocess
import time
import uuid
from collections.abc import Iterator

import pytest
from kombu import Connection

from app.kit.broker_inventory import RabbitMQInventory, inventory_of
from app.kit.messaging import EventPublisher
from app.kit.redis_server import free_port
from app.kit.telemetry import RabbitMQQueueDepthCollector
from app.qrcodes.events import RenderRequested
from celeryconfig import DEAD_LETTERS, RABBITMQ_DELIVERY_LIMIT
from tests.conftest import wait_until_rendered
from tests.decoding import decode_png
from tests.integration.batch_helpers import csv_body, mixed_rows, post_batch, read_archive, wait_until_finished
from tests.integration.rabbitmq import Vhost
from tests.integration.test_faults import gateway_publishing_to
from tests.integration.test_qrcodes_api import created
from tests.integration.worker_processes import Processes, celery_on


@pytest.fixture
def vhost() -> Iterator[Vhost]:
    vhost = Vhost()
    yield vhost
    vhost.delete()


def _publish_renders(celery, count: int) -> list[uuid.UUID]:
    publisher = EventPublisher(celery)
    ids = [uuid.uuid4() for _ in range(count)]
    assert all(publisher.publish(RenderRequested(code_id=code_id)) for code_id in ids)
    return ids


@pytest.mark.e2e
@pytest.mark.parametrize("broker", ["rabbitmq"])
def test_a_code_a_batch_and_a_countdown_render_through_rabbitmq(
    gateway, alice, backend, redis_url, tmp_path, rabbitmq_vhost
):
    """The gateway publishes to RabbitMQ and `qrflow worker` processes render from it: a code, a batch's two
    chunks (read back from the archive), and a render published with a countdown, which Celery's native
    delayed delivery holds in RabbitMQ (not in the worker) until it is due."""
    platform = Processes(backend, redis_url, db=9, tmp_path=tmp_path, rabbitmq=rabbitmq_vhost)
    try:
        platform.worker("qr,qr_batch", concurrency=1)
        # Countdowns are published by tasks (retries, webhook back-off), so after a worker set up the delay
        # exchanges they go through; the test's own waits for that too.
        platform.wait_for_log("ready.")
        with gateway_publishing_to(gateway, platform.celery):
            code = created(gateway, alice, {"kind": "text", "data": {"text": "through RabbitMQ"}})
            response = post_batch(gateway, alice, csv_body(*mixed_rows(120, "rabbitmq")))  # two chunks
        assert response.status_code == 202, response.text
        with gateway_publishing_to(gateway, celery_on(f"amqp://guest:guest@127.0.0.1:{free_port()}//", redis_url)):
            later = created(gateway, alice, {"kind": "text", "data": {"text": "published with a countdown"}})
        platform.celery.send_task(
            RenderRequested.task_name,
            kwargs={"event": RenderRequested(code_id=later["id"]).to_message()},
            countdown=3,
            ignore_result=True,
        )

        assert wait_until_rendered(gateway, alice, code["id"], timeout=120)["status"] == "ready"
        batch = wait_until_finished(gateway, alice, response.json()["id"], timeout=240)
        assert (batch["status"], batch["done"], batch["failed"]) == ("done", 120, 0)
        archive, manifest = read_archive(gateway, alice, batch)
        for line in manifest[::20]:
            assert decode_png(archive.read(line["png_file"])) == [line["content"]]
        assert wait_until_rendered(gateway, alice, later["id"], timeout=120)["status"] == "ready"
    finally:
        platform.stop()
    # Celery bound every queue to its delay exchanges (workers/consumer.py declared them all first).
    assert "Failed to bind queue" not in platform.logs()
    assert "Native delayed delivery will not be available" not in platform.logs()


def test_task_queues_are_quorum_queues_with_a_delivery_limit_and_a_dead_letter_queue(vhost, redis_url):
    from workers.consumer import DEAD_LETTER_QUEUE

    celery = celery_on(vhost.url, redis_url)
    _publish_renders(celery, 1)  # a publish declares its queue, with the queue's arguments
    with celery.connection_for_write() as connection:
        DEAD_LETTER_QUEUE.bind(connection.default_channel).declare()  # as every worker does when it starts
    listed = subprocess.run(
        ["rabbitmqctl", "-q", "--formatter", "json", "list_queues", "-p", vhost.name, "name", "type", "arguments"],
        check=True,
        capture_output=True,
        text=True,
        timeout=120,
    ).stdout
    queues = {queue["name"]: queue for queue in json.loads(listed)}
    assert {queues[name]["type"] for name in ("qr", DEAD_LETTERS)} == {"quorum"}
    assert {name: value for name, _type, value in queues["qr"]["arguments"]} == {
        "x-queue-type": "quorum",
        "x-delivery-limit": RABBITMQ_DELIVERY_LIMIT,
        "x-dead-letter-exchange": DEAD_LETTERS,
    }

    # A message that keeps coming back (each time a worker dies holding it) ends in dead_letters, kept.
    with Connection(vhost.url) as connection:
        queue = celery.amqp.queues["qr"].bind(connection.default_channel)
        for _ in range(RABBITMQ_DELIVERY_LIMIT + 1):
            message = None
            while message is None:
                message = queue.get(no_ack=False)
            message.requeue()
        assert queue.get(no_ack=False) is None
        # The quorum queue hands it to the dead-letter exchange on its own time: wait for it to arrive.
        dead = DEAD_LETTER_QUEUE.bind(connection.default_channel)
        deadline = time.monotonic() + 30
        while (kept := dead.queue_declare(passive=True).message_count) < 1 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert kept == 1


def test_the_inventory_counts_what_waits_and_lists_what_workers_hold(vhost, redis_url):
    celery = celery_on(vhost.url, redis_url)
    inventory = inventory_of(celery)
    assert isinstance(inventory, RabbitMQInventory) and not inventory.lists_messages
    assert inventory.waiting("qr") == 0  # never declared: nothing waits
    _publish_renders(celery, 3)
    assert inventory.waiting("qr") == 3
    assert inventory.waiting("qr_batch") == 0
    assert list(inventory.held("qr")) == []  # no worker: none holds anything


def test_queue_depths_come_from_rabbitmq_and_are_absent_when_it_is_gone(vhost, redis_url):
    _publish_renders(celery_on(vhost.url, redis_url), 2)
    [depth, up] = RabbitMQQueueDepthCollector(vhost.url, queues=["qr", "scans"]).collect()
    assert {sample.labels["queue"]: sample.value for sample in depth.samples} == {"qr": 2, "scans": 0}
    assert up.samples[0].value == 1

    gone = RabbitMQQueueDepthCollector(f"amqp://guest:guest@127.0.0.1:{free_port()}//", queues=["qr"])
    assert [family.name for family in gone.collect()] == ["qrflow_queue_depth_up"]
    assert gone.collect()[0].samples[0].value == 0


def test_readiness_checks_rabbitmq_as_the_broker_and_redis_besides(backend, vhost):
    from fastapi.testclient import TestClient

    from app.gateway.main import create_app

    for broker_url, broker in ((vhost.url, "ok"), (f"amqp://guest:guest@127.0.0.1:{free_port()}//", "unavailable")):
        settings = backend.settings.model_copy(update={"broker_url": broker_url})
        with TestClient(create_app(settings)) as client:
            response = client.get("/readyz")
        assert response.json()["broker"].startswith(broker)
        assert response.json()["redis"] == "ok"
        assert response.status_code == (200 if broker == "ok" else 503)
