"""Tasks of the identity context: each calls one service function."""

from __future__ import annotations

from redis import Redis

from app.identity import usage
from workers.celery_app import celery_app
from workers.retries import retry_on_database_down
from workers.runtime import runtime


@celery_app.task(name="identity.flush_key_usage", **retry_on_database_down)
def flush_key_usage() -> int:
    resources = runtime()
    redis = Redis.from_url(resources.settings.redis_url, socket_timeout=5, socket_connect_timeout=5)
    try:
        return usage.flush_key_usage(resources.sessions, redis)
    finally:
        redis.close()
