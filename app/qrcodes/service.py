"""Use cases of the qrcodes context, as the gateway runs them (async sessions).

Writes follow one rule: commit the state, then publish the event. A publish that fails after the commit
is not an error for the client: the code stays pending and the stale-render republisher (a beat task)
publishes it again once the broker is back. Likewise a dynamic code's link, once committed, is announced
to the redirect caches (`links.LinkChanges`): announcing first could let a cache re-read the old row.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import TypeVar

import structlog
from anyio import to_thread
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from app.kit.db import utcnow
from app.kit.errors import Invalid, NotFound, NotReady, PayloadTooLong, SlugTaken
from app.kit.messaging import EventPublisher
from app.kit.storage import ImageStore, StoreUnavailable, code_prefix, image_key
from app.links import service as links
from app.qrcodes import logos, render_cost, symbol
from app.qrcodes.events import ImagesDeleteRequested, RenderRequested
from app.qrcodes.models import QRCode, Status
from app.qrcodes.repository import Cursor, QRCodeRepository
from app.qrcodes.schemas import LINK_SETTINGS, CreateCode, CreateURLCode, UpdateCode
from app.scans.models import Scan
from app.scans.repository import ScanRepository
from app.webhooks import sources as webhooks
from app.webhooks.events import QRCodeCreated, QRCodeDeleted, QRCodeUpdated

log = structlog.get_logger(__name__)

T = TypeVar("T")

# What a PATCH may change of a dynamic code's link. expires_at and max_scans may be set to null (no limit).
_LINK_FIELDS = ("target_url", *LINK_SETTINGS)
_NOT_NULL = frozenset({"target_url", "forward_query", "disabled"})


async def create_code(
    session: AsyncSession,
    publisher: EventPublisher,
    links_changed: links.LinkChanges,
    workspace_id: uuid.UUID,
    request: CreateCode,
    public_base_url: str,
    max_render_cost: float = float("inf"),
) -> QRCode:
    if request.style.logo is not None:
        await logos.check_logo(session, workspace_id, request.style.logo)
    code = new_code(workspace_id, request, public_base_url)
    too_costly = render_cost.too_costly(render_cost.estimate(code.content, code.style), max_render_cost)
    if too_costly:
        raise Invalid(too_costly, field="style.scale")
    QRCodeRepository(session).add(code)
    try:
        await session.flush()  # the code's id, for its event
        await webhooks.code_changed(session, publisher, QRCodeCreated, code)
        await session.commit()
    except IntegrityError as exc:
        await session.rollback()
        if code.link is not None:  # the slugs' unique index is the only constraint a create can break
            raise SlugTaken(f"slug {code.link.slug!r} is already taken", field="slug") from exc
        raise
    log.info("qrcode_created", code_id=str(code.id), kind=code.kind)
    if code.link is not None:
        await links_changed.changed(code.link.slug)
    publisher.publish_later(RenderRequested(code_id=code.id))
    return code


def new_code(workspace_id: uuid.UUID, request: CreateCode, public_base_url: str) -> QRCode:
    """The code a create request describes, checked (capacity) but not stored. Batches build theirs here
    too (app/qrcodes/batches/intake.py), so a code is the same whichever way it was made."""
    code = QRCode(
        workspace_id=workspace_id,
        kind=request.kind,
        data=request.data.model_dump(mode="json", exclude_none=True),
        # Only the style fields given: a stored style then reads the same after fields are added.
        style=request.style.model_dump(mode="json", exclude_none=True),
        title=request.title,
        status=Status.PENDING,
    )
    code.tags = request.tags
    if isinstance(request, CreateURLCode) and request.dynamic:
        code.link = links.new_link(
            workspace_id,
            request.data.url,
            request.slug,
            forward_query=request.forward_query,
            expires_at=request.expires_at,
            max_scans=request.max_scans,
            disabled=request.disabled,
        )
        code.content = links.short_url(public_base_url, code.link.slug)
    else:
        code.content = request.data.content()
    _check_fits(code.content, request)
    return code


def _check_fits(content: str, request: CreateCode) -> None:
    # A kind's standard may fix the level and bound the version (EPC: M, 13); a logo has already made
    # the style's level H.
    rules = request.data.symbol
    try:
        symbol.check_fits(content, rules.error or request.style.error, request.style.micro, rules.max_version)
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
    return _split_page(rows, limit, lambda code: Cursor(code.created_at, code.id))


async def list_scans(
    session: AsyncSession, workspace_id: uuid.UUID, code_id: uuid.UUID, *, limit: int, cursor: str | None
) -> tuple[list[Scan], str | None]:
    """A code's stored scans, newest first. A static code has none: it encodes its content itself, so
    scanning it never reaches this server."""
    code = await get_code(session, workspace_id, code_id)
    after = Cursor.decode(cursor) if cursor else None
    if code.link is None:
        return [], None
    rows = await ScanRepository(session).page(code.link.id, limit=limit + 1, after=after)
    return _split_page(rows, limit, lambda scan: Cursor(scan.scanned_at, scan.event_id))


def _split_page(rows: list[T], limit: int, position: Callable[[T], Cursor]) -> tuple[list[T], str | None]:
    """Rows fetched with limit + 1 → the page, and the cursor after it if that one extra row came back."""
    page = rows[:limit]
    return page, position(page[-1]).encode() if len(rows) > limit else None


async def update_code(
    session: AsyncSession,
    publisher: EventPublisher,
    links_changed: links.LinkChanges,
    workspace_id: uuid.UUID,
    code_id: uuid.UUID,
    changes: UpdateCode,
) -> QRCode:
    code = await get_code(session, workspace_id, code_id)
    given = changes.model_fields_set
    link_changes = [name for name in _LINK_FIELDS if name in given]
    for name in link_changes:
        if code.link is None:
            raise Invalid(f"{name} applies only to dynamic codes", field=name)
        value = getattr(changes, name)
        if value is None and name in _NOT_NULL:
            raise Invalid(f"{name} cannot be null", field=name)
        setattr(code.link, name, value)
        if name == "target_url" and "url" in code.data:
            code.data = {**code.data, "url": value}  # what the code's data says is where it leads
    if "title" in given:
        code.title = changes.title
    if "tags" in given:
        code.tags = list(dict.fromkeys(changes.tags or []))
    code.updated_at = utcnow()
    await webhooks.code_changed(session, publisher, QRCodeUpdated, code)
    await session.commit()
    if code.link is not None and link_changes:
        await links_changed.changed(code.link.slug)
    return code


async def delete_code(
    session: AsyncSession,
    publisher: EventPublisher,
    store: ImageStore,
    links_changed: links.LinkChanges,
    workspace_id: uuid.UUID,
    code_id: uuid.UUID,
) -> None:
    """Soft delete: the row (and its slug) stays, so its short link answers 410 Gone, not 404."""
    code = await get_code(session, workspace_id, code_id)
    now = utcnow()
    code.deleted_at = now
    if code.link is not None:
        code.link.deleted_at = now
    await webhooks.code_changed(session, publisher, QRCodeDeleted, code)
    await session.commit()
    if code.link is not None:
        await links_changed.changed(code.link.slug)
    prefix = code_prefix(code.workspace_id, code.id)
    try:
        await to_thread.run_sync(store.delete_prefix, prefix)
    except StoreUnavailable:
        # The code is deleted (committed), so the request succeeds; a worker deletes the images once the
        # store is back.
        log.warning("code_images_delete_deferred", code_id=str(code.id))
        publisher.publish_later(ImagesDeleteRequested(workspace_id=code.workspace_id, code_id=code.id))


def stored_image_key(code: QRCode, fmt: str) -> tuple[str, str]:
    """(storage key, etag) of a ready code's image, or NotReady while it is pending or failed."""
    if code.status == Status.PENDING:
        raise NotReady("the image is still being rendered; retry shortly", retry_after=1)
    if code.status == Status.FAILED:
        raise NotReady(f"rendering failed: {code.error}")
    etag = code.images.get(fmt)
    if etag is None:
        hint = " (a code with a logo has none: use pdf or svg)" if fmt == "eps" and code.style.get("logo") else ""
        raise NotFound(f"this code has no {fmt} image{hint}", field="fmt")
    return image_key(code.workspace_id, code.id, etag, fmt), etag

