"""Tasks of the webhooks context: each deserialises its event and calls one service function."""

from __future__ import annotations

import uuid
from datetime import timedelta

import structlog

from app.webhooks import jobs, sending
from app.webhooks.delivery import LEASE, Deliverer, Policy
from app.webhooks.events import DeliveriesRequested
from app.webhooks.secrets import secret_box
from app.webhooks.slots import Slots
from workers.celery_app import celery_app
from workers.retries import retry_on_database_down
from workers.runtime import runtime

log = structlog.get_logger(__name__)

# Waits up to this long are a countdown on the message; longer ones are left to the sweeper, because
# Redis redelivers a message held unacknowledged past its visibility timeout (900 s, celeryconfig.py).
COUNTDOWN_AT_MOST = 300.0

_deliverer: Deliverer | None = None


def deliverer() -> Deliverer:
    """This process's: its threads share one HTTP client (a pool of kept-alive connections) and one Redis
    connection pool."""
    global _deliverer
    resources = runtime()
    if _deliverer is None or _deliverer.sessions is not resources.sessions:
        settings = resources.settings
        _deliverer = Deliverer(
            sessions=resources.sessions,
            box=secret_box(settings),
            client=sending.new_client(),
            slots=Slots(settings.redis_url, settings.webhook_endpoint_concurrency, LEASE.total_seconds()),
            policy=Policy.of(settings),
        )
    return _deliverer


def publish_deliveries(endpoint_id: uuid.UUID, delivery_ids: list, countdown: float | None = None) -> None:
    for message in DeliveriesRequested.for_endpoint(endpoint_id, delivery_ids):
        celery_app.send_task(
            DeliveriesRequested.task_name, kwargs={"event": message.to_message()}, countdown=countdown or None,
            ignore_result=True,
        )


@celery_app.task(name=DeliveriesRequested.task_name, **retry_on_database_down)
def deliveries_requested(event: dict) -> int:
    requested = DeliveriesRequested.model_validate(event)
    for again in deliverer().deliver(requested.endpoint_id, requested.delivery_ids):
        if again.countdown <= COUNTDOWN_AT_MOST:
            # Published before this message is acknowledged: a worker dying now leaves both, and the
            # duplicate finds the deliveries done or not yet due. If the publish fails, the sweeper has them.
            publish_deliveries(requested.endpoint_id, again.delivery_ids, countdown=again.countdown)
    return len(requested.delivery_ids)


@celery_app.task(name="webhooks.sweep_outbox", **retry_on_database_down)
def sweep_outbox() -> int:
    resources = runtime()
    swept = jobs.sweep(resources.sessions, timedelta(seconds=resources.settings.webhook_sweep_after_seconds))
    for endpoint_id, delivery_ids in swept.items():
        publish_deliveries(endpoint_id, delivery_ids)
    return sum(len(ids) for ids in swept.values())
