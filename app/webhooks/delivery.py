"""Delivering, as the webhooks worker runs it: a message carries up to 100 deliveries to one endpoint,
sent one after another on one of the endpoint's concurrency slots; never a sleep.

The message takes the endpoint's slot (Redis, app/webhooks/slots.py), then claims its deliveries' rows in
one conditional update (pending, due, and no live lease), so duplicates of a message (the sweeper, a
redelivery) do nothing for deliveries an attempt holds or that succeeded. No attempt starts more than
BUDGET seconds after the claim: the rest are released and published again, so the lease covers the last
attempt. The attempts and their outcomes are stored in one transaction; a failure sets the next attempt's
time from the retry schedule, and the caller publishes it with a countdown (short waits) or leaves it to
the sweeper (long ones: a Redis broker redelivers a message held unacknowledged past its visibility
timeout). Two write transactions per message, not per delivery: SQLite has one writer.
"""

from __future__ import annotations

import random
import time
import uuid
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta

import httpx
import structlog
from sqlalchemy import insert, or_, select, update
from sqlalchemy.orm import Session, sessionmaker

from app.kit.db import utcnow
from app.kit.settings import Settings
from app.webhooks import metrics, sending
from app.webhooks.events import Envelope
from app.webhooks.models import DeliveryStatus, WebhookAttempt, WebhookDelivery, WebhookEndpoint, WebhookEvent
from app.webhooks.secrets import SecretBox, sign
from app.webhooks.slots import Slots

log = structlog.get_logger(__name__)

BUDGET = 10.0
LEASE = timedelta(seconds=BUDGET + sending.TOTAL_TIMEOUT + 15)
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
class Again:
    """Deliveries to publish again, after `countdown` seconds."""

    countdown: float
    delivery_ids: list[uuid.UUID]


@dataclass(frozen=True)
class _Claimed:
    delivery_id: uuid.UUID
    number: int
    event_id: str
    created_at: datetime
    body: bytes


@dataclass(frozen=True)
class _Batch:
    url: str
    secrets: list[str]
    claimed: list[_Claimed]


@dataclass
class Deliverer:
    sessions: sessionmaker[Session]
    box: SecretBox
    client: httpx.Client
    slots: Slots
    policy: Policy

    def deliver(self, endpoint_id: uuid.UUID, delivery_ids: list[uuid.UUID]) -> list[Again]:
        token = self.slots.take(endpoint_id)
        if token is None:
            # The endpoint has its share of threads already: this message waits its turn without one.
            return [Again(1 + random.random(), delivery_ids)]
        try:
            return self._send(endpoint_id, delivery_ids)
        finally:
            self.slots.give_back(endpoint_id, token)

    def _send(self, endpoint_id: uuid.UUID, delivery_ids: list[uuid.UUID]) -> list[Again]:
        started = time.monotonic()
        batch = self._claim(endpoint_id, delivery_ids)
        if batch is None or not batch.claimed:
            return []
        target: sending.Target | None = None
        try:  # checked and resolved once per message: its attempts start within BUDGET seconds
            target = sending.Target.of(
                batch.url, production=self.policy.production, allow_private=self.policy.allow_private
            )
        except Exception as exc:  # Refused: the URL or what it resolves to is not allowed now
            refusal = sending.refused(getattr(exc, "message", str(exc)))
        sent: list[tuple[_Claimed, sending.Response]] = []
        for item in batch.claimed:
            if sent and (time.monotonic() - started > BUDGET or sent[-1][1].status_code == 410):
                break
            timestamp = int(time.time())
            headers = {
                "content-type": "application/json",
                "user-agent": "qrflow-webhooks/1",
                "webhook-id": item.event_id,
                "webhook-timestamp": str(timestamp),
                "webhook-signature": " ".join(sign(s, item.event_id, timestamp, item.body) for s in batch.secrets),
            }
            response = refusal if target is None else sending.post(self.client, target, item.body, headers)
            sent.append((item, response))
        unsent = [item.delivery_id for item in batch.claimed[len(sent):]]
        again = self._record(endpoint_id, sent, unsent)
        return again + ([Again(0, unsent)] if unsent else [])

    def _claim(self, endpoint_id: uuid.UUID, delivery_ids: list[uuid.UUID]) -> _Batch | None:
        now = utcnow()
        with self.sessions.begin() as session:
            rows = session.execute(
                update(WebhookDelivery)
                .where(
                    WebhookDelivery.id.in_(delivery_ids),
                    WebhookDelivery.endpoint_id == endpoint_id,
                    WebhookDelivery.status == DeliveryStatus.PENDING,
                    WebhookDelivery.next_attempt_at <= now + timedelta(seconds=1),
                    or_(WebhookDelivery.lease_until.is_(None), WebhookDelivery.lease_until < now),
                )
                .values(lease_until=now + LEASE, attempts=WebhookDelivery.attempts + 1)
                .returning(WebhookDelivery.id, WebhookDelivery.event_id, WebhookDelivery.attempts)
                .execution_options(synchronize_session=False)
            ).all()
            if not rows:
                return None
            endpoint = session.get(WebhookEndpoint, endpoint_id)
            if not endpoint.enabled:
                reason = f"endpoint disabled: {endpoint.disabled_reason or 'by its owner'}"
                session.execute(
                    update(WebhookDelivery)
                    .where(WebhookDelivery.id.in_([row.id for row in rows]))
                    .values(status=DeliveryStatus.DEAD, lease_until=None, last_error=reason)
                    .execution_options(synchronize_session=False)
                )
                metrics.count_deliveries([("dead", None, None)] * len(rows))
                return None
            secrets = [self.box.open(endpoint.secret)]
            if endpoint.previous_secret and endpoint.previous_secret_until and endpoint.previous_secret_until > now:
                secrets.append(self.box.open(endpoint.previous_secret))
            events = {
                event.id: event
                for event in session.execute(
                    select(WebhookEvent.id, WebhookEvent.type, WebhookEvent.created_at, WebhookEvent.workspace_id,
                           WebhookEvent.data).where(WebhookEvent.id.in_({row.event_id for row in rows}))
                )
            }
            order = {delivery_id: index for index, delivery_id in enumerate(delivery_ids)}
            claimed = [
                _Claimed(row.id, row.attempts, str(row.event_id), events[row.event_id].created_at,
                         envelope_body(events[row.event_id]))
                for row in sorted(rows, key=lambda row: order.get(row.id, 0))
            ]
            return _Batch(endpoint.url, secrets, claimed)

    def _record(
        self, endpoint_id: uuid.UUID, sent: list[tuple[_Claimed, sending.Response]], unsent: list[uuid.UUID]
    ) -> list[Again]:
        now = utcnow()
        counted: list[tuple[str, float | None, float | None]] = []
        waits: dict[float, list[uuid.UUID]] = defaultdict(list)
        jitter = random.uniform(1 - JITTER, 1 + JITTER)  # one draw per message: its retries stay together
        with self.sessions.begin() as session:
            session.execute(insert(WebhookAttempt.__table__), [
                {"delivery_id": item.delivery_id, "number": item.number, "attempted_at": now,
                 "status_code": response.status_code, "duration_ms": response.duration_ms,
                 "response": response.body, "error": response.error}
                for item, response in sent
            ])
            if unsent:  # never attempted: as they were before the claim
                session.execute(
                    update(WebhookDelivery).where(WebhookDelivery.id.in_(unsent))
                    .values(lease_until=None, attempts=WebhookDelivery.attempts - 1)
                    .execution_options(synchronize_session=False)
                )
            delivered = [item.delivery_id for item, response in sent if _ok(response)]
            if delivered:
                session.execute(
                    update(WebhookDelivery).where(WebhookDelivery.id.in_(delivered))
                    .values(status=DeliveryStatus.DELIVERED, delivered_at=now, last_error=None, lease_until=None)
                    .execution_options(synchronize_session=False)
                )
            failed_ids = [item.delivery_id for item, response in sent if not _ok(response)]
            failed = {
                delivery.id: delivery
                for delivery in (
                    session.scalars(select(WebhookDelivery).where(WebhookDelivery.id.in_(failed_ids)))
                    if failed_ids else ()
                )
            }
            endpoint = session.get(WebhookEndpoint, endpoint_id)
            for item, response in sent:
                seconds = response.duration_ms / 1000
                if _ok(response):
                    endpoint.failing_since = None
                    counted.append(("delivered", seconds, (now - item.created_at).total_seconds()))
                    continue
                result, wait = self._failed(endpoint, failed[item.delivery_id], response, now, jitter)
                counted.append((result, seconds, None))
                if wait is not None:
                    waits[wait].append(item.delivery_id)
        metrics.count_deliveries(counted)
        for (item, response), (result, _, _) in zip(sent, counted, strict=True):
            log.info(
                "webhook_attempt", delivery_id=str(item.delivery_id), event_id=item.event_id, attempt=item.number,
                status_code=response.status_code, error=response.error, result=result,
                duration_ms=response.duration_ms,
            )
        return [Again(wait, ids) for wait, ids in waits.items()]

    def _failed(
        self,
        endpoint: WebhookEndpoint,
        delivery: WebhookDelivery,
        response: sending.Response,
        now: datetime,
        jitter: float,
    ) -> tuple[str, float | None]:
        """The failed attempt's result, and the wait before the next one if there is one."""
        code = response.status_code
        delivery.lease_until = None
        delivery.last_error = response.error or f"answered {code}"
        if code == 410:
            delivery.status = DeliveryStatus.DEAD
            _disable(endpoint, f"the endpoint answered 410 Gone at {now.isoformat()}")
            return "disabled", None
        endpoint.failing_since = endpoint.failing_since or now
        if now - endpoint.failing_since >= self.policy.disable_after:
            _disable(endpoint, f"every attempt failed since {endpoint.failing_since.isoformat()}")
        delivery.failures += 1
        if delivery.failures > len(self.policy.schedule) or not endpoint.enabled:
            delivery.status = DeliveryStatus.DEAD
            return "dead", None
        wait = self.policy.schedule[delivery.failures - 1] * jitter
        delivery.next_attempt_at = now + timedelta(seconds=wait)
        return "retrying", wait


def _ok(response: sending.Response) -> bool:
    return response.status_code is not None and 200 <= response.status_code < 300


def _disable(endpoint: WebhookEndpoint, reason: str) -> None:
    if endpoint.enabled:
        endpoint.enabled, endpoint.disabled_reason = False, reason
        log.warning("webhook_endpoint_disabled", endpoint_id=str(endpoint.id), reason=reason)


def envelope_body(event) -> bytes:  # noqa: ANN001 - a WebhookEvent or a row of its columns
    return Envelope(
        id=event.id, type=event.type, created_at=event.created_at, workspace_id=event.workspace_id, data=event.data
    ).model_dump_json().encode()
