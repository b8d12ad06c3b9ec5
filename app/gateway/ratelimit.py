"""Rate limits in Redis: per API key on /v1, per client IP on /r/{slug} (pure ASGI middleware).

The `limits` library's moving window (a Redis list of hit timestamps per caller, updated by one Lua
script): exact, with no burst of twice the limit at a window boundary as a fixed window allows.

The caller on /v1 is their API key, recognised without a database query: its prefix (the part after
`qrf_`) plus a digest of the whole key. The prefix alone is not secret (it is shown in key lists and
logs), so a bucket named by the prefix alone would let anyone who knows it spend someone else's quota
with made-up keys; with the digest, a made-up key is a bucket of its own and gets 401 as before.
Requests without a qrflow key are not counted here: authentication refuses them anyway.

The limiter must never take the API down with it: when Redis cannot be reached the request is served,
a warning is logged (once per outage, not per request), `qrflow_rate_limiter_fail_open_total` counts it,
and Redis is not tried again for REDIS_RETRY_SECONDS, so an outage does not add a timeout to every request.
"""

from __future__ import annotations

import hashlib
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import structlog
from limits import RateLimitItem, parse
from limits.aio.storage import RedisStorage
from limits.aio.strategies import MovingWindowRateLimiter
from prometheus_client import Counter
from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.gateway.errors import send_error
from app.identity.service import KEY_PREFIX
from app.kit.settings import Settings

log = structlog.get_logger(__name__)

RATE_LIMITED = Counter("qrflow_rate_limited_total", "Requests refused with 429", ["limit"])
FAIL_OPEN = Counter(
    "qrflow_rate_limiter_fail_open_total",
    "Requests served without a rate-limit check because Redis was unreachable",
    ["limit"],
)

# After a Redis failure, requests skip the limiter this long before Redis is tried again.
REDIS_RETRY_SECONDS = 5.0
# A limit check is two short Lua calls; waiting longer than this for Redis is worse than not limiting.
_REDIS_TIMEOUT = 0.5
_KEY_PREFIX = "qrflow-ratelimit"


def api_key_identity(headers: list[tuple[bytes, bytes]]) -> str | None:
    """`<prefix>.<digest>` for a request bearing a qrflow key (valid or not), else None.

    Shared with the idempotency middleware: a stable name for "this API key" before authentication runs,
    that only the holder of the whole key can produce.
    """
    authorization = next((v for k, v in headers if k == b"authorization"), b"").decode("latin-1")
    scheme, _, token = authorization.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer":
        return None
    parts = token.split("_")
    if len(parts) < 3 or parts[0] != KEY_PREFIX or not parts[1]:
        return None
    digest = hashlib.sha256(token.encode()).hexdigest()[:32]
    return f"{parts[1]}.{digest}"


def client_ip(scope: Scope) -> str:
    # uvicorn puts the address from X-Forwarded-For here when the proxy is trusted (--forwarded-allow-ips).
    client = scope.get("client")
    return client[0] if client else "unknown"


@dataclass(frozen=True)
class _Rule:
    name: str  # "api" or "redirect": the Prometheus label and the Redis key's namespace
    item: RateLimitItem


# How a refusal is answered: (send, the request's headers, status, code, message, extra headers).
Refuse = Callable[[Send, dict[bytes, bytes], int, str, str, list[tuple[bytes, bytes]]], Awaitable[object]]


async def _send_json_error(
    send: Send, _request_headers: dict[bytes, bytes], status: int, code: str, message: str,
    headers: list[tuple[bytes, bytes]],
) -> None:
    await send_error(send, status, code, message, headers)


class RateLimitMiddleware:
    """`refuse` answers the 429: JSON by default; the redirect's page for people (redirect.py)."""

    def __init__(self, app: ASGIApp, settings: Settings, refuse: Refuse = _send_json_error) -> None:
        self.app = app
        self._refuse = refuse
        self.redis_url = settings.redis_url
        self.api = _Rule("api", parse(settings.rate_limit)) if settings.rate_limit else None
        self.redirect = (
            _Rule("redirect", parse(settings.redirect_rate_limit)) if settings.redirect_rate_limit else None
        )
        self._client: Redis | None = None
        self._limiter: MovingWindowRateLimiter | None = None
        self._skip_until = 0.0  # monotonic time until which Redis is not tried (after a failure)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            try:
                await self.app(scope, receive, send)
            finally:
                await self.close()
            return
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        target = self._target(scope)
        if target is None:
            await self.app(scope, receive, send)
            return
        rule, caller = target
        checked = await self._hit(rule, caller)
        if checked is None:  # Redis unreachable: fail open
            await self.app(scope, receive, send)
            return
        allowed, headers = checked
        if not allowed:
            RATE_LIMITED.labels(rule.name).inc()
            await self._refuse(send, dict(scope["headers"]), 429, "rate_limited", _message(rule, headers), headers)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *headers]
            await send(message)

        await self.app(scope, receive, send_with_headers)

    def _target(self, scope: Scope) -> tuple[_Rule, str] | None:
        path: str = scope["path"]
        if self.api is not None and (path == "/v1" or path.startswith("/v1/")):
            caller = api_key_identity(scope["headers"])
            return (self.api, caller) if caller else None
        if self.redirect is not None and path.startswith("/r/"):
            return self.redirect, client_ip(scope)
        return None

    async def _hit(self, rule: _Rule, caller: str) -> tuple[bool, list[tuple[bytes, bytes]]] | None:
        """(allowed, RateLimit-* headers), or None when Redis could not be asked."""
        if time.monotonic() < self._skip_until:
            FAIL_OPEN.labels(rule.name).inc()
            return None
        try:
            limiter = self._get_limiter()
            allowed = await limiter.hit(rule.item, rule.name, caller)
            reset_at, remaining = await limiter.get_window_stats(rule.item, rule.name, caller)
        except Exception as exc:  # whatever Redis or the network does, the API stays up
            self._skip_until = time.monotonic() + REDIS_RETRY_SECONDS
            FAIL_OPEN.labels(rule.name).inc()
            log.warning(
                "rate_limiter_unavailable",
                error=repr(exc),
                detail=f"serving requests unlimited; Redis is tried again in {REDIS_RETRY_SECONDS:g} s",
            )
            return None
        reset = max(0, math.ceil(reset_at - time.time()))
        headers = [
            (b"ratelimit-limit", str(rule.item.amount).encode()),
            (b"ratelimit-remaining", str(max(0, remaining) if allowed else 0).encode()),
            (b"ratelimit-reset", str(reset).encode()),
        ]
        if not allowed:
            headers.append((b"retry-after", str(max(1, reset)).encode()))
        return allowed, headers

    def _get_limiter(self) -> MovingWindowRateLimiter:
        # Created on first use, inside the server's event loop (the client's connections belong to it).
        if self._limiter is None:
            self._client = Redis.from_url(
                self.redis_url,
                socket_timeout=_REDIS_TIMEOUT,
                socket_connect_timeout=_REDIS_TIMEOUT,
                retry=Retry(NoBackoff(), 0),  # redis-py retries 3 times by default: no, fail fast
            )
            storage = RedisStorage(
                "async+redis://",
                implementation="redispy",
                key_prefix=_KEY_PREFIX,
                connection_pool=self._client.connection_pool,
            )
            self._limiter = MovingWindowRateLimiter(storage)
        return self._limiter

    async def close(self) -> None:
        client, self._client, self._limiter = self._client, None, None
        if client is not None:
            await client.aclose()


def _message(rule: _Rule, headers: list[tuple[bytes, bytes]]) -> str:
    who = "API key" if rule.name == "api" else "client address"
    retry_after = dict(headers)[b"retry-after"].decode()
    return f"too many requests: this {who} is limited to {rule.item}; retry in {retry_after} s"
