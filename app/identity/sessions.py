"""Dashboard sessions, server-side in Redis, so that signing out or disabling a person ends them at once.

The cookie holds an opaque random token (256 bits); Redis holds only its SHA-256 as the key, so a copy of
Redis's data does not sign anyone in. Each person's session keys are also kept in a set, to end them all.
A session ends after `idle` seconds without a lookup and in any case `absolute` seconds after it started.
Each session has a CSRF token of its own, which every state-changing request must carry.
"""

from __future__ import annotations

import hashlib
import secrets
import time
import uuid
from dataclasses import dataclass

import redis.asyncio as aioredis

_SESSION = "qrflow:web-session:"
_PERSON = "qrflow:web-sessions-of:"


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

    async def end(self, token: str) -> None:
        key = _SESSION + _digest(token)
        person_id = await self._redis.hget(key, "person_id")
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.delete(key)
            if person_id is not None:
                pipe.srem(_PERSON + _text(person_id), key)
            await pipe.execute()

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
