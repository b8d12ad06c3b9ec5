"""Per-endpoint concurrency: at most N deliveries in flight to one endpoint, across every worker.

A sorted set per endpoint holds the tokens of attempts in flight, each scored by when it expires: a
worker killed mid-attempt frees its slot when its lease runs out, not never. If Redis cannot be asked
(it is the broker too, so little else works then), attempts go ahead unlimited rather than not at all.
"""

from __future__ import annotations

import secrets
import time
import uuid

import redis
import structlog
from redis.exceptions import RedisError

log = structlog.get_logger(__name__)

_TAKE = """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
if redis.call('ZCARD', KEYS[1]) < tonumber(ARGV[3]) then
  redis.call('ZADD', KEYS[1], ARGV[2], ARGV[4])
  redis.call('EXPIRE', KEYS[1], ARGV[5])
  return 1
end
return 0
"""


class Slots:
    def __init__(self, redis_url: str, limit: int, lease_seconds: float) -> None:
        self._client = redis.Redis.from_url(redis_url, socket_timeout=2, socket_connect_timeout=2)
        self._take = self._client.register_script(_TAKE)
        self._limit = limit
        self._lease = lease_seconds

    def take(self, endpoint_id: uuid.UUID) -> str | None:
        """A token if a slot was free (give it back), None if the endpoint has its limit in flight."""
        token = secrets.token_hex(8)
        now = time.time()
        try:
            granted = self._take(
                keys=[_key(endpoint_id)], args=[now, now + self._lease, self._limit, token, int(self._lease) + 60]
            )
        except RedisError as exc:
            log.warning("webhook_slots_unavailable", error=str(exc))
            return token
        return token if granted else None

    def give_back(self, endpoint_id: uuid.UUID, token: str) -> None:
        try:
            self._client.zrem(_key(endpoint_id), token)
        except RedisError:
            pass  # it expires with its lease


def _key(endpoint_id: uuid.UUID) -> str:
    return f"qrflow:webhooks:inflight:{endpoint_id}"
