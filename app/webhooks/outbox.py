"""Recording events in the outbox, inside the caller's transaction.

`Outbox(session)` is made per transaction: `record` adds the event and one delivery per subscribed
endpoint of the workspace, and remembers the deliveries; once the caller has committed, it publishes
DeliveriesRequested for them, one message per endpoint and 100 deliveries (and a publish that fails is no
loss: the sweeper finds them).
A workspace with no endpoint subscribed to a type gets no row at all: events nobody asked for are not
stored. The gateway uses AsyncOutbox, workers Outbox; the rules (`subscribers`) are the same.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field

from sqlalchemy import event, insert, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

from app.kit.db import new_id, utcnow
from app.kit.messaging import EventPublisher, platform_celery
from app.webhooks.events import DeliveriesRequested, EventData
from app.webhooks.models import WebhookDelivery, WebhookEndpoint, WebhookEvent


@dataclass(frozen=True)
class Subscription:
    endpoint_id: uuid.UUID
    workspace_id: uuid.UUID
    events: frozenset[str]
    code_ids: frozenset[str] | None
    tags: frozenset[str] | None

    def wants(self, event_type: str, code_id: uuid.UUID | None, tags: Iterable[str]) -> bool:
        if "*" not in self.events and event_type not in self.events:
            return False
        if code_id is None:  # events not about one code (batch.completed) pass the code filters
            return True
        if self.code_ids is not None and str(code_id) not in self.code_ids:
            return False
        return self.tags is None or not self.tags.isdisjoint(tags)


_ENABLED = select(
    WebhookEndpoint.id, WebhookEndpoint.workspace_id, WebhookEndpoint.events,
    WebhookEndpoint.code_ids, WebhookEndpoint.tags,
).where(WebhookEndpoint.enabled.is_(True))


def _subscription(row) -> Subscription:  # noqa: ANN001 - a result row
    return Subscription(
        row.id,
        row.workspace_id,
        frozenset(row.events),
        None if row.code_ids is None else frozenset(row.code_ids),
        None if row.tags is None else frozenset(row.tags),
    )


@dataclass
class _Recorder:
    subscriptions: list[Subscription]
    delivery_ids: dict[uuid.UUID, list[uuid.UUID]] = field(default_factory=dict)  # by endpoint
    events: list[dict] = field(default_factory=list)
    deliveries: list[dict] = field(default_factory=list)

    def wanted(self, workspace_id: uuid.UUID, event_type: str) -> bool:
        return any(s.workspace_id == workspace_id and (event_type in s.events or "*" in s.events)
                   for s in self.subscriptions)

    def add(
        self,
        workspace_id: uuid.UUID,
        data: EventData,
        *,
        code_id: uuid.UUID | None = None,
        tags: Iterable[str] = (),
        event_id: uuid.UUID | None = None,
        only_endpoint: uuid.UUID | None = None,
    ) -> uuid.UUID | None:
        tags = tuple(tags)
        endpoints = [
            s.endpoint_id for s in self.subscriptions
            if s.workspace_id == workspace_id and (only_endpoint is None or s.endpoint_id == only_endpoint)
            and (only_endpoint is not None or s.wants(data.type, code_id, tags))
        ]
        if not endpoints:
            return None
        now = utcnow()
        event_id = event_id or new_id()
        self.events.append({
            "id": event_id, "workspace_id": workspace_id, "type": data.type,
            "data": data.model_dump(mode="json"), "created_at": now,
        })
        for endpoint_id in endpoints:
            delivery_id = new_id()
            self.delivery_ids.setdefault(endpoint_id, []).append(delivery_id)
            self.deliveries.append({
                "id": delivery_id, "endpoint_id": endpoint_id, "event_id": event_id, "status": "pending",
                "attempts": 0, "failures": 0, "next_attempt_at": now, "created_at": now,
            })
        return event_id

    def statements(self) -> list[tuple]:
        """The pending inserts, taken: Core executemany, not ORM objects (1,000 scans a batch)."""
        pending = []
        if self.events:
            pending.append((insert(WebhookEvent.__table__), self.events))
            pending.append((insert(WebhookDelivery.__table__), self.deliveries))
        self.events, self.deliveries = [], []
        return pending

    def _announce_on_commit(self, session: Session, publisher: EventPublisher | None, later: bool) -> None:
        """Publish the recorded deliveries once the transaction has committed (never before: a worker
        could look for rows not yet visible), and forget them if it rolls back."""

        def committed(_: Session) -> None:
            pending, self.delivery_ids = self.delivery_ids, {}
            if not pending:
                return
            chosen = publisher or _worker_publisher()
            for endpoint_id, delivery_ids in pending.items():
                for requested in DeliveriesRequested.for_endpoint(endpoint_id, delivery_ids):
                    chosen.publish_later(requested) if later else chosen.publish(requested)

        def rolled_back(_: Session) -> None:
            self.delivery_ids = {}

        event.listen(session, "after_commit", committed, once=True)
        event.listen(session, "after_soft_rollback", rolled_back, once=True)


class Outbox(_Recorder):
    """For sync sessions (workers); publishes with the worker's Celery app unless given a publisher."""

    def __init__(
        self,
        session: Session,
        workspace_ids: Iterable[uuid.UUID] | None = None,
        publisher: EventPublisher | None = None,
    ) -> None:
        query = _ENABLED
        if workspace_ids is not None:
            query = query.where(WebhookEndpoint.workspace_id.in_(set(workspace_ids)))
        super().__init__([_subscription(row) for row in session.execute(query)])
        self._session = session
        if self.subscriptions:
            self._announce_on_commit(session, publisher, later=False)

    def record(self, workspace_id: uuid.UUID, data: EventData, **about: object) -> uuid.UUID | None:
        event_id = self.add(workspace_id, data, **about)
        self.flush()
        return event_id

    def flush(self) -> None:
        for statement, rows in self.statements():
            self._session.execute(statement, rows)


class AsyncOutbox(_Recorder):
    """For the gateway's async sessions: `await AsyncOutbox.load(session, workspace_id, publisher)`;
    publishes in the background (publish_later), after the commit."""

    @classmethod
    async def load(cls, session: AsyncSession, workspace_id: uuid.UUID, publisher: EventPublisher) -> AsyncOutbox:
        rows = await session.execute(_ENABLED.where(WebhookEndpoint.workspace_id == workspace_id))
        outbox = cls([_subscription(row) for row in rows])
        outbox._session = session
        if outbox.subscriptions:
            outbox._announce_on_commit(session.sync_session, publisher, later=True)
        return outbox

    async def record(self, workspace_id: uuid.UUID, data: EventData, **about: object) -> uuid.UUID | None:
        event_id = self.add(workspace_id, data, **about)
        for statement, rows in self.statements():
            await self._session.execute(statement, rows)
        return event_id


_publisher: EventPublisher | None = None


def _worker_publisher() -> EventPublisher:
    global _publisher
    if _publisher is None:
        _publisher = EventPublisher(platform_celery())
    return _publisher
