"""Monthly partitions of `scans` on PostgreSQL; SQLite keeps one plain table.

Why: retention drops a whole month's partition (no DELETE of millions of rows, no bloat for vacuum to
chase), and a new scan goes into the indexes of its own month only, so storing one costs about the same
with ten million scans stored as with none (`bench/ingest.py --postgres --preload`).

`scans` is range-partitioned on scanned_at, one partition per UTC month, named scans_yYYYYmMM. PostgreSQL
wants the partition key in every unique key, so the primary key is (id, scanned_at) and the dedup key
(event_id, scanned_at). Exactly-once storage is as true as before: a redelivered event is the same JSON
line of a gateway's spool (app/gateway/redirect.py writes it once, the shipper and the broker only carry
it), so it carries the same occurred_at, stored as scanned_at, along with the same event_id.

No DEFAULT partition. One would catch a row of a month without a partition, but creating that month's
partition later means scanning the default partition under an exclusive lock, and fails outright once it
holds rows of that month. Instead beat creates the coming months ahead (`create_ahead`, daily), and a batch
with a scan of a month that has none (a clock far off, a late scan of a month retention dropped) creates it
first (`ensure_for`), in a short transaction of its own.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import UTC, date, datetime

from sqlalchemy import Connection, text
from sqlalchemy.dialects import postgresql
from sqlalchemy.exc import IntegrityError, ProgrammingError
from sqlalchemy.orm import Session, sessionmaker

from app.kit.db import dialect_of, utcnow

TABLE = "scans"
_NAME = re.compile(r"^scans_y(\d{4})m(\d{2})$")
# DDL on a partition waits for every transaction using `scans`; while it waits, new inserts queue behind
# it. Better to give up and try again later than to hold ingestion up for long.
_LOCK_TIMEOUT = "5s"
LOCK_NOT_AVAILABLE = "55P03"  # the SQLSTATE of a lock_timeout that ran out
NO_PARTITION = "23514"  # an INSERT's row that no partition takes (check_violation)
_CREATED_MEANWHILE = {"42P07", "23505"}  # duplicate_table; unique_violation in pg_type / pg_class

# Per database, the months whose partition this process has seen. Only the current month and later ones
# are kept: retention may drop an earlier one at any time.
_known: dict[str, set[date]] = {}


def month_of(moment: datetime) -> date:
    moment = moment.astimezone(UTC)
    return date(moment.year, moment.month, 1)


def next_month(month: date) -> date:
    return date(month.year + month.month // 12, month.month % 12 + 1, 1)


def months_from(first: date, count: int) -> list[date]:
    months = [first]
    while len(months) < count:
        months.append(next_month(months[-1]))
    return months


def partition_name(month: date) -> str:
    return f"{TABLE}_y{month.year:04d}m{month.month:02d}"


def is_partition_name(name: str) -> bool:
    return _NAME.match(name) is not None


def is_partitioned(connection: Connection | Session) -> bool:
    return dialect_of(connection) is postgresql


def present(connection: Connection | Session) -> list[date]:
    """The months that have a partition, oldest first."""
    names = connection.execute(
        text("SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
             "WHERE i.inhparent = CAST(:table AS regclass)"),
        {"table": TABLE},
    ).scalars()
    return sorted(date(int(m[1]), int(m[2]), 1) for name in names if (m := _NAME.match(name)))


def ensure(connection: Connection | Session, months: Iterable[date]) -> list[date]:
    """Create the partitions of these months that do not exist yet, in the caller's transaction; returns
    the months created."""
    missing = sorted(set(months) - set(present(connection)))
    for month in missing:
        # Bounds at UTC midnight, written out: the session's time zone must not move them.
        connection.execute(text(
            f"CREATE TABLE IF NOT EXISTS {partition_name(month)} PARTITION OF {TABLE} "
            f"FOR VALUES FROM ('{month.isoformat()} 00:00:00+00') TO ('{next_month(month).isoformat()} 00:00:00+00')"
        ))
    return missing


def ensure_for(sessions: sessionmaker[Session], moments: Iterable[datetime]) -> None:
    """Before storing scans of these times: their months' partitions exist (PostgreSQL; SQLite: nothing)."""
    engine = sessions.kw["bind"]
    if engine.dialect.name != "postgresql":
        return
    known = _known.setdefault(engine.url.render_as_string(hide_password=True), set())
    months = {month_of(moment) for moment in moments}
    if months <= known:
        return
    try:
        _ensure_now(sessions, months)
    except (IntegrityError, ProgrammingError) as exc:
        # Another worker created the same month at the same moment (IF NOT EXISTS does not settle a race
        # in PostgreSQL's catalog): it exists now, as the second look sees.
        if getattr(exc.orig, "sqlstate", None) not in _CREATED_MEANWHILE:
            raise
        _ensure_now(sessions, months)
    current = month_of(utcnow())
    known.update(month for month in months if month >= current)


def _ensure_now(sessions: sessionmaker[Session], months: set[date]) -> None:
    with sessions.begin() as session:
        session.execute(text(f"SET LOCAL lock_timeout = '{_LOCK_TIMEOUT}'"))
        ensure(session, months)


def create_ahead(sessions: sessionmaker[Session], months_ahead: int, *, now: datetime | None = None) -> list[date]:
    """Beat's job: the partitions of the current month and the `months_ahead` after it. Idempotent."""
    with sessions.begin() as session:
        if not is_partitioned(session):
            return []
        session.execute(text(f"SET LOCAL lock_timeout = '{_LOCK_TIMEOUT}'"))
        return ensure(session, months_from(month_of(now or utcnow()), months_ahead + 1))


def expired(session: Session, cutoff_day: date) -> list[date]:
    """Months that end on or before `cutoff_day`: every scan in them is older than the cutoff."""
    return [month for month in present(session) if next_month(month) <= cutoff_day]


def drop_if_folded(session: Session, month: date, folded_through: int) -> int | None:
    """Drop the month's partition if every scan in it is folded (id <= folded_through), in the caller's
    transaction; returns how many scans it held, or None if it still holds one to fold.

    The count is taken before the lock (a count of a month of scans under an exclusive lock would hold up
    every reader of `scans` meanwhile); the folded check after it, so a late scan committed into the month
    in between keeps the partition. The lock is the whole table's, taken at once, as DETACH needs it: an
    ingest transaction locks the table before any partition, so it cannot hold the month's partition
    while waiting for us, and neither can deadlock the other."""
    name = partition_name(month)
    rows = session.execute(text(f"SELECT count(*) FROM {name}")).scalar_one()
    session.execute(text(f"SET LOCAL lock_timeout = '{_LOCK_TIMEOUT}'"))
    session.execute(text(f"LOCK TABLE {TABLE} IN ACCESS EXCLUSIVE MODE"))
    newest = session.execute(text(f"SELECT max(id) FROM {name}")).scalar_one()
    if newest is not None and newest > folded_through:
        return None
    session.execute(text(f"ALTER TABLE {TABLE} DETACH PARTITION {name}"))
    session.execute(text(f"DROP TABLE {name}"))
    return rows
