from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, ForeignKey, Index, String, Text, Uuid
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.kit.db import Base, UTCDateTime, new_id, utcnow
from app.links.models import Link


class Status(StrEnum):
    PENDING = "pending"
    READY = "ready"
    FAILED = "failed"


class QRCode(Base):
    __tablename__ = "qrcodes"
    __table_args__ = (
        # Cursor pagination, newest first, within a workspace.
        Index("ix_qrcodes_workspace_created", "workspace_id", "created_at", "id"),
        # The republisher's scan for stale pending renders.
        Index("ix_qrcodes_status_render_requested", "status", "render_requested_at"),
        # The republisher's look at claimed pending renders (app/qrcodes/claims.py).
        Index("ix_qrcodes_status_render_claimed", "status", "render_claimed_at"),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=new_id)
    workspace_id: Mapped[uuid.UUID] = mapped_column(Uuid, ForeignKey("workspaces.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(16))
    data: Mapped[dict[str, Any]] = mapped_column(JSON)
    # The exact string in the symbol: a decoder reads back this and nothing else.
    content: Mapped[str] = mapped_column(Text)
    style: Mapped[dict[str, Any]] = mapped_column(JSON)
    title: Mapped[str | None] = mapped_column(String(200))
    link_id: Mapped[uuid.UUID | None] = mapped_column(Uuid, ForeignKey("links.id"), unique=True)
    status: Mapped[Status] = mapped_column(String(10), default=Status.PENDING)
    error: Mapped[str | None] = mapped_column(Text)
    # {format: etag}; the etag is the image's SHA-256, and names its file in storage.
    images: Mapped[dict[str, str]] = mapped_column(JSON, default=dict)
    render_requested_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    rendered_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Who is rendering it ("host:pid" of the pool process) and since when, and how many renders started:
    # a claim whose process is gone tells a lost render from a queued one, and the count bounds how often
    # a code that kills its process is tried (app/qrcodes/claims.py).
    render_claimed_by: Mapped[str | None] = mapped_column(String(255))
    render_claimed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    render_attempts: Mapped[int] = mapped_column(default=0, server_default="0")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)
    deleted_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    link: Mapped[Link | None] = relationship(lazy="joined")
    tag_rows: Mapped[list[QRCodeTag]] = relationship(
        lazy="selectin", cascade="all, delete-orphan", order_by="QRCodeTag.position"
    )

    @property
    def tags(self) -> list[str]:
        return [row.tag for row in self.tag_rows]

    @tags.setter
    def tags(self, tags: list[str]) -> None:
        self.tag_rows = [QRCodeTag(tag=tag, position=i) for i, tag in enumerate(tags)]


class QRCodeTag(Base):
    """Tags in their own table so `?tag=` is an indexed lookup on SQLite and PostgreSQL alike."""

    __tablename__ = "qrcode_tags"
    __table_args__ = (Index("ix_qrcode_tags_tag", "tag", "code_id"),)

    code_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("qrcodes.id", ondelete="CASCADE"), primary_key=True
    )
    tag: Mapped[str] = mapped_column(String(64), primary_key=True)
    position: Mapped[int] = mapped_column(default=0)
