"""Webhook use cases that workers and beat run (sync sessions): the sweeper."""

from __future__ import annotations

import uuid
from datetime import timedelta

import structlog
from sqlalchemy import func, or_, select, update
from sqlalchemy.orm import Session, sessionmaker

from app.kit.db import utcnow
from app.webhooks import metrics
from app.webhooks.models import DeliveryStatus, WebhookDelivery, WebhookEndpoint

log = structlog.get_logger(__name__)


def sweep(
    sessions: sessionmaker[Session], sweep_after: timedelta, limit: int = 5000
) -> dict[uuid.UUID, list[uuid.UUID]]:
    """Pending deliveries due more than `sweep_after` ago and held by no worker: their message was lost
    (the broker was down at commit, or a worker died holding it) or their wait was too long for a
    countdown. Each one's due time moves to now, so it is not swept again before another `sweep_after`;
    returns their ids by endpoint, for the caller to publish. Also refreshes the gauges of app/webhooks/metrics.py."""
    now = utcnow()
    stale = or_(WebhookDelivery.lease_until.is_(None), WebhookDelivery.lease_until < now)
    with sessions.begin() as session:
        found = list(
            session.execute(
                select(WebhookDelivery.endpoint_id, WebhookDelivery.id)
                .where(
                    WebhookDelivery.status == DeliveryStatus.PENDING,
                    WebhookDelivery.next_attempt_at < now - sweep_after,
                    stale,
                )
                .order_by(WebhookDelivery.next_attempt_at)
                .limit(limit)
            )
        )
        ids = [row.id for row in found]
        if ids:
            session.execute(update(WebhookDelivery).where(WebhookDelivery.id.in_(ids)).values(next_attempt_at=now))
        oldest_due = session.scalar(
            select(func.min(WebhookDelivery.next_attempt_at)).where(
                WebhookDelivery.status == DeliveryStatus.PENDING, WebhookDelivery.next_attempt_at <= now
            )
        )
        dead = session.scalar(select(func.count()).where(WebhookDelivery.status == DeliveryStatus.DEAD))
        disabled = session.scalar(select(func.count()).where(WebhookEndpoint.enabled.is_(False)))
    metrics.record_state(dead or 0, disabled or 0, (now - oldest_due).total_seconds() if oldest_due else 0.0)
    if ids:
        log.info("webhook_deliveries_swept", count=len(ids))
    by_endpoint: dict[uuid.UUID, list[uuid.UUID]] = {}
    for row in found:
        by_endpoint.setdefault(row.endpoint_id, []).append(row.id)
    return by_endpoint
