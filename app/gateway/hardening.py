"""The gateway's safety middleware and its order: body size limit, security headers, CORS, and the wiring
of rate limits (ratelimit.py) and idempotency keys (idempotency.py). All pure ASGI.

Order, outermost first (install_safety adds them innermost first, as Starlette wants):
  SecurityHeaders  every response gets nosniff, refusals included
  CORS             only when QRFLOW_CORS_ORIGINS is set; outside the limits so a browser can read a 429
  BodySizeLimit    a declared Content-Length over the limit is refused before anything else runs
  RateLimit        only when a limit is set
  Idempotency      innermost: it reads the body (through the size limit) and sees the route's response
"""

from __future__ import annotations

import base64
import hashlib
import re

from fastapi import FastAPI
from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.gateway.errors import send_error
from app.gateway.idempotency import IdempotencyMiddleware
from app.gateway.ratelimit import RateLimitMiddleware
from app.kit.settings import Settings

# Pages that render no request input and whose inline scripts may therefore run (/docs: docs.py).
TRUSTED_HTML_PATHS = frozenset({"/docs"})

# Any other HTML (an error page from a proxy or a future handler) may load and run nothing.
STRICT_CSP = "default-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
# Swagger UI: its bundle and CSS from /docs-assets, the spec and "try it out" requests to this origin,
# data: images (icons in its CSS), blob: images (image responses), inline styles (React sets them).
# Its one inline script is allowed by its hash, computed from the page served: no 'unsafe-inline' scripts.
_DOCS_CSP = (
    "default-src 'none'; script-src 'self' {hashes}; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data: blob:; connect-src 'self'; font-src 'self'; "
    "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
# The dashboard (app/web): scripts and styles from its own hashed static files only, no inline script or
# event handler; images also as data: (the live preview) and blob:; forms post to this origin alone.
DASHBOARD_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; connect-src 'self'; "
    "font-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
DASHBOARD_PREFIX = "/app"
_HTML_HEADERS = [(b"x-frame-options", b"DENY"), (b"referrer-policy", b"no-referrer")]
# The dashboard's pages: no referrer to other sites, but their own origin on their forms' posts (under
# no-referrer, Chromium sends `Origin: null`, and the CSRF check could not tell them from a stranger's).
_DASHBOARD_HTML_HEADERS = [(b"x-frame-options", b"DENY"), (b"referrer-policy", b"same-origin")]
# For HTML answered outside this middleware (the redirect's pages, app/gateway/redirect.py).
HTML_SECURITY_HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    *_HTML_HEADERS,
    (b"content-security-policy", STRICT_CSP.encode()),
]
_INLINE_SCRIPT = re.compile(rb"<script(?![^>]*\bsrc\s*=)[^>]*>(.*?)</script\s*>", re.DOTALL | re.IGNORECASE)

CORS_ALLOW_HEADERS = ["Authorization", "Content-Type", "Idempotency-Key", "If-None-Match", "X-Request-ID"]
CORS_EXPOSE_HEADERS = [
    "Location", "ETag", "Retry-After", "X-Request-ID", "Idempotent-Replayed",
    "RateLimit-Limit", "RateLimit-Remaining", "RateLimit-Reset",
]


def install_safety(app: FastAPI, settings: Settings) -> None:
    """Adds the safety middleware (see the module's docstring); call before outer middleware is added."""
    app.add_middleware(IdempotencyMiddleware, settings=settings)
    if settings.rate_limit or settings.redirect_rate_limit:
        app.add_middleware(RateLimitMiddleware, settings=settings)
    app.add_middleware(
        BodySizeLimitMiddleware,
        max_bytes=settings.max_body_bytes,
        # Up to 10,000 codes in one request (app/qrcodes/batches).
        larger={"/v1/batches": settings.max_batch_body_bytes, "/app/batches": settings.max_batch_body_bytes},
    )
    origins = cors_origins(settings)
    if origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=origins,
            allow_methods=["GET", "POST", "PATCH", "DELETE", "HEAD"],
            allow_headers=CORS_ALLOW_HEADERS,
            expose_headers=CORS_EXPOSE_HEADERS,
            allow_credentials=False,  # API keys travel in Authorization, never in cookies
            max_age=600,
        )
    app.add_middleware(SecurityHeadersMiddleware)


def cors_origins(settings: Settings) -> list[str]:
    origins = [o.strip().rstrip("/") for o in settings.cors_origins.split(",") if o.strip()]
    return ["*"] if "*" in origins else origins


# --- request body size ---------------------------------------------------------------------------------


class BodyTooLarge(Exception):
    pass


class BodySizeLimitMiddleware:
    """413 `too_large` for a body over max_bytes (or the limit `larger` gives its path): at once when
    Content-Length says so, and as soon as a chunked body passes the limit while it streams (never
    buffering more than the limit)."""

    def __init__(self, app: ASGIApp, max_bytes: int, larger: dict[str, int] | None = None) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.larger = larger or {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.larger.get(scope["path"], self.max_bytes)
        declared = next((v for k, v in scope["headers"] if k == b"content-length"), None)
        if declared is not None and declared.isdigit() and int(declared) > limit:
            await self._refuse(send, limit)
            return

        received = 0
        exceeded = False
        started = False

        async def limited_receive() -> Message:
            nonlocal received, exceeded
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    exceeded = True
                    raise BodyTooLarge(f"request body over {limit} bytes")
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if exceeded and not started:
                # Whatever the app answers to a body it could not read (FastAPI turns the exception
                # into a 400) is replaced by the 413 below.
                return
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, guarded_send)
        except Exception:
            if not exceeded or started:
                raise
        if exceeded and not started:
            await self._refuse(send, limit)

    async def _refuse(self, send: Send, limit: int) -> None:
        # The rest of the body is never read: the connection cannot carry another request.
        await send_error(
            send, 413, "too_large", f"the request body is larger than {limit} bytes", [(b"connection", b"close")]
        )


# --- security headers ------------------------------------------------------------------------------


class SecurityHeadersMiddleware:
    """nosniff on every response; on HTML, X-Frame-Options, Referrer-Policy and a Content-Security-Policy."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        trusted = scope["path"] in TRUSTED_HTML_PATHS
        held: Message | None = None  # a trusted page's start message, held until its body is known
        chunks: list[bytes] = []

        async def send_with_headers(message: Message) -> None:
            nonlocal held
            if message["type"] == "http.response.start":
                headers = _without(message.get("headers", []), b"x-content-type-options")
                headers.append((b"x-content-type-options", b"nosniff"))
                if not _is_html(headers):
                    await send({**message, "headers": headers})
                    return
                headers = _without(headers, b"x-frame-options", b"referrer-policy", b"content-security-policy")
                if _is_dashboard(scope["path"]):
                    headers += _DASHBOARD_HTML_HEADERS
                else:
                    headers += _HTML_HEADERS
                if not trusted:
                    headers.append((b"content-security-policy", _csp_for(scope["path"]).encode()))
                    await send({**message, "headers": headers})
                    return
                held = {**message, "headers": headers}
                return
            if held is None or message["type"] != "http.response.body":
                await send(message)
                return
            chunks.append(message.get("body", b""))
            if message.get("more_body", False):
                return
            body = b"".join(chunks)
            csp = _DOCS_CSP.format(hashes=" ".join(_script_hashes(body)))
            await send({**held, "headers": [*held["headers"], (b"content-security-policy", csp.encode())]})
            await send({"type": "http.response.body", "body": body})

        await self.app(scope, receive, send_with_headers)


def _is_dashboard(path: str) -> bool:
    return path == DASHBOARD_PREFIX or path.startswith(DASHBOARD_PREFIX + "/")


def _csp_for(path: str) -> str:
    return DASHBOARD_CSP if _is_dashboard(path) else STRICT_CSP


def _without(headers: list[tuple[bytes, bytes]], *names: bytes) -> list[tuple[bytes, bytes]]:
    return [(k, v) for k, v in headers if k.lower() not in names]


def _is_html(headers: list[tuple[bytes, bytes]]) -> bool:
    content_type = next((v for k, v in headers if k.lower() == b"content-type"), b"")
    return content_type.lower().startswith(b"text/html")


def _script_hashes(html: bytes) -> list[str]:
    return [
        "'sha256-" + base64.b64encode(hashlib.sha256(script).digest()).decode() + "'"
        for script in _INLINE_SCRIPT.findall(html)
    ]
