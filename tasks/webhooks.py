"""Tasks of the webhooks context: each deserialises its event and calls one service function."""

from __future__ import annotations

from datetime import timedelta

import structlog

from app.webhooks import jobs, sending
from app.webhooks.delivery import Deliverer, Policy
from app.webhooks.events import DeliveriesRequested, DeliveryRequested
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
    """This process's: its threads share one HTTP client and one Redis connection pool."""
    global _deliverer
    resources = runtime()
    if _deliverer is None or _deliverer.sessions is not resources.sessions:
        settings = resources.settings
        _deliverer = Deliverer(
            sessions=resources.sessions,
            box=secret_box(settings),
            client=sending.new_client(),
            slots=Slots(settings.redis_url, settings.webhook_endpoint_concurrency, sending.TOTAL_TIMEOUT + 15),
            policy=Policy.of(settings),
        )
    return _deliverer


def publish_deliveries(delivery_ids: list, countdown: float | None = None) -> None:
    for delivery_id in delivery_ids:
        message = DeliveryRequested(delivery_id=delivery_id)
        celery_app.send_task(
            DeliveryRequested.task_name, kwargs={"event": message.to_message()}, countdown=countdown, ignore_result=True
        )


@celery_app.task(name=DeliveriesRequested.task_name, **retry_on_database_down)
def deliveries_requested(event: dict) -> int:
    requested = DeliveriesRequested.model_validate(event)
    publish_deliveries(requested.delivery_ids)
    return len(requested.delivery_ids)


@celery_app.task(name=DeliveryRequested.task_name, **retry_on_database_down)
def deliver(event: dict) -> str:
    requested = DeliveryRequested.model_validate(event)
    outcome = deliverer().deliver(requested.delivery_id)
    if outcome.retry_in is not None and outcome.retry_in <= COUNTDOWN_AT_MOST:
        # Published before this message is acknowledged: a worker dying now leaves both, and the
        # duplicate finds the delivery done or not yet due. If the publish fails, the sweeper has it.
        publish_deliveries([requested.delivery_id], countdown=outcome.retry_in)
    return outcome.result


@celery_app.task(name="webhooks.sweep_outbox", **retry_on_database_down)
def sweep_outbox() -> int:
    resources = runtime()
    swept = jobs.sweep(resources.sessions, timedelta(seconds=resources.settings.webhook_sweep_after_seconds))
    publish_deliveries(swept)
    return len(swept)
