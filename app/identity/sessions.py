"""Dashboard sessions, server-side in Redis, so that signing out or disabling a person ends them at once.

The cookie holds an opaque random token (256 bits); Redis holds only its SHA-256 as the key, so a copy of
Redis's data does not sign anyone in. Each person's session keys are also kept in a set, to end them all.
A session ends after `idle` seconds without a lookup and in any case `absolute` seconds after it started.
Each session has a CSRF token of its own, which every state-changing request must carry.
"""

from __future__ import annotations

import functools
import hashlib
import secrets
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import ParamSpec, TypeVar

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from app.kit.errors import DomainError

P = ParamSpec("P")
T = TypeVar("T")

_SESSION = "qrflow:web-session:"
_PERSON = "qrflow:web-sessions-of:"


class SessionsUnavailable(DomainError):
    """Redis does not answer: nobody can be signed in or out until it does (a 503, not a 500)."""

    status = 503
    code = "sessions_unavailable"

    def __init__(self) -> None:
        super().__init__("signing in is unavailable for a moment (the session store does not answer): try again soon")

    @property
    def headers(self) -> dict[str, str]:
        return {"Retry-After": "10"}


def needs_redis(method: Callable[P, Awaitable[T]]) -> Callable[P, Awaitable[T]]:
    @functools.wraps(method)
    async def call(*args: P.args, **kwargs: P.kwargs) -> T:
        try:
            return await method(*args, **kwargs)
        except RedisError as exc:
            raise SessionsUnavailable() from exc

    return call


@dataclass(frozen=True)
class WebSession:
    person_id: uuid.UUID
    workspace_id: uuid.UUID
    csrf_token: str
    started_at: float


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


class SessionStore:
    def __init__(self, redis: aioredis.Redis, *, idle_seconds: int, absolute_seconds: int) -> None:
        self._redis = redis
        self._idle = idle_seconds
        self._absolute = absolute_seconds

    @needs_redis
    async def start(self, person_id: uuid.UUID, workspace_id: uuid.UUID) -> tuple[str, WebSession]:
        """A new session: the token for the cookie (shown to no one else) and what it stands for."""
        token = secrets.token_urlsafe(32)
        session = WebSession(person_id, workspace_id, secrets.token_urlsafe(32), time.time())
        key = _SESSION + _digest(token)
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.hset(key, mapping={"person_id": str(person_id), "workspace_id": str(workspace_id),
                                    "csrf_token": session.csrf_token, "started_at": repr(session.started_at)})
            pipe.expire(key, min(self._idle, self._absolute))
            pipe.sadd(_PERSON + str(person_id), key)
            pipe.expire(_PERSON + str(person_id), self._absolute)
            await pipe.execute()
        return token, session

    @needs_redis
    async def lookup(self, token: str) -> WebSession | None:
        """The live session of this token, its idle time reset; None when it has ended or never was."""
        if not token:
            return None
        key = _SESSION + _digest(token)
        fields = {_text(k): _text(v) for k, v in (await self._redis.hgetall(key)).items()}
        if not fields:
            return None
        session = WebSession(uuid.UUID(fields["person_id"]), uuid.UUID(fields["workspace_id"]),
                             fields["csrf_token"], float(fields["started_at"]))
        left = session.started_at + self._absolute - time.time()
        if left <= 0:
            await self._redis.delete(key)
            return None
        await self._redis.expire(key, max(1, int(min(self._idle, left))))
        return session

    @needs_redis
    async def end(self, token: str) -> None:
        key = _SESSION + _digest(token)
        person_id = await self._redis.hget(key, "person_id")
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.delete(key)
            if person_id is not None:
                pipe.srem(_PERSON + _text(person_id), key)
            await pipe.execute()

    @needs_redis
    async def end_all(self, person_id: uuid.UUID) -> int:
        """Every session of this person ended (signed out everywhere, or disabled); how many there were."""
        members = await self._redis.smembers(_PERSON + str(person_id))
        keys = [_text(m) for m in members]
        async with self._redis.pipeline(transaction=True) as pipe:
            if keys:
                pipe.delete(*keys)
            pipe.delete(_PERSON + str(person_id))
            results = await pipe.execute()
        return int(results[0]) if keys else 0
