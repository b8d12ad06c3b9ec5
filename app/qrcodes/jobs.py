"""Use cases of the qrcodes context that workers run (sync sessions: Celery runs no coroutines).

Rendering is idempotent: images are written under content-addressed keys before the row says `ready`,
a code that is already ready (a redelivered message) or deleted is left alone, and images no row names
are swept. Each render claims its code and counts the attempt (claims.py), so a render that dies or runs
out of time is tried a bounded number of times, and a lost one is found again (recovery.py).
"""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass

import structlog
from billiard.exceptions import SoftTimeLimitExceeded
from sqlalchemy import update
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from app.kit.db import utcnow
from app.kit.messaging import EventPublisher
from app.kit.storage import ImageStore, StoreUnavailable, code_prefix, image_key
from app.qrcodes import claims
from app.qrcodes.content import KIND_DATA
from app.qrcodes.decoration import LogoSource
from app.qrcodes.events import ImagesDeleteRequested, RenderRequested
from app.qrcodes.logos import load_logo
from app.qrcodes.models import QRCode, Status
from app.qrcodes.readback import LOGO_TOO_LARGE, UNREADABLE_COLOURS, reads_back
from app.qrcodes.rendering import render_images
from app.qrcodes.style import Style
from app.qrcodes.symbol import FREE
from app.webhooks import sources as webhooks

log = structlog.get_logger(__name__)

# render_code's outcome for an attempt that failed and may be tried again: the caller sends it back.
RETRY = "retry"
# The database being away is waited out by the task's retries (workers/retries.py), not counted here;
# so is the image store (StoreUnavailable), whose attempt is given back.
_DATABASE_DOWN = (OperationalError, InterfaceError)


@dataclass(frozen=True)
class Attempts:
    """How many renders of a code may start (settings.render_max_attempts)."""

    max: int = 3


DEFAULT_ATTEMPTS = Attempts()


def render_code(
    sessions: sessionmaker[Session], store: ImageStore, code_id: uuid.UUID, attempts: Attempts = DEFAULT_ATTEMPTS
) -> str:
    """Render a code's images; returns what happened, for logs and tests (RETRY: send it again)."""
    try:
        attempt = claims.start_attempt(sessions, code_id, attempts.max)
    except SoftTimeLimitExceeded:
        return RETRY  # out of time before it started (a task's first moments on a loaded host): not counted
    if attempt is None:
        return _not_started(sessions, code_id, attempts.max)
    try:
        return _render_claimed(sessions, store, code_id)
    except _DATABASE_DOWN:
        raise
    except StoreUnavailable:
        # Not the code's fault: no image was recorded, the attempt is given back, and the task waits the
        # store out. The code stays pending: never ready without its images.
        claims.give_back(sessions, code_id)
        raise
    except Exception as exc:  # SoftTimeLimitExceeded included: any failure counts, and is bounded
        cause = "exceeded its time budget" if isinstance(exc, SoftTimeLimitExceeded) else f"raised {exc!r}"[:300]
        log.warning("render_attempt_failed", code_id=str(code_id), attempt=attempt, cause=cause)
        if attempt >= attempts.max:
            return _fail(sessions, code_id, f"rendering did not finish in {attempt} attempts; the last one {cause}")
        claims.release(sessions, [code_id])
        return RETRY


def render_requested(
    sessions: sessionmaker[Session],
    store: ImageStore,
    publisher: EventPublisher,
    code_id: uuid.UUID,
    attempts: Attempts,
) -> str:
    """A single code's render (qrcodes.render): an attempt that failed goes back to the broker at once."""
    outcome = render_code(sessions, store, code_id, attempts)
    if outcome == RETRY and not publisher.publish(RenderRequested(code_id=code_id)):
        return "left_for_republisher"  # unclaimed, pending and in no message: recovery.py finds it
    return outcome


def delete_images(store: ImageStore, requested: ImagesDeleteRequested) -> None:
    """A deleted code's images, left when the store was down at its deletion (StoreUnavailable: retried)."""
    store.delete_prefix(code_prefix(requested.workspace_id, requested.code_id))


def _not_started(sessions: sessionmaker[Session], code_id: uuid.UUID, max_attempts: int) -> str:
    with sessions() as session:
        code = session.get(QRCode, code_id)
        if code is None or code.deleted_at is not None:
            return "gone"
        if code.status != Status.PENDING:
            return f"already {code.status}"
    # Every attempt started and none ended: an attempt that raised says so itself, so the last one's
    # process died with it.
    return _fail(
        sessions,
        code_id,
        f"rendering did not finish in {max_attempts} attempts; the last one's process was killed "
        "(past the hard time limit, or out of memory)",
    )


def _render_claimed(sessions: sessionmaker[Session], store: ImageStore, code_id: uuid.UUID) -> str:
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
        # raises OSError, resvg ValueError, for a file that is not what it was): no attempt would do better.
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
    try:
        store.keep_only(code_prefix(workspace_id, code_id), keys)
    except StoreUnavailable:  # the code is settled; what the sweep missed only takes space
        log.warning("image_sweep_skipped", code_id=str(code_id))
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
            .values(
                status=status,
                images=images or {},
                error=error,
                rendered_at=now,
                updated_at=now,
                render_claimed_by=None,
                render_claimed_at=None,
            )
        )
        if result.rowcount == 1:
            webhooks.render_finished(session, code_id)  # qrcode.ready/failed, batch.completed: the outbox
            return status.value
        code = session.get(QRCode, code_id)
        return "gone" if code is None or code.deleted_at is not None else f"already {code.status}"
