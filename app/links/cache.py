"""Slug → link for the redirect, from memory.

One Redis GET per redirect halves a FastAPI route's throughput on this machine (shared/MEASUREMENTS.md),
so each gateway process keeps the links it serves in an in-process LRU cache, filled from the database
on a miss. Changes reach every process through Redis pub/sub: whoever commits a change to a link calls
`changed(slug)`, which evicts it here and publishes the slug on CHANNEL; every process's subscriber evicts
it there. The next scan reads the link afresh.

Bounded staleness, whatever fails: while the subscription is up, an entry lives at most HEALTHY_TTL
(a safety net, not the mechanism); while it is down (Redis away, a message could be missed) entries live
at most UNHEALTHY_TTL, and on every (re)subscription the whole cache is dropped. So a PATCHed target is
served within UNHEALTHY_TTL (1 s) on every process, and at once in the common case.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime

import redis.asyncio as aioredis
import structlog
from cachetools import LRUCache
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.links.models import Link
from app.scans.models import Scan

log = structlog.get_logger(__name__)

CHANNEL = "qrflow:links:changed"
HEALTHY_TTL = 60.0
UNHEALTHY_TTL = 1.0
MAX_ENTRIES = 100_000  # a few hundred bytes each: tens of MB at most


@dataclass(frozen=True, slots=True)
class LinkView:
    """What the redirect needs to know about a link."""

    id: uuid.UUID
    slug: str
    target_url: str
    forward_query: bool
    disabled: bool
    deleted: bool
    expires_at: datetime | None
    max_scans: int | None
    # Scans of a capped link already stored: where its Redis counter restarts if Redis lost it.
    scans_stored: int

    def refusal(self, now: datetime) -> str | None:
        """Why the link no longer redirects (deleted, disabled, expired), or None. Exhaustion of a capped
        link is the other reason, counted in Redis (app/links/caps.py)."""
        if self.deleted:
            return "deleted"
        if self.disabled:
            return "disabled"
        if self.expires_at is not None and now >= self.expires_at:
            return "expired"
        return None


async def load_link(session: AsyncSession, slug: str) -> LinkView | None:
    link = await session.scalar(select(Link).where(Link.slug == slug))
    if link is None:
        return None
    stored = 0
    if link.max_scans is not None:
        stored = await session.scalar(select(func.count()).select_from(Scan).where(Scan.link_id == link.id)) or 0
    return LinkView(
        id=link.id,
        slug=link.slug,
        target_url=link.target_url,
        forward_query=link.forward_query,
        disabled=link.disabled,
        deleted=link.deleted_at is not None,
        expires_at=link.expires_at,
        max_scans=link.max_scans,
        scans_stored=stored,
    )


class LinkCache:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        redis_url: str,
        load: Callable[[AsyncSession, str], Awaitable[LinkView | None]] = load_link,
    ) -> None:
        self._sessions = sessions
        self._redis_url = redis_url
        self._load = load
        # slug → (link or None for "no such slug", monotonic time it was read)
        self._entries: LRUCache[str, tuple[LinkView | None, float]] = LRUCache(MAX_ENTRIES)
        # One database read per slug at a time, however many scans of it arrive meanwhile.
        self._loading: dict[str, asyncio.Future[LinkView | None]] = {}
        self._subscribed = False
        self._publisher: aioredis.Redis | None = None
        self._subscriber_task: asyncio.Task[None] | None = None

    async def get(self, slug: str) -> LinkView | None:
        entry = self._entries.get(slug)
        ttl = HEALTHY_TTL if self._subscribed else UNHEALTHY_TTL
        if entry is not None and time.monotonic() - entry[1] < ttl:
            return entry[0]
        pending = self._loading.get(slug)
        if pending is not None:
            return await asyncio.shield(pending)
        future: asyncio.Future[LinkView | None] = asyncio.get_running_loop().create_future()
        self._loading[slug] = future
        try:
            read_at = time.monotonic()
            async with self._sessions() as session:
                view = await self._load(session, slug)
            # A change announced while we were reading evicted nothing we hold: keep only what is fresh.
            if self._loading.get(slug) is future:
                self._entries[slug] = (view, read_at)
            future.set_result(view)
            return view
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # retrieved: waiters get it; nobody else must be warned about it
            raise
        finally:
            if self._loading.get(slug) is future:
                del self._loading[slug]

    def evict(self, slug: str) -> None:
        self._entries.pop(slug, None)
        # A read in flight may have started before the change: its result must not be cached.
        self._loading.pop(slug, None)

    async def changed(self, slug: str) -> None:
        """Announce a committed change to a link (target, limits, deletion; creation too, since a slug
        may be cached as unknown). Never raises: with Redis away, other processes are in their 1 s mode."""
        self.evict(slug)
        try:
            if self._publisher is None:
                self._publisher = aioredis.Redis.from_url(
                    self._redis_url, socket_timeout=1, socket_connect_timeout=1
                )
            await self._publisher.publish(CHANNEL, slug)
        except Exception as exc:  # redis raises many types; each means "not announced"
            log.warning("link_change_not_announced", slug=slug, error=repr(exc))

    async def start(self) -> None:
        self._subscriber_task = asyncio.create_task(self._subscribe_forever(), name="link-cache-subscriber")

    async def stop(self) -> None:
        if self._subscriber_task is not None:
            self._subscriber_task.cancel()
            await asyncio.gather(self._subscriber_task, return_exceptions=True)
        if self._publisher is not None:
            await self._publisher.aclose()

    async def _subscribe_forever(self) -> None:
        while True:
            # health_check_interval: a silently dead connection is noticed within seconds, not never.
            client = aioredis.Redis.from_url(self._redis_url, socket_connect_timeout=1, health_check_interval=5)
            try:
                async with client.pubsub(ignore_subscribe_messages=True) as pubsub:
                    await pubsub.subscribe(CHANNEL)
                    self._entries.clear()  # whatever changed while we were not listening
                    self._subscribed = True
                    log.info("link_cache_subscribed")
                    while True:
                        message = await pubsub.get_message(timeout=1.0)
                        if message is not None:
                            self.evict(message["data"].decode())
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if self._subscribed:
                    log.warning("link_cache_unsubscribed", error=repr(exc), detail="links are re-read every second")
                self._subscribed = False
                await asyncio.sleep(1.0)
            finally:
                self._subscribed = False
                await client.aclose()
