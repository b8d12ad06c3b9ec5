"""When each API key was last used, kept without a write on any request's way.

A request only notes its key in the gateway's memory (`KeyUsage.note`). Every few seconds the gateway
pushes what it noted to Redis, a sorted set scored by time (ZADD GT keeps the latest of all gateway
processes); beat's `identity.flush_key_usage` pops the set and writes api_keys.last_used_at in one short
transaction. A read request therefore never waits for SQLite's one write lock, and the database sees one
UPDATE per used key per flush instead of one per request (issue #21: a read that wrote failed with
"database is locked" while the scans worker and the rollup held the lock).

last_used_at is for people, not audits: it may lag by the push interval plus the flush interval, and
what a gateway noted is lost if it dies before pushing it (a few seconds of usage).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from datetime import UTC, datetime

import structlog
from redis import Redis
from redis.asyncio import Redis as AsyncRedis
from redis.exceptions import RedisError
from sqlalchemy import bindparam, or_, update
from sqlalchemy.orm import Session, sessionmaker

from app.identity.models import ApiKey

log = structlog.get_logger(__name__)

USAGE_KEY = "qrflow:api_key_usage"  # sorted set: member = key id, score = last use (Unix seconds)
# Keys popped per flush: a bound on one transaction; more wait for the next flush.
_FLUSH_BATCH = 1000


class KeyUsage:
    """The gateway's memory of which keys were used, pushed to Redis in the background."""

    def __init__(self, redis: AsyncRedis, push_seconds: float) -> None:
        self._redis = redis
        self._push_seconds = push_seconds
        self._pending: dict[str, float] = {}
        self._task: asyncio.Task[None] | None = None

    def note(self, key_id: uuid.UUID) -> None:
        self._pending[str(key_id)] = time.time()

    def start(self) -> None:
        self._task = asyncio.create_task(self._push_forever())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self.push()  # what the last seconds noted

    async def push(self) -> None:
        if not self._pending:
            return
        pending, self._pending = self._pending, {}
        try:
            await self._redis.zadd(USAGE_KEY, pending, gt=True)
        except RedisError as exc:
            # Kept for the next push; newer notes of the same keys win.
            self._pending = pending | self._pending
            log.warning("api_key_usage_push_failed", error=str(exc), keys=len(pending))

    async def _push_forever(self) -> None:
        while True:
            await asyncio.sleep(self._push_seconds)
            await self.push()


def flush_key_usage(sessions: sessionmaker[Session], redis: Redis) -> int:
    """Write the pushed last uses into api_keys.last_used_at (never moving one back); returns how many keys.

    Popped first, so two flushes never write the same use; if the write fails they go back into the set
    (ZADD GT: a newer use pushed meanwhile stays) and the error propagates for the task to retry."""
    popped: list[tuple[bytes, float]] = redis.zpopmin(USAGE_KEY, _FLUSH_BATCH)
    if not popped:
        return 0
    uses = [
        {"key": uuid.UUID(member.decode()), "used_at": datetime.fromtimestamp(score, UTC)}
        for member, score in popped
    ]
    keys = ApiKey.__table__
    try:
        with sessions.begin() as session:
            session.execute(
                update(keys)
                .where(keys.c.id == bindparam("key"))
                .where(or_(keys.c.last_used_at.is_(None), keys.c.last_used_at < bindparam("used_at")))
                .values(last_used_at=bindparam("used_at")),
                sorted(uses, key=lambda use: use["key"]),  # one lock order for every flush (PostgreSQL)
            )
    except BaseException:
        redis.zadd(USAGE_KEY, {member: score for member, score in popped}, gt=True)
        raise
    log.info("api_key_usage_flushed", keys=len(uses))
    return len(uses)
