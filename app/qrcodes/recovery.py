"""Finding renders that were lost and sending them again: the republishers beat runs every minute.

A pending code is lost when nobody renders it and no message for it is held by the broker:
- its claim is dead (claims.is_live: its process is gone, or the claim is older than the hard time
  limit): the process was SIGKILLed (out of memory, the hard time limit, which acknowledges the message)
  or its message was lost with it (celery#3541);
- or it was never claimed, its render was requested more than `unclaimed_after` ago, and no message for
  it waits in the queue or in a worker: the broker was down when the gateway published, the gateway died
  between commit and publish, or the broker lost its data.
A code merely waiting behind a long queue is held by the broker, so it is not published twice, and the
queue does not grow itself. On Redis the broker's messages are read one by one; RabbitMQ says how many wait
in a queue, not which (app/kit/broker_inventory.py), so there a suspect counts as held while any wait
(_lost_on_rabbitmq). Each code's render starts are counted (claims.py), so a code that kills its process
goes back a bounded number of times and then fails.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

import structlog
from sqlalchemy import exists, or_, select, update
from sqlalchemy.orm import Session, sessionmaker

from app.kit.broker_inventory import BrokerInventory
from app.kit.db import utcnow
from app.kit.messaging import EventPublisher
from app.qrcodes import claims
from app.qrcodes.batches.events import BatchChunkRequested
from app.qrcodes.batches.models import BatchItem
from app.qrcodes.events import RenderRequested
from app.qrcodes.models import QRCode, Status

log = structlog.get_logger(__name__)

# Where renders wait (celeryconfig.task_routes): single codes on qr, a batch's chunks on qr_batch.
QUEUES = {False: "qr", True: "qr_batch"}
_IN_CHUNK = 1000
# A worker's main process hands a killed process's message back to the queue as soon as it reaps the
# process (celery's AsynPool marks the job lost at once): a message it still holds well after is lost.
_HANDBACK_GRACE = timedelta(seconds=30)


@dataclass(frozen=True)
class LostAfter:
    unclaimed: timedelta  # settings.render_republish_after_seconds
    time_limit: timedelta  # the hard time limit of a task: no claim outlives it


@dataclass(frozen=True)
class _Pending:
    id: uuid.UUID
    batch_id: uuid.UUID | None
    requested_at: datetime
    claimed_by: str | None
    claimed_at: datetime | None
    attempts: int


def republish_lost_renders(
    sessions: sessionmaker[Session],
    publisher: EventPublisher,
    inventory: BrokerInventory,
    lost_after: LostAfter,
    limit: int = 1000,
) -> int:
    """Publish a render again for each lost single code (a batch's codes go in chunks, below)."""
    lost = _lost(sessions, inventory, lost_after, batches=False, limit=limit)
    published = [code.id for code in lost if publisher.publish(RenderRequested(code_id=code.id))]
    _restart_clocks(sessions, published)
    if lost:
        log.info("renders_republished", count=len(published), lost=len(lost))
    return len(published)


def republish_lost_batch_renders(
    sessions: sessionmaker[Session],
    publisher: EventPublisher,
    inventory: BrokerInventory,
    lost_after: LostAfter,
    chunk_size: int,
    limit: int = 10_000,
) -> int:
    """Publish chunks again for a batch's lost codes. A code that had started (and so may be what killed
    its process) goes in a chunk of its own: it cannot take the others down with it again."""
    lost = _lost(sessions, inventory, lost_after, batches=True, limit=limit)
    chunks: list[tuple[uuid.UUID, list[uuid.UUID]]] = []
    fresh: dict[uuid.UUID, list[uuid.UUID]] = defaultdict(list)
    for code in lost:
        assert code.batch_id is not None
        if code.attempts:
            chunks.append((code.batch_id, [code.id]))
        else:
            fresh[code.batch_id].append(code.id)
    for batch_id, ids in fresh.items():
        chunks += [(batch_id, ids[start : start + chunk_size]) for start in range(0, len(ids), chunk_size)]
    published = [
        code_id
        for batch_id, ids in chunks
        if publisher.publish(BatchChunkRequested(batch_id=batch_id, code_ids=ids))
        for code_id in ids
    ]
    _restart_clocks(sessions, published)
    if lost:
        log.info("batch_renders_republished", count=len(published), lost=len(lost), chunks=len(chunks))
    return len(published)


def _lost(
    sessions: sessionmaker[Session], inventory: BrokerInventory, lost_after: LostAfter, *, batches: bool, limit: int
) -> list[_Pending]:
    now = utcnow()
    pending = _pending(sessions, now - lost_after.unclaimed, batches, limit)
    suspects = [code for code in pending if not _claim_live(code, now, lost_after)]
    if not suspects:
        return []  # the broker is read only when something may be lost
    queue, ids = QUEUES[batches], {code.id for code in suspects}
    if inventory.lists_messages:
        held = _held(inventory, queue, ids)
        lost = [code for code in suspects if not _held_for(code, held.get(code.id, ()), now, lost_after)]
    elif inventory.waiting(queue):
        lost = []  # RabbitMQ: any suspect's message may be one of those waiting (see _lost_on_rabbitmq)
    else:
        # Then what the workers hold: a message that leaves the queue meanwhile is in a worker's prefetch.
        held = _held(inventory, queue, ids)
        lost = [code for code in suspects if code.id not in held and _lost_on_rabbitmq(code, now, lost_after)]
    # A worker may have claimed or finished one meanwhile: only codes as they were are lost.
    return _unchanged(sessions, lost)


def _pending(sessions: sessionmaker[Session], cutoff: datetime, batches: bool, limit: int) -> list[_Pending]:
    in_batch = exists().where(BatchItem.code_id == QRCode.id)
    batch_id = select(BatchItem.batch_id).where(BatchItem.code_id == QRCode.id).scalar_subquery()
    with sessions() as session:
        rows = session.execute(
            select(
                QRCode.id,
                batch_id,
                QRCode.render_requested_at,
                QRCode.render_claimed_by,
                QRCode.render_claimed_at,
                QRCode.render_attempts,
            )
            .where(
                QRCode.status == Status.PENDING,
                QRCode.deleted_at.is_(None),
                # Claimed codes are few (those being rendered, and the dead): each is looked at.
                or_(QRCode.render_requested_at < cutoff, QRCode.render_claimed_at.is_not(None)),
                in_batch if batches else ~in_batch,
            )
            .order_by(QRCode.render_requested_at)
            .limit(limit)
        ).all()
    return [
        _Pending(id, batch, requested, by, at, attempts)
        for id, batch, requested, by, at, attempts in rows
        if by is not None or requested < cutoff
    ]


def _claim_live(code: _Pending, now: datetime, lost_after: LostAfter) -> bool:
    if code.claimed_by is None or code.claimed_at is None:
        return False
    return claims.is_live(code.claimed_by, code.claimed_at, now, lost_after.time_limit)


def _held(inventory: BrokerInventory, queue: str, ids: set[uuid.UUID]) -> dict[uuid.UUID, list[float | None]]:
    """For each of these codes, the messages the broker holds for it in `queue`: None for one waiting there,
    else when a worker took it."""
    held: dict[uuid.UUID, list[float | None]] = defaultdict(list)
    for message in inventory.held(queue):
        event = message.kwargs.get("event") or {}
        for raw in event.get("code_ids") or [event.get("code_id")]:
            try:
                code_id = uuid.UUID(str(raw))
            except ValueError:
                continue
            if code_id in ids:
                held[code_id].append(message.taken_at)
    return held


def _held_for(code: _Pending, messages: Iterable[float | None], now: datetime, lost_after: LostAfter) -> bool:
    """Whether one of the broker's messages will still bring this code to a worker."""
    for taken_at in messages:
        if taken_at is None:  # waiting in the queue
            return True
        if code.claimed_at is None:  # taken by a worker that has not started it yet
            return True
        if taken_at > code.claimed_at.timestamp():  # taken again after the dead claim: a new delivery
            return True
        # Taken before the claim: the delivery whose process died. Its worker hands it back within seconds
        # (reject_on_worker_lost); one it still holds long after the hard time limit it lost (celery#3541),
        # and gives back only when Redis's visibility_timeout (15 min) runs out.
        if _handback_due(code, now, lost_after):
            return True
    return False


def _lost_on_rabbitmq(code: _Pending, now: datetime, lost_after: LostAfter) -> bool:
    """Whether a suspect is lost on RabbitMQ, when no message waits in its queue and no worker holds one for
    it unstarted. While messages wait, RabbitMQ does not say which: no suspect is published again, a lost
    one waits for the queue's next empty moment, and the queue never grows itself. Once it is empty, an
    unclaimed code's message is lost (the broker was down at publish time, or the gateway died before it).
    A dead claim's message is lost only if it was acknowledged, at the hard time limit: RabbitMQ gives a
    message back the moment the connection of the worker holding it closes, and a worker gives back a killed
    pool process's (reject_on_worker_lost), for which _handback_due waits, as on Redis."""
    return code.claimed_at is None or not _handback_due(code, now, lost_after)


def _handback_due(code: _Pending, now: datetime, lost_after: LostAfter) -> bool:
    """Whether the message of a code whose claim died may still come back from the worker that held it."""
    assert code.claimed_at is not None
    return code.claimed_at > now - lost_after.time_limit - _HANDBACK_GRACE


def _unchanged(sessions: sessionmaker[Session], codes: list[_Pending]) -> list[_Pending]:
    if not codes:
        return []
    ids = [code.id for code in codes]
    current: dict[uuid.UUID, tuple[str | None, datetime | None]] = {}
    with sessions() as session:
        for start in range(0, len(ids), _IN_CHUNK):
            current.update(
                (id, (by, at))
                for id, by, at in session.execute(
                    select(QRCode.id, QRCode.render_claimed_by, QRCode.render_claimed_at).where(
                        QRCode.id.in_(ids[start : start + _IN_CHUNK]),
                        QRCode.status == Status.PENDING,
                        QRCode.deleted_at.is_(None),
                    )
                )
            )
    return [code for code in codes if current.get(code.id, ("gone", None)) == (code.claimed_by, code.claimed_at)]


def _restart_clocks(sessions: sessionmaker[Session], published: list[uuid.UUID]) -> None:
    """Republished: the codes are back in the broker, requested now, claimed by nobody."""
    now = utcnow()
    with sessions.begin() as session:
        for start in range(0, len(published), _IN_CHUNK):
            session.execute(
                update(QRCode)
                .where(QRCode.id.in_(published[start : start + _IN_CHUNK]), QRCode.status == Status.PENDING)
                .values(render_requested_at=now, render_claimed_by=None, render_claimed_at=None)
            )
