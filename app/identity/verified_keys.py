"""API keys this gateway verified lately, so a request under load does not query for its key.

Under a scan flood the gateway's event loop is the API's bottleneck, not the database: each statement of
a request is four round trips to the database's thread, each queued behind the redirects (issue #21). A
key verified against the database is kept here with the moment it was last confirmed; a request whose key
was confirmed less than `max_age` seconds ago skips the query. A background task confirms every kept key
again each `max_age / 2` seconds in one statement, off any request's way, and forgets a key that is
revoked, deleted, or unused for a minute.

The bound: a key is only trusted from here if a confirmation that began less than `max_age` seconds ago
found it valid, so a revoked key is refused at most `max_age` seconds after its revocation commits
(QRFLOW_API_KEY_CACHE_SECONDS; 0 turns this off and every request reads its key). If confirming fails
(the database is away), entries simply age out and requests read their key themselves.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import time
from dataclasses import dataclass

import structlog
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.identity.models import ApiKey
from app.identity.service import Principal, authenticate

log = structlog.get_logger(__name__)

_FORGET_UNUSED_SECONDS = 60.0
_MAX_KEYS = 10_000  # a bound on memory; past it the least recently confirmed are dropped


@dataclass
class _Verified:
    principal: Principal
    confirmed_at: float  # time.monotonic() when the confirming read began
    used_at: float


class VerifiedKeys:
    def __init__(self, sessions: async_sessionmaker[AsyncSession], max_age: float) -> None:
        self._sessions = sessions
        self._max_age = max_age
        # By the key's SHA-256: the plaintext key is not kept in memory longer than a request.
        self._keys: dict[str, _Verified] = {}
        self._task: asyncio.Task[None] | None = None

    async def authenticate(self, session: AsyncSession, token: str) -> Principal | None:
        """As identity.service.authenticate, from memory when the key was confirmed within max_age."""
        if self._max_age <= 0:
            return await authenticate(session, token)
        digest = hashlib.sha256(token.encode()).hexdigest()
        now = time.monotonic()
        known = self._keys.get(digest)
        if known is not None and now - known.confirmed_at < self._max_age:
            known.used_at = now
            return known.principal
        principal = await authenticate(session, token)
        if principal is None:
            self._keys.pop(digest, None)
        else:
            self._remember(digest, _Verified(principal, now, now))
        return principal

    def _remember(self, digest: str, verified: _Verified) -> None:
        if len(self._keys) >= _MAX_KEYS and digest not in self._keys:
            oldest = min(self._keys, key=lambda d: self._keys[d].confirmed_at)
            del self._keys[oldest]
        self._keys[digest] = verified

    def start(self) -> None:
        if self._max_age > 0:
            self._task = asyncio.create_task(self._confirm_forever())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def confirm(self) -> None:
        """Re-read every kept key in one statement; keep those still valid, stamped with this read's start."""
        now = time.monotonic()
        for digest in [d for d, v in self._keys.items() if now - v.used_at > _FORGET_UNUSED_SECONDS]:
            del self._keys[digest]
        if not self._keys:
            return
        by_key_id = {v.principal.key_id: digest for digest, v in self._keys.items()}
        async with self._sessions() as session:
            valid = set(
                await session.scalars(
                    select(ApiKey.id).where(ApiKey.id.in_(list(by_key_id)), ApiKey.revoked_at.is_(None))
                )
            )
        for key_id, digest in by_key_id.items():
            verified = self._keys.get(digest)
            if verified is None:
                continue
            if key_id in valid:
                verified.confirmed_at = max(verified.confirmed_at, now)
            else:
                del self._keys[digest]

    async def _confirm_forever(self) -> None:
        while True:
            await asyncio.sleep(self._max_age / 2)
            try:
                await self.confirm()
            except Exception as exc:  # noqa: BLE001 - entries age out; requests then read their keys
                log.warning("api_key_confirm_failed", error=repr(exc))
