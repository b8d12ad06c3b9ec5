"""Use cases of the qrcodes context, as the gateway runs them (async sessions).

Writes follow one rule: commit the state, then publish the event. A publish that fails after the commit
is not an error for the client: the code stays pending and the stale-render republisher (a beat task)
publishes it again once the broker is back.
"""

from __future__ import annotations

import uuid

import structlog
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from app.db import utcnow
from app.errors import Invalid, NotFound, NotReady, PayloadTooLong, SlugTaken
from app.links import service as links
from app.messaging import EventPublisher
from app.qrcodes import symbol
from app.qrcodes.events import RenderRequested
from app.qrcodes.models import QRCode, Status
from app.qrcodes.repository import Cursor, QRCodeRepository
from app.qrcodes.schemas import CreateCode, CreateURLCode, UpdateCode
from app.storage import ImageStore, code_prefix, image_key

log = structlog.get_logger(__name__)


async def create_code(
    session: AsyncSession,
    publisher: EventPublisher,
    workspace_id: uuid.UUID,
    request: CreateCode,
    public_base_url: str,
) -> QRCode:
    code = QRCode(
        workspace_id=workspace_id,
        kind=request.kind,
        data=request.data.model_dump(mode="json", exclude_none=True),
        style=request.style.model_dump(mode="json"),
        title=request.title,
        status=Status.PENDING,
    )
    code.tags = request.tags
    if isinstance(request, CreateURLCode) and request.dynamic:
        code.link = links.new_link(workspace_id, request.data.url, request.slug)
        code.content = links.short_url(public_base_url, code.link.slug)
    else:
        code.content = request.data.content()
    _check_fits(code.content, request)

    QRCodeRepository(session).add(code)
    try:
        await session.commit()
    except IntegrityError as exc:
        await session.rollback()
        if code.link is not None:  # the slugs' unique index is the only constraint a create can break
            raise SlugTaken(f"slug {code.link.slug!r} is already taken", field="slug") from exc
        raise
    log.info("qrcode_created", code_id=str(code.id), kind=code.kind)
    publisher.publish_later(RenderRequested(code_id=code.id))
    return code


def _check_fits(content: str, request: CreateCode) -> None:
    try:
        symbol.check_fits(content, request.style.error, request.style.micro)
    except symbol.PayloadTooLong as exc:
        raise PayloadTooLong(str(exc), field="data") from exc
    except ValueError as exc:
        raise Invalid(str(exc), field="style.error") from exc


async def get_code(session: AsyncSession, workspace_id: uuid.UUID, code_id: uuid.UUID) -> QRCode:
    code = await QRCodeRepository(session).get(workspace_id, code_id)
    if code is None:
        # Also for another workspace's code: its existence is not the caller's business (404, not 403).
        raise NotFound(f"no QR code with id {code_id}", field="id")
    return code


async def list_codes(
    session: AsyncSession,
    workspace_id: uuid.UUID,
    *,
    limit: int,
    cursor: str | None,
    tag: str | None,
    kind: str | None,
) -> tuple[list[QRCode], str | None]:
    after = Cursor.decode(cursor) if cursor else None
    rows = await QRCodeRepository(session).page(
        workspace_id, limit=limit + 1, after=after, tag=tag, kind=kind
    )
    page, more = rows[:limit], len(rows) > limit
    next_cursor = Cursor(page[-1].created_at, page[-1].id).encode() if more else None
    return page, next_cursor


async def update_code(
    session: AsyncSession, workspace_id: uuid.UUID, code_id: uuid.UUID, changes: UpdateCode
) -> QRCode:
    code = await get_code(session, workspace_id, code_id)
    given = changes.model_fields_set
    if "target_url" in given:
        if code.link is None:
            raise Invalid("target_url applies only to dynamic codes", field="target_url")
        if changes.target_url is None:
            raise Invalid("target_url cannot be null", field="target_url")
        code.link.target_url = changes.target_url
    if "title" in given:
        code.title = changes.title
    if "tags" in given:
        code.tags = list(dict.fromkeys(changes.tags or []))
    code.updated_at = utcnow()
    await session.commit()
    return code


async def delete_code(
    session: AsyncSession, store: ImageStore, workspace_id: uuid.UUID, code_id: uuid.UUID
) -> None:
    """Soft delete: the row (and its slug) stays, so its short link answers 410 Gone, not 404."""
    code = await get_code(session, workspace_id, code_id)
    now = utcnow()
    code.deleted_at = now
    if code.link is not None:
        code.link.deleted_at = now
    await session.commit()
    store.delete_prefix(code_prefix(code.workspace_id, code.id))


def stored_image_key(code: QRCode, fmt: str) -> tuple[str, str]:
    """(storage key, etag) of a ready code's image, or NotReady while it is pending or failed."""
    if code.status == Status.PENDING:
        raise NotReady("the image is still being rendered; retry shortly", retry_after=1)
    if code.status == Status.FAILED:
        raise NotReady(f"rendering failed: {code.error}")
    etag = code.images.get(fmt)
    if etag is None:
        raise NotFound(f"this code has no {fmt} image", field="fmt")
    return image_key(code.workspace_id, code.id, etag, fmt), etag

