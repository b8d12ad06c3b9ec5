"""The gateway: validates requests, writes what they command, publishes events. Never renders."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated

import anyio
import redis.asyncio as aioredis
from fastapi import FastAPI, Header, HTTPException
from prometheus_client import CONTENT_TYPE_LATEST
from starlette.responses import Response

from app.gateway.docs import install_docs
from app.gateway.errors import install_error_handlers
from app.gateway.hardening import install_safety
from app.gateway.middleware import RequestContextMiddleware
from app.gateway.ratelimit import RateLimitMiddleware
from app.gateway.redirect import Redirector, refuse, serve_redirects_first
from app.gateway.routers import admin, analytics, batches, health, logos, qrcodes, tasks, webhooks
from app.identity.usage import KeyUsage
from app.identity.verified_keys import VerifiedKeys
from app.kit import telemetry
from app.kit.db import async_sessions, create_gateway_engine
from app.kit.logging import configure_logging
from app.kit.messaging import EventPublisher, platform_celery
from app.kit.settings import Settings, get_settings
from app.kit.storage import open_image_store
from app.kit.tracked_tasks import TrackedTasks
from app.links.cache import LinkCache
from app.links.caps import ScanCaps
from app.scans import agents
from app.scans.spool import ScanSpool
from app.web import site
from app.webhooks.metrics import WebhookMetricsCollector

DESCRIPTION = """
Create QR codes, send people through dynamic short links, and see who scanned what.

Authenticate with `Authorization: Bearer <API key>` on everything under `/v1`
(`qrflow apikey create --workspace NAME` prints one). Codes render in the background:
`POST /v1/qrcodes` answers `202` with the code in `pending` state, and its images are served once it is `ready`.
Every error is JSON: `{"code": "...", "message": "...", "errors": [{"field", "type", "message"}]}`.
Send `Idempotency-Key: <unique string>` with a `POST` to make retrying it safe: the retry gets the first
response back. When a rate limit is configured, `RateLimit-*` headers say what is left, and `429` comes
with `Retry-After`.
"""


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    # Queue depths for /metrics, asked of the broker at scrape time (app/kit/telemetry.py).
    queue_depth = telemetry.queue_depth_collector(settings)
    webhook_metrics = WebhookMetricsCollector(settings.redis_url)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        celery_app = platform_celery()
        app.state.settings = settings
        app.state.engine = create_gateway_engine(settings)
        app.state.sessions = async_sessions(app.state.engine)
        # boto3 reads its service models from disk when an S3 store's client is made: off the loop.
        app.state.store = await anyio.to_thread.run_sync(open_image_store, settings)
        app.state.publisher = EventPublisher(celery_app)
        app.state.redis = aioredis.Redis.from_url(
            settings.redis_url, socket_timeout=1, socket_connect_timeout=1
        )
        app.state.tracked_tasks = TrackedTasks(app.state.redis, celery_app)
        app.state.key_usage = KeyUsage(app.state.redis, settings.key_usage_push_seconds)
        app.state.key_usage.start()
        app.state.verified_keys = VerifiedKeys(app.state.sessions, settings.api_key_cache_seconds)
        app.state.verified_keys.start()
        app.state.link_cache = LinkCache(app.state.sessions, settings.redis_url)
        await app.state.link_cache.start()
        spool = ScanSpool(settings)
        spool.open()
        app.state.spool = spool
        caps = ScanCaps(settings.redis_url)
        await anyio.to_thread.run_sync(agents.load)  # the classifier capped links need, compiled off the loop
        redirector = Redirector(app.state.link_cache, spool, caps)
        # The per-IP limit, when one is set, in front of the redirect alone (the API's is in the stack).
        limiter = RateLimitMiddleware(redirector, settings, refuse) if settings.redirect_rate_limit else None
        app.state.redirector = limiter or redirector
        try:
            yield
        finally:
            await anyio.to_thread.run_sync(spool.close)
            if limiter is not None:
                await limiter.close()
            await caps.close()
            await app.state.link_cache.stop()
            await app.state.key_usage.stop()
            await app.state.verified_keys.stop()
            await anyio.to_thread.run_sync(app.state.publisher.close)
            await app.state.redis.aclose()
            await app.state.engine.dispose()
            queue_depth.close()

    app = FastAPI(
        title="qrflow",
        version="0.1.0",
        description=DESCRIPTION,
        lifespan=lifespan,
        # Traced by opentelemetry-instrumentation-fastapi (app/kit/telemetry.py); FastAPI's own tracing would
        # otherwise look at every request, redirects included, only to find that it has nothing to do.
        telemetry={"tracing": False, "metrics": False, "logs": False},
        docs_url=None,  # served by install_docs, from local assets
        redoc_url=None,
        # Starlette's slash redirect builds its Location from the client's Host header (a 307 to any host
        # the client names): /v1/qrcodes/ is a 404 instead.
        redirect_slashes=False,
    )
    install_error_handlers(app)
    install_docs(app)
    app.include_router(health.router)
    app.include_router(qrcodes.router)
    app.include_router(logos.router)
    app.include_router(analytics.router)
    app.include_router(tasks.router)
    app.include_router(admin.router)
    batches.install(app)  # with its request body in the document
    webhooks.install(app)  # with each event type's schema
    site.install(app)  # the dashboard's pages under /app, its static files, and / → /app

    metrics_token = settings.metrics_token.get_secret_value()
    if settings.environment == "production" and not metrics_token:
        raise RuntimeError("set QRFLOW_METRICS_TOKEN: in production the gateway does not serve /metrics to anyone")

    @app.get("/metrics", include_in_schema=False)
    async def metrics(authorization: Annotated[str, Header()] = "") -> Response:
        if metrics_token and not secrets.compare_digest(authorization.encode(), f"Bearer {metrics_token}".encode()):
            raise HTTPException(
                401, "send Authorization: Bearer <QRFLOW_METRICS_TOKEN>", headers={"WWW-Authenticate": "Bearer"}
            )
        # In a thread: the queue-depth collector asks Redis (short timeouts), which must not block the loop.
        payload = await anyio.to_thread.run_sync(telemetry.metrics_payload, queue_depth, webhook_metrics)
        return Response(payload, media_type=CONTENT_TYPE_LATEST)

    # Body size, rate limits, idempotency keys, CORS, security headers (inside the request context,
    # so their refusals are logged and counted too).
    install_safety(app, settings)
    app.add_middleware(RequestContextMiddleware)
    # Tracing: a span per request (outermost), trace context into published tasks, trace ids in logs.
    telemetry.instrument_gateway(app)
    # Last, so that it is in front of everything above, tracing included: the hot path.
    serve_redirects_first(app, settings.trusted_proxies)
    return app


def build() -> FastAPI:
    """uvicorn's factory (`qrflow api`): logging first, so start-up lines are structured too."""
    settings = get_settings()
    configure_logging(settings, service="gateway")
    return create_app(settings)
