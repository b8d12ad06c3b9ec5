"""GET|HEAD /r/{slug}: where people land when they scan a dynamic code. The platform's hot path.

A person is waiting on a phone, so the answer must be fast and must not depend on the broker:
- the link comes from the in-process cache (app/links/cache.py), the database only on a miss;
- the scan is appended to the local spool (app/scans/spool.py) before the 302 is sent: no SQL write, no
  broker publish per request; the spool's shipper process publishes scans in batches;
- it is served by pure ASGI code in front of FastAPI's whole stack (RedirectRoutes): a FastAPI route
  measured a third of a plain one here (shared/MEASUREMENTS.md), and the tracing middleware alone costs
  about as much as the redirect. It shares the app's settings, its state (set up by the lifespan), the
  per-route metrics of every other route, and the per-IP rate limit when one is set. There is no access
  log line per redirect (the scan itself is the record) and no trace span.

HEAD answers like GET but records no scan and uses up none of a capped link's scans: link checkers and
unfurlers send it, people do not. So do prefetches (Sec-Purpose, Purpose or X-Moz: prefetch): a browser
guessing at a click is not a scan. A capped link's uses are counted for people only: the gateway asks the
scans worker's classifier (app/scans/agents.py, one cached verdict per user agent), and a bot's or an
unknown agent's GET is redirected and stored, but uses nothing up.
"""

from __future__ import annotations

import html
import json
import re
import time
from functools import lru_cache
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

import structlog
from fastapi import FastAPI
from sqlalchemy.exc import SQLAlchemyError
from starlette.types import ASGIApp, Receive, Scope, Send
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

from app.gateway.errors import error_body
from app.gateway.hardening import HTML_SECURITY_HEADERS
from app.gateway.middleware import LATENCY, REQUESTS
from app.kit.db import utcnow
from app.links.cache import LinkCache, LinkView
from app.links.caps import CapUnavailable, ScanCaps
from app.qrcodes.schemas import SLUG_PATTERN
from app.scans import agents
from app.scans.events import MAX_REFERRER, MAX_USER_AGENT, ScanRecorded
from app.scans.spool import ScanSpool

log = structlog.get_logger(__name__)

PREFIX = "/r/"
ROUTE = "/r/{slug}"
_SLUG = re.compile(SLUG_PATTERN)
_NO_STORE = (b"cache-control", b"no-store")
_NOSNIFF = (b"x-content-type-options", b"nosniff")  # every response has it (docs/security.md), the 302 too
# What RedirectResponse leaves unescaped in a Location: the URL's own syntax.
_URL_SAFE = ":/%#?=@[]!$&'()*+,;"
_RETRY_SECONDS = 5

_GONE_MESSAGES = {
    "deleted": "this code was deleted",
    "disabled": "this code has been switched off by its owner",
    "expired": "this code has expired",
    "exhausted": "this code has been used as many times as its owner allowed",
}


def serve_redirects_first(app: FastAPI, trusted_proxies: str) -> None:
    """Serve /r/… in front of the whole middleware stack, tracing and error pages included, which cost
    a redirect more than its own work; document it in the OpenAPI document, which only sees routes.

    The stack is built when the app first runs; this wraps what builds it, so call it after everything
    that adds middleware (telemetry.instrument_gateway wraps the builder too)."""
    build_stack = app.build_middleware_stack

    def build_with_redirects() -> ASGIApp:
        stack: ASGIApp = RedirectRoutes(build_stack())
        if trusted_proxies:
            # uvicorn's own: the client address from X-Forwarded-For, believed only from these proxies.
            stack = ProxyHeadersMiddleware(stack, trusted_hosts=trusted_proxies)  # type: ignore[arg-type]
        return stack

    app.build_middleware_stack = build_with_redirects  # type: ignore[method-assign]
    _document(app)


def _document(app: FastAPI) -> None:
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = build()
            schema["paths"][ROUTE] = {"get": _OPENAPI_OPERATION}
        return app.openapi_schema  # type: ignore[return-value]

    app.openapi = openapi  # type: ignore[method-assign]


def _error(description: str, headers: dict[str, Any] | None = None) -> dict[str, Any]:
    response: dict[str, Any] = {
        "description": description + " (a page for people; JSON with Accept: application/json)",
        "content": {
            "application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}},
            "text/html": {"schema": {"type": "string"}},
        },
    }
    if headers:
        response["headers"] = headers
    return response


_OPENAPI_OPERATION: dict[str, Any] = {
    "tags": ["redirect"],
    "summary": "Follow a dynamic code's short link",
    "description": "Where a scanned dynamic code leads: a 302 to the link's current target, and the scan is "
    "recorded. HEAD and prefetches (Sec-Purpose, Purpose or X-Moz: prefetch) answer the same without recording "
    "a scan. Only people use up a capped link (max_scans): bots and unknown agents are redirected while uses "
    "remain, and use none.",
    "operationId": "follow_short_link",
    "parameters": [{"name": "slug", "in": "path", "required": True, "schema": {"type": "string"}}],
    "responses": {
        "302": {
            "description": "To the code's current target; never cached, so every scan comes back here",
            "headers": {
                "Location": {"description": "The target URL", "required": True, "schema": {"type": "string"}},
                "Cache-Control": {"description": "`no-store`", "required": True, "schema": {"type": "string"}},
            },
        },
        "404": _error("No such link"),
        "410": _error("The link no longer redirects: deleted, disabled, expired, or all its scans used up"),
        "429": _error(
            "Too many scans from this address (only when QRFLOW_REDIRECT_RATE_LIMIT is set)",
            {"Retry-After": {"description": "Seconds to wait", "schema": {"type": "integer"}}},
        ),
        "503": _error(
            "A capped link cannot be checked right now (Redis away), or the link could not be read",
            {"Retry-After": {"description": "Seconds to wait", "schema": {"type": "integer"}}},
        ),
    },
}


class RedirectRoutes:
    """Sends /r/… to the app's Redirector (app.state.redirector), everything else down the stack."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"].startswith(PREFIX):
            await scope["app"].state.redirector(scope, receive, send)
        else:
            await self.app(scope, receive, send)


class Redirector:
    def __init__(self, links: LinkCache, spool: ScanSpool, caps: ScanCaps) -> None:
        self._links = links
        self._spool = spool
        self._caps = caps
        self._metrics: dict[tuple[str, int], tuple[object, object]] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = time.perf_counter()
        method = scope["method"]
        status = await self._answer(scope, send, method)
        counter, histogram = self._metric_children(method, status)
        counter.inc()  # type: ignore[attr-defined]
        histogram.observe(time.perf_counter() - started)  # type: ignore[attr-defined]

    async def _answer(self, scope: Scope, send: Send, method: str) -> int:
        headers = dict(scope["headers"])
        if method not in ("GET", "HEAD"):
            return await refuse(
                send, headers, 405, "method_not_allowed", f"{method} is not allowed here", [(b"allow", b"GET, HEAD")]
            )
        slug = scope["path"][len(PREFIX) :]
        try:
            link = await self._links.get(slug) if _SLUG.fullmatch(slug) else None
        except SQLAlchemyError as exc:
            log.error("redirect_link_unreadable", slug=slug, error=repr(exc))
            return await _unavailable(send, headers)
        if link is None:
            return await refuse(send, headers, 404, "not_found", f"there is no link {slug!r}")
        refusal = link.refusal(utcnow())
        # A scan is what a browser asked for on a person's behalf: not a HEAD, not a speculative fetch.
        is_scan = method == "GET" and not _is_prefetch(headers)
        if refusal is None and link.max_scans is not None:
            # Caps count people: a crawler, a preview fetcher or an unknown agent is let through to the target
            # (an unfurler needs it) while uses remain, but uses none up.
            consume = is_scan and agents.classify(_header(headers, b"user-agent", MAX_USER_AGENT)).is_person
            try:
                if not await self._caps.take(link, consume=consume):
                    refusal = "exhausted"
            except CapUnavailable as exc:
                log.error("redirect_cap_unavailable", slug=slug, error=str(exc))
                return await _unavailable(send, headers)
        if refusal is not None:
            return await refuse(send, headers, 410, "gone", _GONE_MESSAGES[refusal])
        if is_scan:
            self._record(scope, headers, link)
        await send(
            {
                "type": "http.response.start",
                "status": 302,
                # no-store: browsers must come back every time, so the target can change and every scan counts.
                "headers": [
                    (b"location", _location(link, scope["query_string"])),
                    _NO_STORE,
                    _NOSNIFF,
                    (b"content-length", b"0"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": b""})
        return 302

    def _record(self, scope: Scope, headers: dict[bytes, bytes], link: LinkView) -> None:
        client = scope.get("client")
        event = ScanRecorded(
            slug=link.slug,
            link_id=link.id,
            user_agent=_header(headers, b"user-agent", MAX_USER_AGENT),
            referrer=_header(headers, b"referer", MAX_REFERRER),
            ip=client[0] if client else None,
        )
        self._spool.append(event.model_dump_json().encode() + b"\n")

    def _metric_children(self, method: str, status: int) -> tuple[object, object]:
        # prometheus_client's labels() hashes and locks on every call; the few children are kept here.
        key = (method, status)
        children = self._metrics.get(key)
        if children is None:
            children = (REQUESTS.labels(method, ROUTE, str(status)), LATENCY.labels(method, ROUTE))
            self._metrics[key] = children
        return children


def _location(link: LinkView, query: bytes) -> bytes:
    target = link.target_url if link.target_url.isascii() else _ascii_target(link.target_url)
    if link.forward_query and query:
        target = _with_query(target, query.decode("latin-1"))
    # Targets were validated (no whitespace or control characters); only non-ASCII needs escaping.
    return target.encode() if target.isascii() else quote(target, safe=_URL_SAFE).encode()


@lru_cache(maxsize=1024)
def _ascii_target(target: str) -> str:
    """A target with non-ASCII characters as a Location carries it: the host in IDNA (punycode, the name
    DNS knows; percent-encoded it resolves nowhere), the rest percent-encoded UTF-8. Targets hold no
    credentials (links/targets.py checked that, and that the host encodes)."""
    parts = urlsplit(target)
    host = (parts.hostname or "").encode("idna").decode("ascii")
    netloc = f"{host}:{parts.port}" if parts.port is not None else host
    return urlunsplit(parts._replace(netloc=netloc))


def _with_query(target: str, query: str) -> str:
    """The scan's query string (UTM parameters) after the target's own, before its fragment."""
    base, hash_, fragment = target.partition("#")
    joined = f"{base}{'&' if '?' in base else '?'}{query}"
    return f"{joined}{hash_}{fragment}"


def _is_prefetch(headers: dict[bytes, bytes]) -> bool:
    """A browser fetching ahead of a possible click: Sec-Purpose (Chrome, "prefetch" or "prefetch;prerender"),
    Purpose (older Chrome and Safari), X-Moz (Firefox)."""
    purpose = headers.get(b"sec-purpose") or headers.get(b"purpose") or headers.get(b"x-moz")
    return purpose is not None and b"prefetch" in purpose.lower()


def _header(headers: dict[bytes, bytes], name: bytes, limit: int) -> str | None:
    value = headers.get(name)
    return value.decode("latin-1")[:limit] if value else None


async def _unavailable(send: Send, headers: dict[bytes, bytes]) -> int:
    message = "this link cannot be checked right now; try again in a few seconds"
    retry = [(b"retry-after", str(_RETRY_SECONDS).encode())]
    return await refuse(send, headers, 503, "unavailable", message, retry)


async def refuse(
    send: Send,
    request_headers: dict[bytes, bytes],
    status: int,
    code: str,
    message: str,
    extra: list[tuple[bytes, bytes]] = (),  # type: ignore[assignment]
) -> int:
    """An error as JSON for programs (Accept: application/json), as a small page for people."""
    if b"application/json" in request_headers.get(b"accept", b""):
        body = json.dumps(error_body(code, message)).encode()
        content_type = b"application/json"
        security = [_NOSNIFF]
    else:
        body = _PAGE.format(title=_TITLES[status], message=html.escape(message)).encode()
        content_type = b"text/html; charset=utf-8"
        security = HTML_SECURITY_HEADERS
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", content_type),
                (b"content-length", str(len(body)).encode()),
                _NO_STORE,
                *security,
                *extra,
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
    return status


_TITLES = {
    404: "Link not found", 405: "Method not allowed", 410: "Link no longer active", 429: "Too many requests",
    503: "Try again shortly",
}
_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title></head>
<body><h1>{title}</h1><p>{message}.</p></body></html>
"""
