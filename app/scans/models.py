"""Stored scans (append-only, one row per ScanRecorded event) and the daily salts of visitor hashes."""

from __future__ import annotations

import uuid
from datetime import date, datetime

from sqlalchemy import (
    BigInteger,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
    Uuid,
    and_,
    case,
)
from sqlalchemy.orm import Mapped, mapped_column

from app.kit.db import Base, UTCDateTime, utcnow

# An auto-incrementing 64-bit key on PostgreSQL; SQLite only auto-increments INTEGER PRIMARY KEY.
_SEQUENCE = BigInteger().with_variant(Integer, "sqlite")


class Scan(Base):
    """On PostgreSQL partitioned by month of scanned_at, and keyed (id, scanned_at) there: the migrations
    make it so, not this class (app/scans/partitions.py)."""

    __tablename__ = "scans"
    __table_args__ = (
        # A code's scans, newest first (GET /v1/qrcodes/{id}/scans pages by scanned_at, then event_id).
        Index("ix_scans_link_scanned", "link_id", "scanned_at", "event_id"),
        # A redelivered batch inserts nothing twice: ON CONFLICT (event_id, scanned_at) DO NOTHING. The
        # scan's time is in the key because PostgreSQL's partitions want it in every unique key; a
        # redelivered event carries its time as well as its id (app/scans/partitions.py).
        UniqueConstraint("event_id", "scanned_at", name="uq_scans_event_id_scanned_at"),
    )

    # Insertion order: the rollups' watermark.
    id: Mapped[int] = mapped_column(_SEQUENCE, primary_key=True, autoincrement=True)
    # The event's id (see the unique key above).
    event_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    link_id: Mapped[uuid.UUID] = mapped_column(Uuid, ForeignKey("links.id", ondelete="CASCADE"))
    # When the person scanned (the gateway's clock), not when the row was written.
    scanned_at: Mapped[datetime] = mapped_column(UTCDateTime)
    stored_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    user_agent: Mapped[str | None] = mapped_column(Text)
    referrer: Mapped[str | None] = mapped_column(Text)
    referrer_host: Mapped[str | None] = mapped_column(String(255))
    browser: Mapped[str | None] = mapped_column(String(64))
    os: Mapped[str | None] = mapped_column(String(64))
    device: Mapped[str] = mapped_column(String(8))
    is_bot: Mapped[bool]
    # person, bot or unknown (app/scans/agents.py); only a person's scan counts. is_bot wins: a row written
    # without a class (before it existed) is a bot's if it says so (COUNTED, CLASS below).
    agent_class: Mapped[str] = mapped_column(String(8), server_default="person")
    country: Mapped[str | None] = mapped_column(String(2))
    # Same person, same day → same hash; the raw IP is never stored (see app/scans/ingest.py).
    visitor: Mapped[str] = mapped_column(String(32))
    ip_anonymized: Mapped[str | None] = mapped_column(String(64))


class VisitorSalt(Base):
    """One random salt per UTC day. Deleted once the day is over and late scans are unlikely, after which
    no visitor hash of that day can be linked to an IP again, not even by whoever holds the database."""

    __tablename__ = "visitor_salts"

    day: Mapped[date] = mapped_column(primary_key=True)
    salt: Mapped[bytes] = mapped_column(LargeBinary(32))


# What the counts go by: a scan is a person's only if neither column says otherwise.
COUNTED = and_(Scan.is_bot.is_(False), Scan.agent_class == "person")
CLASS = case((Scan.is_bot, "bot"), else_=Scan.agent_class)
