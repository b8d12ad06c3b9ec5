"""`Idempotency-Key` on POST /v1/*: a retried request gets the first one's response and changes nothing.

Pure ASGI middleware, so routers need nothing. For a POST under /v1 that carries the header and a qrflow
API key, it first authenticates the key (a key that is not valid gets its 401 here, before a byte of the
body is read, and nothing is written), then reads the body, then claims (API key, Idempotency-Key) by
INSERTing an in-flight record; the unique constraint on that pair decides every race, on SQLite as on
PostgreSQL. Then:

- it won the claim: the request runs; a final 2xx or 4xx response (status, body, Location and the other
  headers in _STORED_HEADERS) is stored on the record; a 5xx, a crash or a 401 (no authenticated key to
  scope it to) deletes the record, so a retry runs the request again;
- the key is taken by the same request (method, path, query, Content-Type and body) with a stored response: that
  response is replayed, marked `Idempotent-Replayed: true`;
- the same request is still in flight: 409 `idempotency_key_in_use` with Retry-After;
- the key was used for a different request: 422 `idempotency_key_reused`.

Keys are scoped per API key (its prefix and a digest of the whole key, see ratelimit.api_key_identity),
so two workspaces can use the same Idempotency-Key and nobody can replay another key's responses.
Records expire after QRFLOW_IDEMPOTENCY_TTL_SECONDS; an in-flight record whose request died with its
process (no response was ever stored) is taken over after _ABANDONED_AFTER. Each gateway process deletes
expired records at most once every _PURGE_INTERVAL_SECONDS.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import anyio
import structlog
from sqlalchemy import JSON, Integer, LargeBinary, String, UniqueConstraint, Uuid, delete, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlalchemy.orm import Mapped, mapped_column
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.gateway.errors import send_error
from app.gateway.ratelimit import api_key_identity
from app.identity.service import authenticate
from app.kit.db import Base, UTCDateTime, new_id, utcnow
from app.kit.settings import Settings

log = structlog.get_logger(__name__)

HEADER = b"idempotency-key"
# Headers that belong to the response itself; per-delivery ones (Date, X-Request-ID, RateLimit-*) do not.
_STORED_HEADERS = frozenset(
    {b"content-type", b"location", b"etag", b"cache-control", b"retry-after", b"www-authenticate", b"content-language"}
)
# 401: no authenticated key owns the record; 408/429: not final, the same request may succeed later.
_NOT_STORED = frozenset({401, 408, 429})
# POST responses here are small JSON documents; a larger one is not kept (a retry runs again).
_MAX_STORED_BODY = 1024 * 1024
# JSON bodies up to this size are compared as JSON (see _fingerprint); larger ones by their bytes.
_MAX_CANONICAL_BODY = 1024 * 1024
_CHALLENGE = [(b"www-authenticate", b"Bearer")]
# No request takes this long; an in-flight record this old belongs to a process that died.
_ABANDONED_AFTER = timedelta(minutes=2)
_PURGE_INTERVAL_SECONDS = 60.0
_VALID_KEY = re.compile(r"^[\x20-\x7e]{1,255}$")


class IdempotencyRecord(Base):
    __tablename__ = "idempotency_keys"
    __table_args__ = (UniqueConstraint("owner", "key"),)

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=new_id)
    # The API key that sent it: ratelimit.api_key_identity (prefix and digest), never the key itself.
    owner: Mapped[str] = mapped_column(String(64))
    key: Mapped[str] = mapped_column(String(255))
    # SHA-256 of method, path, query, Content-Type and body: a reused key with another request is refused.
    fingerprint: Mapped[str] = mapped_column(String(64))
    # NULL while the first request is in flight.
    status_code: Mapped[int | None] = mapped_column(Integer)
    response_headers: Mapped[list[list[str]] | None] = mapped_column(JSON)
    response_body: Mapped[bytes | None] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)


@dataclass
class _Captured:
    status: int | None = None
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)
    body: list[bytes] = field(default_factory=list)
    size: int = 0
    complete: bool = False


class IdempotencyMiddleware:
    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        self.app = app
        self.ttl = timedelta(seconds=settings.idempotency_ttl_seconds)
        self._next_purge = 0.0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not _applies(scope):
            await self.app(scope, receive, send)
            return
        raw_key = next((v for k, v in scope["headers"] if k == HEADER), None)
        owner = api_key_identity(scope["headers"])
        if raw_key is None or owner is None:  # no key: nothing to do; no API key: 401 follows
            await self.app(scope, receive, send)
            return
        key = raw_key.decode("latin-1").strip()
        if not _VALID_KEY.match(key):
            message = "1 to 255 printable ASCII characters (a UUID is a good choice)"
            errors = [{"field": "Idempotency-Key", "type": "value_error", "message": message}]
            await send_error(send, 422, "validation_error", f"Idempotency-Key: {message}", errors=errors)
            return

        sessions: async_sessionmaker = scope["app"].state.sessions
        if not await _authenticated(sessions, scope):
            # Answered here, as get_principal would: nothing of the body is read, nothing is stored.
            await send_error(send, 401, "unauthorized", "invalid or revoked API key", _CHALLENGE)
            return

        body = await _read_body(receive)
        if body is None:  # the client went away before sending its body
            return
        fingerprint = await _fingerprint(scope, body)

        sent_body = False

        async def replay_body() -> Message:
            nonlocal sent_body
            if not sent_body:
                sent_body = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()  # after the body there is only http.disconnect

        claimed, existing = await self._claim(sessions, owner, key, fingerprint)
        if not claimed:
            await self._answer_taken(send, existing, fingerprint)
            return

        captured = _Captured()

        async def capture(message: Message) -> None:
            if message["type"] == "http.response.start":
                captured.status = message["status"]
                captured.headers = list(message.get("headers", []))
            elif message["type"] == "http.response.body":
                chunk = message.get("body", b"")
                captured.size += len(chunk)
                if captured.size <= _MAX_STORED_BODY:
                    captured.body.append(chunk)
                captured.complete = not message.get("more_body", False)
            await send(message)

        try:
            await self.app(scope, replay_body, capture)
        finally:
            # Shielded: a cancelled request must still store its response or release its key.
            with anyio.CancelScope(shield=True):
                await self._finish(sessions, claimed, captured)
                await self._purge_expired(sessions)

    async def _claim(
        self, sessions: async_sessionmaker, owner: str, key: str, fingerprint: str
    ) -> tuple[uuid.UUID | None, IdempotencyRecord | None]:
        """(id of the record this request now owns, None) or (None, the record that holds the key)."""
        existing = None
        for _ in range(3):  # a record removed between our INSERT and SELECT, or an expired one: again
            async with sessions() as session:
                record = IdempotencyRecord(
                    id=new_id(), owner=owner, key=key, fingerprint=fingerprint, created_at=utcnow()
                )
                session.add(record)
                try:
                    await session.commit()
                    return record.id, None
                except IntegrityError:
                    await session.rollback()
                existing = await session.scalar(
                    select(IdempotencyRecord).where(IdempotencyRecord.owner == owner, IdempotencyRecord.key == key)
                )
                if existing is None:
                    continue
                now = utcnow()
                if existing.created_at <= now - self.ttl:
                    await session.execute(delete(IdempotencyRecord).where(IdempotencyRecord.id == existing.id))
                    await session.commit()
                    continue
                if existing.status_code is None and existing.created_at <= now - _ABANDONED_AFTER:
                    await session.execute(
                        delete(IdempotencyRecord).where(
                            IdempotencyRecord.id == existing.id, IdempotencyRecord.status_code.is_(None)
                        )
                    )
                    await session.commit()
                    log.warning("idempotency_key_abandoned", key=key, created_at=existing.created_at.isoformat())
                    continue
                return None, existing
        return None, existing

    async def _answer_taken(self, send: Send, existing: IdempotencyRecord | None, fingerprint: str) -> None:
        if existing is not None and existing.fingerprint != fingerprint:
            await send_error(
                send,
                422,
                "idempotency_key_reused",
                "this Idempotency-Key was already used for a different request (method, path or body); "
                "send a new key with a new request",
            )
            return
        if existing is None or existing.status_code is None:
            await send_error(
                send,
                409,
                "idempotency_key_in_use",
                "a request with this Idempotency-Key is still being processed; retry once it has finished",
                headers=[(b"retry-after", b"1")],
            )
            return
        body = existing.response_body or b""
        headers = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in existing.response_headers or []]
        headers += [(b"content-length", str(len(body)).encode()), (b"idempotent-replayed", b"true")]
        await send({"type": "http.response.start", "status": existing.status_code, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    async def _finish(self, sessions: async_sessionmaker, record_id: uuid.UUID, captured: _Captured) -> None:
        status = captured.status
        keep = (
            captured.complete
            and status is not None
            and (200 <= status < 300 or 400 <= status < 500)
            and status not in _NOT_STORED
            and captured.size <= _MAX_STORED_BODY
        )
        try:
            async with sessions() as session:
                if keep:
                    headers = [
                        [k.decode("latin-1"), v.decode("latin-1")]
                        for k, v in captured.headers
                        if k.lower() in _STORED_HEADERS
                    ]
                    await session.execute(
                        update(IdempotencyRecord)
                        .where(IdempotencyRecord.id == record_id)
                        .values(status_code=status, response_headers=headers, response_body=b"".join(captured.body))
                    )
                else:
                    await session.execute(delete(IdempotencyRecord).where(IdempotencyRecord.id == record_id))
                await session.commit()
        except Exception as exc:  # the response is out; a record left in flight is taken over later
            log.warning("idempotency_record_not_saved", record_id=str(record_id), error=repr(exc))

    async def _purge_expired(self, sessions: async_sessionmaker) -> None:
        if time.monotonic() < self._next_purge:
            return
        self._next_purge = time.monotonic() + _PURGE_INTERVAL_SECONDS
        try:
            async with sessions() as session:
                result = await session.execute(
                    delete(IdempotencyRecord).where(IdempotencyRecord.created_at <= utcnow() - self.ttl)
                )
                await session.commit()
            if result.rowcount:
                log.info("idempotency_keys_expired", deleted=result.rowcount)
        except Exception as exc:
            log.warning("idempotency_purge_failed", error=repr(exc))


async def _authenticated(sessions: async_sessionmaker, scope: Scope) -> bool:
    """Whether the request's API key is still valid: a stored response is only for a key that is."""
    authorization = next((v for k, v in scope["headers"] if k == b"authorization"), b"").decode("latin-1")
    async with sessions() as session:
        return await authenticate(session, authorization.partition(" ")[2].strip()) is not None


def _applies(scope: Scope) -> bool:
    if scope["type"] != "http" or scope["method"] != "POST":
        return False
    path: str = scope["path"]
    return path == "/v1" or path.startswith("/v1/")


async def _read_body(receive: Receive) -> bytes | None:
    """The whole body (the size limit is enforced by the middleware outside this one), or None."""
    chunks = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks)


async def _fingerprint(scope: Scope, body: bytes) -> str:
    """The same request gives the same fingerprint. A JSON body up to _MAX_CANONICAL_BODY is compared as
    JSON, not as bytes, so a client that re-serialises its retry (other key order, other spacing) is not
    refused. A larger one (a batch) is compared by its bytes: parsing megabytes holds the GIL whatever
    thread does it, while hashing releases it; such bodies come from files and programs that send the same
    bytes again. Both run in a worker thread, off the event loop."""
    content_type = next((v for k, v in scope["headers"] if k == b"content-type"), b"").strip().lower()
    return await anyio.to_thread.run_sync(_digest, scope["method"], scope["path"], scope.get("query_string", b""),
                                          content_type, body)


def _digest(method: str, path: str, query: bytes, content_type: bytes, body: bytes) -> str:
    canonical = body
    if b"json" in content_type and len(body) <= _MAX_CANONICAL_BODY:
        try:
            canonical = json.dumps(json.loads(body), sort_keys=True, separators=(",", ":")).encode()
        except (ValueError, RecursionError):  # not JSON after all: its bytes, then
            pass
    digest = hashlib.sha256()
    for part in (method.encode(), path.encode(), query, content_type, canonical):
        digest.update(len(part).to_bytes(8, "big"))
        digest.update(part)
    return digest.hexdigest()
