"""Failed sign-ins, counted per email and per client address in Redis, so that guessing passwords is slow.

Each failure increments two counters that expire `window` seconds after the first failure of their run;
past `per_email` failures for one email or `per_client` from one address, sign-in is refused until the
counter expires, whether the password is right or not. A successful sign-in clears its email's counter
(not the address's: one address guessing many accounts stays throttled). Emails are kept only hashed.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import redis.asyncio as aioredis

from app.identity.sessions import needs_redis

_EMAIL = "qrflow:sign-in-failures:email:"
_CLIENT = "qrflow:sign-in-failures:client:"


@dataclass(frozen=True)
class Throttled:
    retry_after: int  # seconds until sign-in is allowed again


def _email_key(email: str) -> str:
    return _EMAIL + hashlib.sha256(email.strip().lower().encode()).hexdigest()


class SignInThrottle:
    def __init__(self, redis: aioredis.Redis, *, per_email: int, per_client: int, window_seconds: int) -> None:
        self._redis = redis
        self._limits = {"email": per_email, "client": per_client}
        self._window = window_seconds

    def _keys(self, email: str, client: str) -> dict[str, str]:
        return {"email": _email_key(email), "client": _CLIENT + client}

    @needs_redis
    async def check(self, email: str, client: str) -> Throttled | None:
        """Throttled (with how long for) when either counter is at its limit; else None."""
        keys = self._keys(email, client)
        async with self._redis.pipeline(transaction=False) as pipe:
            for key in keys.values():
                pipe.get(key)
                pipe.ttl(key)
            counts_and_ttls = await pipe.execute()
        waits = [
            max(1, int(ttl))
            for name, count, ttl in zip(keys, counts_and_ttls[0::2], counts_and_ttls[1::2], strict=True)
            if count is not None and int(count) >= self._limits[name]
        ]
        return Throttled(max(waits)) if waits else None

    @needs_redis
    async def failed(self, email: str, client: str) -> None:
        async with self._redis.pipeline(transaction=True) as pipe:
            for key in self._keys(email, client).values():
                pipe.incr(key)
                pipe.expire(key, self._window, nx=True)
            await pipe.execute()

    @needs_redis
    async def succeeded(self, email: str) -> None:
        await self._redis.delete(_email_key(email))
