"""Reading and writing the webhooks tables for the gateway (async sessions)."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.kit.db import utcnow
from app.webhooks.models import DeliveryStatus, WebhookAttempt, WebhookDelivery, WebhookEndpoint, WebhookEvent


class WebhookRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def endpoint(self, workspace_id: uuid.UUID, endpoint_id: uuid.UUID) -> WebhookEndpoint | None:
        return await self.session.scalar(
            select(WebhookEndpoint).where(
                WebhookEndpoint.id == endpoint_id, WebhookEndpoint.workspace_id == workspace_id
            )
        )

    async def endpoints(self, workspace_id: uuid.UUID) -> list[WebhookEndpoint]:
        rows = await self.session.scalars(
            select(WebhookEndpoint)
            .where(WebhookEndpoint.workspace_id == workspace_id)
            .order_by(WebhookEndpoint.created_at, WebhookEndpoint.id)
        )
        return list(rows)

    async def deliveries(
        self, endpoint_id: uuid.UUID, status: DeliveryStatus | None, limit: int
    ) -> list[tuple[WebhookDelivery, str, list[WebhookAttempt]]]:
        query = (
            select(WebhookDelivery, WebhookEvent.type)
            .join(WebhookEvent, WebhookEvent.id == WebhookDelivery.event_id)
            .where(WebhookDelivery.endpoint_id == endpoint_id)
            .order_by(WebhookDelivery.created_at.desc(), WebhookDelivery.id.desc())
            .limit(limit)
        )
        if status is not None:
            query = query.where(WebhookDelivery.status == status)
        rows = (await self.session.execute(query)).all()
        attempts: dict[uuid.UUID, list[WebhookAttempt]] = {delivery.id: [] for delivery, _ in rows}
        if attempts:
            found = await self.session.scalars(
                select(WebhookAttempt)
                .where(WebhookAttempt.delivery_id.in_(list(attempts)))
                .order_by(WebhookAttempt.delivery_id, WebhookAttempt.number)
            )
            for attempt in found:
                attempts[attempt.delivery_id].append(attempt)
        return [(delivery, event_type, attempts[delivery.id]) for delivery, event_type in rows]

    async def delivery(self, endpoint_id: uuid.UUID, delivery_id: uuid.UUID) -> WebhookDelivery | None:
        return await self.session.scalar(
            select(WebhookDelivery).where(
                WebhookDelivery.id == delivery_id, WebhookDelivery.endpoint_id == endpoint_id
            )
        )

    async def restart_dead(self, endpoint_id: uuid.UUID, since: datetime | None) -> list[uuid.UUID]:
        """Dead deliveries of the endpoint (created since `since`) made pending again, due now."""
        query = select(WebhookDelivery.id).where(
            WebhookDelivery.endpoint_id == endpoint_id, WebhookDelivery.status == DeliveryStatus.DEAD
        )
        if since is not None:
            query = query.where(WebhookDelivery.created_at >= since)
        ids = list(await self.session.scalars(query.limit(10_000)))
        if ids:
            await self.session.execute(
                update(WebhookDelivery)
                .where(WebhookDelivery.id.in_(ids))
                .values(status=DeliveryStatus.PENDING, failures=0, next_attempt_at=utcnow(), lease_until=None)
            )
        return ids
