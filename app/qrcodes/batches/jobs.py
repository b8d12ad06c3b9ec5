"""Batch use cases that workers run (sync sessions).

A chunk renders each of its codes with jobs.render_code, the very function of a single code's render, so
idempotence comes with it: a code already ready (a redelivered chunk, a duplicate from the republisher)
or deleted is skipped, images are content-addressed, and the pending → ready update is conditional. A
worker killed mid-chunk (acks_late, reject_on_worker_lost) gets the chunk again and renders only what
is still pending; nothing is duplicated. A chunk claims its codes when it starts (claims.py): if its
process dies and the message is lost or acknowledged (the hard time limit), the republisher sees the
dead claim and sends the codes again (recovery.py).

Each code is isolated: one that raises or runs out of time is sent back alone, and codes that had
started before (one of them may be what killed the process) go after the fresh ones, so a code that
kills its process every time cannot keep the others pending. It is tried a bounded number of times.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable

import structlog
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from app.kit.messaging import EventPublisher
from app.kit.storage import ImageStore, StoreUnavailable
from app.qrcodes import claims, jobs
from app.qrcodes.batches.events import BatchChunkRequested
from app.qrcodes.models import QRCode, Status

log = structlog.get_logger(__name__)


def render_chunk(
    sessions: sessionmaker[Session],
    store: ImageStore,
    publisher: EventPublisher,
    chunk: BatchChunkRequested,
    budget_seconds: float,
    attempts: jobs.Attempts = jobs.DEFAULT_ATTEMPTS,
    clock: Callable[[], float] = time.monotonic,
) -> dict[str, int]:
    """Render the chunk's pending codes, fresh ones first. Past `budget_seconds` (large codes draw slowly,
    or one ran past the soft time limit) the rest is handed on as a new chunk message, so a task stays far
    from its hard time limit. Returns what happened to how many codes, for logs and tests."""
    with sessions() as session:
        started_before = dict(
            session.execute(
                select(QRCode.id, QRCode.render_attempts).where(
                    QRCode.id.in_(chunk.code_ids), QRCode.status == Status.PENDING, QRCode.deleted_at.is_(None)
                )
            ).all()
        )
    todo = sorted((code_id for code_id in chunk.code_ids if code_id in started_before), key=started_before.get)
    outcomes: Counter[str] = Counter(skipped=len(chunk.code_ids) - len(todo))
    claims.claim(sessions, todo)
    again = []
    started = clock()
    for index, code_id in enumerate(todo):
        if index and clock() - started > budget_seconds:
            again += todo[index:]
            break
        try:
            outcome = jobs.render_code(sessions, store, code_id, attempts)
        except StoreUnavailable:
            claims.release(sessions, todo[index:])  # the whole chunk waits the store out (workers/retries.py)
            raise
        if outcome == jobs.RETRY:
            again.append(code_id)
        else:
            outcomes[outcome] += 1
    if again:
        # Published before this message is acknowledged: a worker dying now leaves both, which costs a
        # few skipped codes. If the broker refuses, they are unclaimed and in no message: the republisher
        # finds them.
        claims.release(sessions, again)
        handed_on = publisher.publish(BatchChunkRequested(batch_id=chunk.batch_id, code_ids=again))
        outcomes["handed_on" if handed_on else "left_for_republisher"] += len(again)
    log.info("batch_chunk_rendered", batch_id=str(chunk.batch_id), **outcomes)
    return dict(outcomes)
