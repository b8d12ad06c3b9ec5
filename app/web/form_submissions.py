"""A form sent twice (a double click, a reload of the POST, a retry after a lost answer) creates one thing:
the dashboard's counterpart of the API's Idempotency-Key. Each new-code form carries a random form_id; the
first submission claims it in Redis, and a later one is sent to what the first created."""

from __future__ import annotations

import uuid

import redis.asyncio as aioredis
import structlog
from redis.exceptions import RedisError

from app.kit.errors import Conflict

log = structlog.get_logger(__name__)

_KEY = "qrflow:form-submission:{}:{}"
_PENDING = b"pending"
# As long as the API keeps an Idempotency-Key's response: a day.
_TTL_SECONDS = 24 * 3600


class FormSubmission:
    def __init__(self, redis: aioredis.Redis, person_id: uuid.UUID, form_id: object) -> None:
        self.redis = redis
        try:
            self.key = _KEY.format(person_id, uuid.UUID(str(form_id))) if form_id else None
        except ValueError:
            self.key = None  # not one of ours: the form is handled as a first submission

    async def claim(self) -> str | None:
        """None: this is the first submission, go ahead. Else the id of what the first one created."""
        if self.key is None:
            return None
        try:
            if await self.redis.set(self.key, _PENDING, nx=True, ex=_TTL_SECONDS):
                return None
            earlier = await self.redis.get(self.key)
        except RedisError as exc:
            log.warning("form_submission_unchecked", error=repr(exc))
            return None  # as the API without Redis: the request still goes through
        if earlier is None or earlier == _PENDING:
            raise Conflict("this form is being submitted already: wait a moment and reload the page")
        return earlier.decode()

    async def done(self, created: uuid.UUID) -> None:
        await self._write(lambda: self.redis.set(self.key, str(created), ex=_TTL_SECONDS))

    async def release(self) -> None:
        """The submission created nothing (it was refused): the same form may be sent again, corrected."""
        await self._write(lambda: self.redis.delete(self.key))

    async def _write(self, operation) -> None:  # noqa: ANN001 - a coroutine function
        if self.key is None:
            return
        try:
            await operation()
        except RedisError as exc:
            log.warning("form_submission_not_recorded", error=repr(exc))
