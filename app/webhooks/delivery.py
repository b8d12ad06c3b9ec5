"""Delivering, as the webhooks worker runs it: one attempt per message, never a sleep.

A message for a delivery takes the endpoint's concurrency slot (Redis, app/webhooks/slots.py), then
claims the delivery's row (a conditional update: pending, due, and no live lease), so duplicates of a
message (the sweeper, a redelivery) do nothing while one attempt runs or after it succeeded. The attempt
and its outcome are stored in one transaction; a failure sets the next attempt's time from the retry
schedule, and the caller publishes it with a countdown (short waits) or leaves it to the sweeper (long
ones: a Redis broker redelivers a message held unacknowledged past its visibility timeout).
"""

from __future__ import annotations

import random
import uuid
from dataclasses import dataclass
from datetime import timedelta

import httpx
import structlog
from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session, sessionmaker

from app.kit.db import utcnow
from app.kit.settings import Settings
from app.webhooks import metrics, sending
from app.webhooks.events import Envelope
from app.webhooks.models import DeliveryStatus, WebhookAttempt, WebhookDelivery, WebhookEndpoint, WebhookEvent
from app.webhooks.secrets import SecretBox, sign
from app.webhooks.slots import Slots

log = structlog.get_logger(__name__)

LEASE = timedelta(seconds=sending.TOTAL_TIMEOUT + 15)
JITTER = 0.2


@dataclass(frozen=True)
class Policy:
    schedule: tuple[float, ...]
    production: bool
    allow_private: bool
    disable_after: timedelta

    @classmethod
    def of(cls, settings: Settings) -> Policy:
        return cls(
            schedule=retry_schedule(settings.webhook_retry_schedule),
            production=settings.environment == "production",
            allow_private=settings.webhook_allow_private,
            disable_after=timedelta(seconds=settings.webhook_disable_after_seconds),
        )


def retry_schedule(text: str) -> tuple[float, ...]:
    return tuple(float(step) for step in text.split(",") if step.strip())


@dataclass(frozen=True)
class Outcome:
    result: str  # delivered, retrying, dead, disabled, busy, skipped
    retry_in: float | None = None  # seconds until the next attempt, if there is one


@dataclass
class Deliverer:
    sessions: sessionmaker[Session]
    box: SecretBox
    client: httpx.Client
    slots: Slots
    policy: Policy

    def deliver(self, delivery_id: uuid.UUID) -> Outcome:
        with self.sessions() as session:
            found = session.execute(
                select(WebhookDelivery.endpoint_id, WebhookDelivery.status).where(WebhookDelivery.id == delivery_id)
            ).first()
        if found is None or found.status != DeliveryStatus.PENDING:
            return Outcome("skipped")
        token = self.slots.take(found.endpoint_id)
        if token is None:
            # The endpoint has its share of threads already: this message waits its turn without one.
            return Outcome("busy", retry_in=1 + random.random())
        try:
            return self._attempt(delivery_id)
        finally:
            self.slots.give_back(found.endpoint_id, token)

    def _attempt(self, delivery_id: uuid.UUID) -> Outcome:
        now = utcnow()
        with self.sessions.begin() as session:
            claimed = session.execute(
                update(WebhookDelivery)
                .where(
                    WebhookDelivery.id == delivery_id,
                    WebhookDelivery.status == DeliveryStatus.PENDING,
                    WebhookDelivery.next_attempt_at <= now + timedelta(seconds=1),
                    or_(WebhookDelivery.lease_until.is_(None), WebhookDelivery.lease_until < now),
                )
                .values(lease_until=now + LEASE, attempts=WebhookDelivery.attempts + 1)
            ).rowcount
            if not claimed:
                return Outcome("skipped")
            delivery = session.get(WebhookDelivery, delivery_id)
            endpoint = session.get(WebhookEndpoint, delivery.endpoint_id)
            event = session.get(WebhookEvent, delivery.event_id)
            number = delivery.attempts
            if not endpoint.enabled:
                delivery.status, delivery.lease_until = DeliveryStatus.DEAD, None
                delivery.last_error = f"endpoint disabled: {endpoint.disabled_reason or 'by its owner'}"
                metrics.count_delivery("dead")
                return Outcome("dead")
            url = endpoint.url
            secrets = [self.box.open(endpoint.secret)]
            if endpoint.previous_secret and endpoint.previous_secret_until and endpoint.previous_secret_until > now:
                secrets.append(self.box.open(endpoint.previous_secret))
            body = envelope_body(event)
            event_id, event_created = str(event.id), event.created_at
        timestamp = int(utcnow().timestamp())
        headers = {
            "content-type": "application/json",
            "user-agent": "qrflow-webhooks/1",
            "webhook-id": event_id,
            "webhook-timestamp": str(timestamp),
            "webhook-signature": " ".join(sign(secret, event_id, timestamp, body) for secret in secrets),
        }
        response = sending.post(
            self.client, url, body, headers, production=self.policy.production, allow_private=self.policy.allow_private
        )
        outcome = self._record(delivery_id, number, response)
        lag = (utcnow() - event_created).total_seconds() if outcome.result == "delivered" else None
        metrics.count_delivery(outcome.result, response.duration_ms / 1000, lag)
        log.info(
            "webhook_attempt", delivery_id=str(delivery_id), event_id=event_id, attempt=number,
            status_code=response.status_code, error=response.error, result=outcome.result,
            duration_ms=response.duration_ms,
        )
        return outcome

    def _record(self, delivery_id: uuid.UUID, number: int, response: sending.Response) -> Outcome:
        now = utcnow()
        with self.sessions.begin() as session:
            session.add(WebhookAttempt(
                delivery_id=delivery_id, number=number, attempted_at=now, status_code=response.status_code,
                duration_ms=response.duration_ms, response=response.body, error=response.error,
            ))
            delivery = session.get(WebhookDelivery, delivery_id)
            endpoint = session.get(WebhookEndpoint, delivery.endpoint_id)
            delivery.lease_until = None
            code = response.status_code
            if code is not None and 200 <= code < 300:
                delivery.status, delivery.delivered_at, delivery.last_error = DeliveryStatus.DELIVERED, now, None
                endpoint.failing_since = None
                return Outcome("delivered")
            delivery.last_error = response.error or f"answered {code}"
            if code == 410:
                delivery.status = DeliveryStatus.DEAD
                _disable(endpoint, f"the endpoint answered 410 Gone at {now.isoformat()}")
                return Outcome("disabled")
            endpoint.failing_since = endpoint.failing_since or now
            if now - endpoint.failing_since >= self.policy.disable_after:
                _disable(endpoint, f"every attempt failed since {endpoint.failing_since.isoformat()}")
            delivery.failures += 1
            if delivery.failures > len(self.policy.schedule) or not endpoint.enabled:
                delivery.status = DeliveryStatus.DEAD
                return Outcome("dead")
            wait = self.policy.schedule[delivery.failures - 1] * random.uniform(1 - JITTER, 1 + JITTER)
            delivery.next_attempt_at = now + timedelta(seconds=wait)
            return Outcome("retrying", retry_in=wait)


def _disable(endpoint: WebhookEndpoint, reason: str) -> None:
    if endpoint.enabled:
        endpoint.enabled, endpoint.disabled_reason = False, reason
        log.warning("webhook_endpoint_disabled", endpoint_id=str(endpoint.id), reason=reason)


def envelope_body(event: WebhookEvent) -> bytes:
    return Envelope(
        id=event.id, type=event.type, created_at=event.created_at, workspace_id=event.workspace_id, data=event.data
    ).model_dump_json().encode()
