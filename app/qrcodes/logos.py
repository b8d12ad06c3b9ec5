"""Logos: images a workspace uploads once and places in the centre of its codes (`style.logo`).

The row says whose logo it is and what it is; the file lives in the image store under the workspace's
prefix. Upload order: the file, then the row; a row therefore never names a missing file, and a failed
commit takes its file away again. Logos are immutable, and there is no delete: a pending code may still
need its logo, and a rendered one keeps its own images.
"""

from __future__ import annotations

import hashlib
import uuid
from contextlib import suppress
from datetime import datetime

import structlog
from anyio import CancelScope, to_thread
from pydantic import BaseModel
from sqlalchemy import ForeignKey, Integer, String, Uuid, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, Session, mapped_column

from app.kit.db import Base, UTCDateTime, new_id, utcnow
from app.kit.errors import Invalid, NotFound, TooLarge, UnsupportedMediaType
from app.kit.storage import ImageStore, StoreUnavailable
from app.qrcodes.logo_files import MAX_LOGO_BYTES, MEDIA_TYPES, LogoRefused, inspect

log = structlog.get_logger(__name__)


class Logo(Base):
    __tablename__ = "logos"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=new_id)
    workspace_id: Mapped[uuid.UUID] = mapped_column(Uuid, ForeignKey("workspaces.id", ondelete="CASCADE"), index=True)
    media_type: Mapped[str] = mapped_column(String(32))
    width: Mapped[int] = mapped_column(Integer)
    height: Mapped[int] = mapped_column(Integer)
    size_bytes: Mapped[int] = mapped_column(Integer)
    sha256: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class LogoOut(BaseModel):
    id: uuid.UUID
    media_type: str
    width: int
    height: int
    created_at: datetime

    @classmethod
    def of(cls, logo: Logo) -> LogoOut:
        return cls(
            id=logo.id, media_type=logo.media_type, width=logo.width, height=logo.height, created_at=logo.created_at
        )


def logo_prefix(workspace_id: object, logo_id: object) -> str:
    # Beside the workspace's codes ({workspace}/{code id}/…): "logos" is never a code's id.
    return f"{workspace_id}/logos/{logo_id}"


def logo_key(workspace_id: object, logo_id: object, media_type: str) -> str:
    return f"{logo_prefix(workspace_id, logo_id)}/logo.{MEDIA_TYPES[media_type]}"


def media_type_of(content_type: str | None) -> str:
    """The upload's media type from its Content-Type (parameters such as charset ignored)."""
    media_type = (content_type or "").split(";", 1)[0].strip().lower()
    if media_type not in MEDIA_TYPES:
        raise UnsupportedMediaType(
            f"Content-Type must be one of {', '.join(MEDIA_TYPES)}, not {media_type or 'absent'}",
            field="Content-Type",
        )
    return media_type


async def upload_logo(
    session: AsyncSession, store: ImageStore, workspace_id: uuid.UUID, content_type: str | None, data: bytes
) -> Logo:
    media_type = media_type_of(content_type)
    if len(data) > MAX_LOGO_BYTES:
        raise TooLarge(f"the logo is {len(data)} bytes; the limit is {MAX_LOGO_BYTES}", field="body")
    try:
        # Pillow and resvg do real work (decoding, rendering): off the event loop.
        image = await to_thread.run_sync(inspect, media_type, data)
    except LogoRefused as exc:
        raise Invalid(str(exc), field="body") from exc
    logo = Logo(
        id=new_id(),
        workspace_id=workspace_id,
        media_type=media_type,
        width=image.width,
        height=image.height,
        size_bytes=len(data),
        sha256=hashlib.sha256(data).hexdigest(),
        created_at=utcnow(),
    )
    # The store may be across the network (S3): off the event loop; one that is down is a 503.
    await to_thread.run_sync(store.put, logo_key(workspace_id, logo.id, media_type), data)
    session.add(logo)
    try:
        await session.commit()
    except BaseException:
        # Shielded: a cancelled request must still remove the file no row names; a store down for it
        # leaves the file (the error the client gets is the commit's).
        with CancelScope(shield=True), suppress(StoreUnavailable):
            await to_thread.run_sync(store.delete_prefix, logo_prefix(workspace_id, logo.id))
        raise
    log.info("logo_uploaded", logo_id=str(logo.id), media_type=media_type, size_bytes=len(data))
    return logo


async def get_logo(session: AsyncSession, workspace_id: uuid.UUID, logo_id: uuid.UUID) -> Logo:
    logo = await session.scalar(select(Logo).where(Logo.id == logo_id, Logo.workspace_id == workspace_id))
    if logo is None:
        # Another workspace's logo is not the caller's business either: 404, as for codes.
        raise NotFound(f"no logo with id {logo_id}", field="id")
    return logo


async def check_logo(session: AsyncSession, workspace_id: uuid.UUID, logo_id: uuid.UUID) -> None:
    """A code may use its own workspace's logos only; any other id is a bad field of the request."""
    found = await session.scalar(select(Logo.id).where(Logo.id == logo_id, Logo.workspace_id == workspace_id))
    if found is None:
        raise Invalid(f"no logo with id {logo_id} in this workspace (POST /v1/logos uploads one)", field="style.logo")


def load_logo(session: Session, store: ImageStore, workspace_id: uuid.UUID, logo_id: uuid.UUID) -> tuple[str, bytes]:
    """The worker's read: (media type, file), or LookupError saying what is missing."""
    logo = session.get(Logo, logo_id)
    if logo is None or logo.workspace_id != workspace_id:
        raise LookupError(f"the logo {logo_id} does not exist in this code's workspace")
    data = store.get(logo_key(workspace_id, logo_id, logo.media_type))
    if data is None:
        raise LookupError(f"the logo {logo_id} is missing from storage")
    return logo.media_type, data
