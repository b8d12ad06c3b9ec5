"""Buckets shaped for reading, and the rollup's own state.

A bucket counts one short link's scans in one UTC hour (analytics_hourly) or UTC day (analytics_daily), for
one dimension value: dimension `all` (value '') is every scan; `device`, `os`, `browser`, `country` and
`referrer` (the referrer's host) split them by that value, '' standing for unknown, and `class` by who
scanned (person, bot, unknown: app/scans/agents.py). Each holds
- scans: people's scans; bots: the others, bots' and unknown agents' (stored, never counted as scans);
- visitors: distinct visitor hashes of people's scans, exact.
Hourly buckets also hold first_seen and last_seen: how many of the day's visitors scanned for the first
(last) time that day in this hour. A visitor scanned in hours [0, h] of a UTC day iff their first scan
that day falls there, so sums of first_seen (last_seen) give exact distinct counts over any stretch of
hours that starts (ends) at a UTC midnight. That is what makes unique visitors exact for local days in a
time zone and for ranges that do not start or end at UTC midnight (app/analytics/service.py).
"""

from __future__ import annotations

import uuid
from datetime import date, datetime

from sqlalchemy import BigInteger, Date, ForeignKey, Integer, PrimaryKeyConstraint, String, Uuid
from sqlalchemy.orm import Mapped, mapped_column

from app.analytics.buckets import DIMENSION_NAMES
from app.kit.db import Base, UTCDateTime, utcnow

# 'all', then the dimensions breakdowns split by (the Scan column of each: app/analytics/buckets.py).
DIMENSIONS: tuple[str, ...] = DIMENSION_NAMES
BREAKDOWN_DIMENSIONS: tuple[str, ...] = DIMENSIONS[1:]


class _Bucket:
    dimension: Mapped[str] = mapped_column(String(8), primary_key=True)
    start: Mapped[datetime] = mapped_column(UTCDateTime, primary_key=True)
    # Buckets go with their link (a workspace removed with its links).
    link_id: Mapped[uuid.UUID] = mapped_column(Uuid, ForeignKey("links.id", ondelete="CASCADE"), primary_key=True)
    value: Mapped[str] = mapped_column(String(255), primary_key=True)
    scans: Mapped[int] = mapped_column(Integer)
    bots: Mapped[int] = mapped_column(Integer)
    visitors: Mapped[int] = mapped_column(Integer)


class HourlyBucket(_Bucket, Base):
    """Every rollup adds to these: time before link in the key, so what a rollup writes (the current hour
    of every scanned code) sits together, a few pages per dimension. Link-first, a rollup over a big table
    wrote about ten times the pages of the same rollup over an empty one. Reads name the hours they need
    (`start IN (...)`): an hour is one seek."""

    __tablename__ = "analytics_hourly"
    __table_args__ = (PrimaryKeyConstraint("dimension", "start", "link_id", "value"),)

    first_seen: Mapped[int] = mapped_column(Integer)
    last_seen: Mapped[int] = mapped_column(Integer)


class DailyBucket(_Bucket, Base):
    """Written once per UTC day, when it is over (`closed`: app/analytics/rollup.py), from that day's hourly
    buckets, and after that only by late scans. Link first in the key: a code's year of days is one range
    of the index, for the series and the breakdowns."""

    __tablename__ = "analytics_daily"
    __table_args__ = (PrimaryKeyConstraint("link_id", "dimension", "start", "value"),)


class RollupState(Base):
    """One row ('scans'): how far the rollup has folded, and what retention has removed.

    The rollup locks this row for each transaction it runs (app/analytics/rollup.py), so two rollups —
    two beats, a beat and `qrflow rollup`, a manual trigger — take turns.
    """

    __tablename__ = "analytics_state"

    name: Mapped[str] = mapped_column(String(32), primary_key=True)
    # Every scan with id <= last_scan_id is in the buckets, and no other.
    last_scan_id: Mapped[int] = mapped_column(BigInteger, default=0)
    # Every scan stored before this moment is in the buckets (null: no rollup yet).
    as_of: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Retention has deleted raw scans of UTC days before this one (null: none deleted). Late scans of those
    # days are added to their buckets as they come: their visitors may count twice (docs/api.md, Analytics).
    purged_before: Mapped[date | None] = mapped_column(Date)
    # Days before this one are closed: their daily buckets are complete (later days: hourly buckets only).
    closed_before: Mapped[date | None] = mapped_column(Date)
    # Retention walks ids upwards: every scan with id <= purge_cursor has been deleted.
    purge_cursor: Mapped[int] = mapped_column(BigInteger, default=0)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


class VisitorScan(Base):
    """Which folded non-bot scans each visitor hash made on a UTC day: how the rollup finds the earlier
    scans of the visitors in a new batch (their hash is salted per UTC day, so a visitor's rows are one
    person's scans of one day: a handful). That keeps a rollup's cost in proportion to the scans it adds,
    even on a link scanned a million times today (app/analytics/buckets.py).

    A table of the rollup's rather than an index on scans.visitor: a hash is random, and an index kept in
    random order cost ingestion a page written per stored scan once it outgrew the cache, more the larger
    the table (SQLite, 200,000 scans: 18 µs per scan at first and 45 at the end with it, ~15 throughout
    without it; bench/results/ingest.md).
    Here rows are written by the rollup, a chunk at a time in key order, off the scans' path, and only for
    days whose visitor salt still exists: once a salt is gone no scan can carry that day's hashes again
    (app/scans/ingest.py), so the table holds a day or two of scans however many the scans table keeps."""

    __tablename__ = "visitor_scans"

    day: Mapped[date] = mapped_column(Date, primary_key=True)
    visitor: Mapped[str] = mapped_column(String(32), primary_key=True)
    scan_id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
