"""Batch use cases that workers run (sync sessions).

A chunk renders each of its codes with jobs.render_code, the very function of a single code's render, so
idempotence comes with it: a code already ready (a redelivered chunk, a duplicate from the republisher)
or deleted is skipped, images are content-addressed, and the pending → ready update is conditional. A
worker killed mid-chunk (acks_late, reject_on_worker_lost) gets the chunk again and renders only what
is still pending; nothing is duplicated.
"""

from __future__ import annotations

import time
import uuid
from collections import Counter
from collections.abc import Callable
from datetime import timedelta

import structlog
from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from app.db import utcnow
from app.messaging import EventPublisher
from app.qrcodes import jobs
from app.qrcodes.batches.events import BatchChunkRequested
from app.qrcodes.batches.models import BatchItem
from app.qrcodes.models import QRCode, Status
from app.storage import ImageStore

log = structlog.get_logger(__name__)

_IN_CHUNK = 1000


def render_chunk(
    sessions: sessionmaker[Session],
    store: ImageStore,
    publisher: EventPublisher,
    chunk: BatchChunkRequested,
    budget_seconds: float,
    clock: Callable[[], float] = time.monotonic,
) -> dict[str, int]:
    """Render the chunk's pending codes, in order. Past `budget_seconds` (large codes draw slowly) the
    rest is handed on as a new chunk message, so a task stays far from its time limit, which would kill
    it and redeliver it for ever. Returns what happened to how many codes, for logs and tests."""
    with sessions() as session:
        live = set(
            session.scalars(
                select(QRCode.id).where(
                    QRCode.id.in_(chunk.code_ids), QRCode.status == Status.PENDING, QRCode.deleted_at.is_(None)
                )
            )
        )
    todo = [code_id for code_id in chunk.code_ids if code_id in live]
    outcomes: Counter[str] = Counter(skipped=len(chunk.code_ids) - len(todo))
    started = clock()
    for index, code_id in enumerate(todo):
        if index and clock() - started > budget_seconds:
            rest = todo[index:]
            # Published before this message is acknowledged: a worker dying now leaves both, which
            # costs a few skipped codes. If the broker refuses, the republisher finds them pending.
            handed_on = publisher.publish(BatchChunkRequested(batch_id=chunk.batch_id, code_ids=rest))
            outcomes["handed_on" if handed_on else "left_for_republisher"] += len(rest)
            break
        outcomes[jobs.render_code(sessions, store, code_id)] += 1
    log.info("batch_chunk_rendered", batch_id=str(chunk.batch_id), **outcomes)
    return dict(outcomes)


def republish_stale_batch_renders(
    sessions: sessionmaker[Session],
    publisher: EventPublisher,
    older_than: timedelta,
    chunk_size: int,
    limit: int = 10_000,
) -> int:
    """Publish chunks again for batch codes pending longer than `older_than` (the broker was down when
    the gateway published, or the messages were lost with the broker's data). As republish_stale_renders
    does for single codes, which leaves batch codes to this one; each code's clock restarts."""
    cutoff = utcnow() - older_than
    with sessions() as session:
        stale = session.execute(
            select(BatchItem.batch_id, QRCode.id)
            .join(QRCode, QRCode.id == BatchItem.code_id)
            .where(QRCode.status == Status.PENDING, QRCode.deleted_at.is_(None), QRCode.render_requested_at < cutoff)
            .order_by(BatchItem.batch_id, BatchItem.row)
            .limit(limit)
        ).all()
    by_batch: dict[uuid.UUID, list[uuid.UUID]] = {}
    for batch_id, code_id in stale:
        by_batch.setdefault(batch_id, []).append(code_id)
    published: list[uuid.UUID] = []
    for batch_id, code_ids in by_batch.items():
        for start in range(0, len(code_ids), chunk_size):
            ids = code_ids[start : start + chunk_size]
            if publisher.publish(BatchChunkRequested(batch_id=batch_id, code_ids=ids)):
                published += ids
    if published:
        with sessions.begin() as session:
            for start in range(0, len(published), _IN_CHUNK):
                session.execute(
                    update(QRCode)
                    .where(QRCode.id.in_(published[start : start + _IN_CHUNK]))
                    .values(render_requested_at=utcnow())
                )
        log.info("batch_renders_republished", count=len(published), stale=len(stale), batches=len(by_batch))
    return len(published)
