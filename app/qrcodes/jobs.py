"""Use cases of the qrcodes context that workers run (sync sessions: Celery runs no coroutines).

Rendering is idempotent: images are written under content-addressed keys before the row says `ready`,
a code that is already ready (a redelivered message) or deleted is left alone, and images no row names
are swept.
"""

from __future__ import annotations

import hashlib
import uuid
from datetime import timedelta

import structlog
from sqlalchemy import exists, select, update
from sqlalchemy.orm import Session, sessionmaker

from app.db import utcnow
from app.messaging import EventPublisher
from app.qrcodes.batches.models import BatchItem
from app.qrcodes.content import KIND_DATA
from app.qrcodes.decoration import LogoSource
from app.qrcodes.events import RenderRequested
from app.qrcodes.logos import load_logo
from app.qrcodes.models import QRCode, Status
from app.qrcodes.readback import LOGO_TOO_LARGE, UNREADABLE_COLOURS, reads_back
from app.qrcodes.rendering import render_images
from app.qrcodes.style import Style
from app.qrcodes.symbol import FREE
from app.storage import ImageStore, code_prefix, image_key
from app.webhooks import sources as webhooks

log = structlog.get_logger(__name__)


def render_code(sessions: sessionmaker[Session], store: ImageStore, code_id: uuid.UUID) -> str:
    """Render a code's images; returns what happened, for logs and tests."""
    with sessions() as session:
        code = session.get(QRCode, code_id)
        if code is None or code.deleted_at is not None:
            return "gone"
        if code.status != Status.PENDING:
            return f"already {code.status}"
        content, style, workspace_id = code.content, Style.from_stored(code.style), code.workspace_id
        kind = KIND_DATA.get(code.kind)
        logo, missing = None, None
        if style.logo is not None:
            try:
                logo = LogoSource(*load_logo(session, store, workspace_id, style.logo))
            except LookupError as exc:
                missing = str(exc)
    if missing is not None:
        return _fail(sessions, code_id, missing)

    # No connection is held while the CPU works.
    try:
        images = render_images(content, style, kind.symbol if kind else FREE, logo)
    except (ValueError, OSError) as exc:
        # The capacity check makes a too-long payload unreachable, and logos were checked on upload (Pillow
        # raises OSError, resvg ValueError, for a file that is not what it was); a code never hangs.
        return _fail(sessions, code_id, str(exc))
    # Colours and logos can make a code that looks right and does not scan: it is read back first.
    if style.read_back and not reads_back(images["png"], content):
        return _fail(sessions, code_id, LOGO_TOO_LARGE if logo else UNREADABLE_COLOURS)

    etags = {}
    for fmt, data in images.items():
        etag = hashlib.sha256(data).hexdigest()[:32]
        store.put(image_key(workspace_id, code_id, etag, fmt), data)
        etags[fmt] = etag
    outcome = _finish(sessions, code_id, status=Status.READY, images=etags)
    # A delivery killed mid-render, or one that lost the race to another, leaves images no row names
    # (PDF and EPS carry their creation time, so a second render's keys differ); the code keeps only its
    # own, and none once it is deleted.
    recorded = etags if outcome == Status.READY else _recorded_images(sessions, code_id)
    keys = {image_key(workspace_id, code_id, etag, fmt) for fmt, etag in recorded.items()}
    store.keep_only(code_prefix(workspace_id, code_id), keys)
    return outcome


def _recorded_images(sessions: sessionmaker[Session], code_id: uuid.UUID) -> dict[str, str]:
    with sessions() as session:
        code = session.get(QRCode, code_id)
        return {} if code is None or code.deleted_at is not None else dict(code.images)


def _fail(sessions: sessionmaker[Session], code_id: uuid.UUID, error: str) -> str:
    log.error("render_failed", code_id=str(code_id), error=error)
    return _finish(sessions, code_id, status=Status.FAILED, error=error)


def _finish(
    sessions: sessionmaker[Session],
    code_id: uuid.UUID,
    *,
    status: Status,
    images: dict[str, str] | None = None,
    error: str | None = None,
) -> str:
    now = utcnow()
    with sessions.begin() as session:
        # Conditional update: only a pending, live code moves on, so two deliveries racing each other
        # settle on one outcome without a lock.
        result = session.execute(
            update(QRCode)
            .where(QRCode.id == code_id, QRCode.status == Status.PENDING, QRCode.deleted_at.is_(None))
            .values(status=status, images=images or {}, error=error, rendered_at=now, updated_at=now)
        )
        if result.rowcount == 1:
            webhooks.render_finished(session, code_id)  # qrcode.ready/failed, batch.completed: the outbox
            return status.value
        code = session.get(QRCode, code_id)
        return "gone" if code is None or code.deleted_at is not None else f"already {code.status}"


def republish_stale_renders(
    sessions: sessionmaker[Session], publisher: EventPublisher, older_than: timedelta, limit: int = 1000
) -> int:
    """Publish renders again for codes pending longer than `older_than`.

    They were committed but their render was never published (the broker was down) or the message was
    lost with the broker's data. Each one's clock restarts, so a code is republished at most once per
    `older_than`, and a long queue is not flooded with duplicates (which would be harmless anyway).
    """
    cutoff = utcnow() - older_than
    with sessions() as session:
        stale = list(
            session.scalars(
                select(QRCode.id)
                .where(
                    QRCode.status == Status.PENDING,
                    QRCode.deleted_at.is_(None),
                    QRCode.render_requested_at < cutoff,
                    # A batch's codes are republished in chunks (batches/jobs.republish_stale_batch_renders).
                    ~exists().where(BatchItem.code_id == QRCode.id),
                )
                .order_by(QRCode.render_requested_at)
                .limit(limit)
            )
        )
    published = [code_id for code_id in stale if publisher.publish(RenderRequested(code_id=code_id))]
    if published:
        with sessions.begin() as session:
            session.execute(
                update(QRCode).where(QRCode.id.in_(published)).values(render_requested_at=utcnow())
            )
        log.info("renders_republished", count=len(published), stale=len(stale))
    return len(published)
