"""max_scans: how many redirects a capped link still grants, counted atomically across gateway processes.

The count lives in Redis (one key per capped link) and is taken by a Lua script, so N concurrent scans of
a link with max_scans=10 get exactly 10 redirects whichever processes answer them. Uncapped links, nearly
all of them, never come here. If Redis lost the key (no persistence, a flush), the script restarts it at
the scans already stored for the link (scans_total: people's). Only people's scans count: the gateway
takes a use for a person's GET (app/gateway/redirect.py), and only checks the cap for a bot, an unknown
agent, a prefetch or a HEAD, so a link preview never uses up nor exhausts a link.

With Redis away a capped link cannot be checked: it answers 503 with Retry-After rather than letting
through redirects it may not have, nor refusing ones it has (see app/gateway/redirect.py).
"""

from __future__ import annotations

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from app.links.cache import LinkView

_TAKE = """
local used = tonumber(redis.call('GET', KEYS[1]) or ARGV[2])
if used >= tonumber(ARGV[1]) then
  return 0
end
if ARGV[3] == '1' then
  redis.call('SET', KEYS[1], used + 1)
end
return 1
"""


class CapUnavailable(Exception):
    """Redis could not be asked."""


class ScanCaps:
    def __init__(self, redis_url: str) -> None:
        self._client = aioredis.Redis.from_url(redis_url, socket_timeout=0.5, socket_connect_timeout=0.5)
        self._take = self._client.register_script(_TAKE)

    async def take(self, link: LinkView, consume: bool = True) -> bool:
        """One redirect of a capped link: True if it is granted (and, if `consume`, counted), False when
        the link is exhausted."""
        assert link.max_scans is not None
        keys = [f"qrflow:scans-used:{link.id}"]
        try:
            granted = await self._take(keys=keys, args=[link.max_scans, link.scans_stored, int(consume)])
        except RedisError as exc:
            raise CapUnavailable(str(exc)) from exc
        return bool(granted)

    async def close(self) -> None:
        await self._client.aclose()
