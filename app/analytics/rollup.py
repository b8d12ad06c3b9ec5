"""Rollups, as the analytics workers (and `qrflow rollup`) run them: fold stored scans into buckets.

Incremental and restartable. The watermark (analytics_state.last_scan_id) says which scans the buckets
count: exactly those with id <= it. A run folds the scans above it in chunks of `chunk` ids, each chunk
in one transaction that also moves the watermark, so a run that dies leaves the buckets and the watermark
consistent and the next run carries on. How a chunk changes the buckets is app/analytics/buckets.py: only
additive upserts, and nothing recounted, so a run costs in proportion to the scans it folds. Each chunk
also records its visitors in visitor_scans, where later chunks find their earlier scans of the same day
(app/analytics/models.py says why a table of the rollup's and not an index on the scans).

Hourly buckets take every fold. A UTC day's daily buckets are written once, when the day is over
(`close_days`: one INSERT ... SELECT from that day's hourly buckets), and after that only by late scans of
that day, which fold into both. Hourly rows are keyed time first (what a rollup touches sits together) and
daily rows link first (what a read of a code's year needs sits together): app/analytics/models.py.

Safe to run twice, or two at once: every transaction first locks the state row (SELECT ... FOR UPDATE on
PostgreSQL; on SQLite the INSERT before it takes the database's write lock), then reads the watermark,
so two rollups take turns chunk by chunk and no scan is folded twice. Which ids are safe to fold at all is
app/scans/watermark.py (ids commit out of order on PostgreSQL).

Retention (QRFLOW_SCAN_RETENTION_DAYS): `purge_expired_scans` deletes raw scans of UTC days older than that,
but only scans already folded. Buckets stay. On PostgreSQL it drops whole monthly partitions instead of
deleting rows (app/scans/partitions.py): a month goes once its last day is past retention.
"""

from __future__ import annotations

import functools
import time as clock
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import structlog
from sqlalchemy import Column, delete, func, insert, literal, not_, select
from sqlalchemy.dialects import postgresql
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

from app.analytics import sqlite_turns as turns
from app.analytics.buckets import DIMENSION_NAMES, EPOCH, Deltas, ScanFacts, fold
from app.analytics.models import DailyBucket, HourlyBucket, RollupState, VisitorScan
from app.kit.db import UTCDateTime, dialect_of, utcnow
from app.scans import partitions
from app.scans.models import CLASS, COUNTED, Scan, VisitorSalt
from app.scans.watermark import committed_max_id

log = structlog.get_logger(__name__)

STATE = "scans"
# New scans per transaction. On PostgreSQL a chunk locks only its buckets' rows, and bigger chunks write
# each bucket fewer times. SQLite's one write lock wants far smaller ones: app/analytics/sqlite_turns.py.
CHUNK = 10_000
# Visitors per lookup of earlier scans (IN lists well under every backend's parameter limit).
_LOOKUP_BATCH = 500
# Rows per retention DELETE: bounded transactions, so ingestion is never held up for long.
_PURGE_BATCH = 10_000

_COLUMNS = (
    Scan.link_id, Scan.scanned_at, Scan.device, Scan.os, Scan.browser, Scan.country,
    # Only a person's scan counts: bots' and unknown agents' go to the buckets' `bots` (ScanFacts.is_bot).
    Scan.referrer_host, not_(COUNTED).label("is_bot"), Scan.visitor, CLASS.label("agent_class"),
)


@dataclass
class RollupReport:
    folded: int = 0  # scans folded into buckets by this run
    watermark: int = 0  # every scan with id <= this is in the buckets
    as_of: datetime | None = None  # every scan stored before this is in the buckets
    caught_up: bool = True  # false: stopped at its time budget with scans left; the next run continues
    purged: int = 0  # raw scans deleted by retention
    closed: int = 0  # UTC days whose daily buckets were written
    transactions: int = 0
    longest_transaction_s: float = 0.0  # the longest a fold held its transaction (SQLite: the write lock)

    def to_dict(self) -> dict[str, Any]:
        result = asdict(self)
        result["as_of"] = self.as_of.isoformat() if self.as_of else None
        return result


def rollup(
    sessions: sessionmaker[Session],
    *,
    retention_days: int = 0,
    chunk: int | None = None,
    budget_seconds: float | None = None,
    now: Callable[[], datetime] = utcnow,
) -> RollupReport:
    """Fold every settled scan above the watermark; then apply retention. With a budget, stops after the
    chunk that passes it (a Celery task must end within its time limit; the next run continues).
    `chunk`: scans per transaction; by default CHUNK, or on SQLite as app/analytics/sqlite_turns.py says."""
    started = clock.monotonic()
    report = RollupReport()
    adapt = chunk is None and turns.is_sqlite(sessions)
    chunk = chunk or (turns.SQLITE_FIRST_CHUNK if adapt else CHUNK)
    while True:
        # Taken before the ceiling is read: any scan committed before this moment is below the ceiling.
        read_at = now()
        ceiling = committed_max_id(sessions)
        with sessions.begin() as session:
            state = _locked_state(session)
            locked = clock.monotonic()
            low = state.last_scan_id
            high = min(ceiling, low + chunk)
            if high > low:
                report.folded += _fold(session, low, high, state.closed_before)
                state.last_scan_id = high
            report.caught_up = high >= ceiling
            if report.caught_up:
                # Another rollup may have gone further meanwhile (and read its ceiling later): keep its.
                state.as_of = max(state.as_of, read_at) if state.as_of else read_at
            report.watermark, report.as_of = state.last_scan_id, state.as_of
        held = clock.monotonic() - locked
        report.transactions += 1
        report.longest_transaction_s = round(max(report.longest_transaction_s, held), 3)
        if report.caught_up or (budget_seconds is not None and clock.monotonic() - started > budget_seconds):
            break
        turns.give_way(session, held)
        if adapt:
            chunk = turns.next_chunk(chunk, held)
    def left() -> float | None:  # what remains of the budget, at least a second for each step after the fold
        return None if budget_seconds is None else max(budget_seconds - (clock.monotonic() - started), 1.0)

    report.closed = close_days(sessions, now=now, budget_seconds=left())
    if report.caught_up:  # else scans of a forgettable day may still wait to be folded
        forget_past_visitors(sessions)
    if retention_days > 0:
        report.purged = purge_expired_scans(sessions, retention_days, now=now, budget_seconds=left())
    log.info("analytics_rollup", **report.to_dict())
    return report


def rebuild(
    sessions: sessionmaker[Session],
    since: date | None = None,
    *,
    chunk: int | None = None,
    now: Callable[[], datetime] = utcnow,
) -> tuple[date | None, RollupReport]:
    """Recount every bucket from UTC day `since` (None: all) from the raw scans, then roll up as usual.

    For when the buckets' definition changed or are suspect. One transaction, so readers see the old
    numbers until the new ones are all there; on SQLite it holds the write lock throughout (scan ingestion
    waits, and retries if it waits too long). Days whose raw scans retention has deleted are left as they
    are: `since` is moved up to the first complete day, which is returned.
    """
    fold_chunk = chunk or (turns.SQLITE_CHUNK if turns.is_sqlite(sessions) else CHUNK)
    with sessions.begin() as session:
        since = recount(session, since, chunk=fold_chunk)
    return since, rollup(sessions, chunk=chunk, now=now)


def lock(session: Session) -> None:
    """Take the rollup's lock for the rest of the session's transaction: no rollup folds meanwhile."""
    _locked_state(session)


def recount(session: Session, since: date | None, *, chunk: int = CHUNK) -> date | None:
    """rebuild's recount, inside the caller's transaction (`qrflow scans reclassify` changes scans in the
    same one); returns the first day recounted (None: all)."""
    state = _locked_state(session)
    if state.purged_before is not None and (since is None or since < state.purged_before):
        log.warning("analytics_rebuild_clamped", asked=str(since), since=str(state.purged_before))
        since = state.purged_before
    start = datetime.combine(since, time(), UTC) if since else None
    for table in (HourlyBucket, DailyBucket):
        removal = delete(table)
        if start is not None:
            removal = removal.where(table.start >= start)
        session.execute(removal)
    # The refold records these days' visitors again.
    session.execute(delete(VisitorScan).where(VisitorScan.day >= since) if since else delete(VisitorScan))
    low, watermark = 0, state.last_scan_id
    while low < watermark:
        high = min(low + chunk, watermark)
        _fold(session, low, high, state.closed_before, since=start)
        low = high
    log.info("analytics_rebuilt", since=str(since), watermark=watermark)
    return since


def close_days(
    sessions: sessionmaker[Session], *, now: Callable[[], datetime] = utcnow, budget_seconds: float | None = None
) -> int:
    """Write the daily buckets of every UTC day before today not yet closed, a day per transaction, from its
    hourly buckets (visitors: the sum of first_seen, exact). Days without scans are skipped in one step."""
    today = now().astimezone(UTC).date()
    started = clock.monotonic()
    closed = 0
    while True:
        with sessions.begin() as session:
            state = _locked_state(session)
            h = HourlyBucket
            query = select(func.min(h.start)).where(h.dimension == "all")
            if state.closed_before is not None:
                query = query.where(h.start >= datetime.combine(state.closed_before, time(), UTC))
            first = session.scalar(query)
            day = first.astimezone(UTC).date() if first is not None else None
            if day is None or day >= today:
                if state.closed_before is None or state.closed_before < today:
                    state.closed_before = today  # the days between had no scans: nothing to write
                break
            _close(session, day)
            state.closed_before = day + timedelta(days=1)
            closed += 1
        if budget_seconds is not None and clock.monotonic() - started > budget_seconds:
            break
    if closed:
        log.info("analytics_days_closed", days=closed)
    return closed


def _close(session: Session, day: date) -> None:
    h = HourlyBucket
    start = datetime.combine(day, time(), UTC)
    totals = (
        select(h.link_id, h.dimension, h.value, literal(start, UTCDateTime()), func.sum(h.scans), func.sum(h.bots),
               func.sum(h.first_seen))
        .where(h.dimension.in_(DIMENSION_NAMES), h.start >= start, h.start < start + timedelta(days=1))
        .group_by(h.link_id, h.dimension, h.value)
    )
    columns = ["link_id", "dimension", "value", "start", "scans", "bots", "visitors"]
    session.execute(insert(DailyBucket).from_select(columns, totals))


def purge_expired_scans(
    sessions: sessionmaker[Session],
    retention_days: int,
    *,
    now: Callable[[], datetime] = utcnow,
    budget_seconds: float | None = None,
) -> int:
    """Delete raw scans of UTC days more than `retention_days` before today, if already folded. On
    PostgreSQL by whole months (`_drop_expired_months`); on SQLite row by row:

    Walks ids upwards from where the last purge stopped, and stops at the first scan it keeps: ids follow
    time closely (a scan is stored a moment after it happens), so it stops where the still-kept days begin.
    A late scan (stored days after it happened) is deleted once the walk passes it, by then already folded.
    The newest folded scan is always kept: SQLite gives a new row max(id) + 1, and deleting the highest id
    would hand it out again, below the watermark, where the rollup would never see it.
    """
    if retention_days <= 0:
        return 0
    cutoff_day = now().date() - timedelta(days=retention_days)
    cutoff = datetime.combine(cutoff_day, time(), UTC)
    started = clock.monotonic()
    if not turns.is_sqlite(sessions):
        return _drop_expired_months(sessions, cutoff_day, started, budget_seconds)
    purged = 0
    while True:
        with sessions.begin() as session:
            state = _locked_state(session)
            locked = clock.monotonic()
            low = state.purge_cursor
            high = min(low + _PURGE_BATCH, state.last_scan_id - 1)
            if high <= low:
                break
            deleted = session.execute(
                delete(Scan).where(Scan.id > low, Scan.id <= high, Scan.scanned_at < cutoff)
            ).rowcount
            kept = session.scalar(select(func.min(Scan.id)).where(Scan.id > low, Scan.id <= high))
            state.purge_cursor = high if kept is None else kept - 1
            if deleted:
                state.purged_before = max(state.purged_before or cutoff_day, cutoff_day)
            purged += deleted
        if kept is not None or (budget_seconds is not None and clock.monotonic() - started > budget_seconds):
            break
        turns.give_way(session, clock.monotonic() - locked)
    if purged:
        log.info("scans_purged", purged=purged, before=str(cutoff_day))
    return purged


def _drop_expired_months(
    sessions: sessionmaker[Session], cutoff_day: date, started: float, budget_seconds: float | None
) -> int:
    """Drop the partitions of months that end on or before the cutoff, oldest first, a month per transaction,
    each only once all its scans are folded (a month with a late scan still to fold waits for the next run).
    The state row is locked first, as in every rollup transaction, so the watermark cannot move meanwhile."""
    with sessions() as session:
        months = partitions.expired(session, cutoff_day)
    purged = 0
    for month in months:
        try:
            with sessions.begin() as session:
                state = _locked_state(session)
                dropped = partitions.drop_if_folded(session, month, state.last_scan_id)
                if dropped is None:
                    break
                end = partitions.next_month(month)
                state.purged_before = max(state.purged_before or end, end)
        except OperationalError as exc:
            if getattr(exc.orig, "sqlstate", None) != partitions.LOCK_NOT_AVAILABLE:
                raise
            log.warning("scans_partition_drop_postponed", month=str(month), reason="lock_timeout")
            break
        purged += dropped
        log.info("scans_partition_dropped", month=str(month), scans=dropped)
        if budget_seconds is not None and clock.monotonic() - started > budget_seconds:
            break
    return purged


def read_state(sessions: sessionmaker[Session]) -> RollupState | None:
    with sessions() as session:
        return session.get(RollupState, STATE)


# --- inside a rollup transaction ------------------------------------------------------------------------


def _locked_state(session: Session) -> RollupState:
    """The state row, locked until the transaction ends: the first statement of every rollup transaction.

    On SQLite this INSERT takes the database's write lock before anything is read (waiting its turn in the
    busy handler), so the watermark read next is the one the previous writer left.
    """
    session.execute(
        dialect_of(session)
        .insert(RollupState)
        .values(name=STATE, last_scan_id=0, purge_cursor=0, updated_at=utcnow())
        .on_conflict_do_nothing(index_elements=["name"])
    )
    return session.scalars(
        select(RollupState).where(RollupState.name == STATE).with_for_update().execution_options(populate_existing=True)
    ).one()


def _fold(session: Session, low: int, high: int, closed_before: date | None, since: datetime | None = None) -> int:
    """Fold the scans with low < id <= high (and scanned since `since`) into the buckets: hourly ones, and
    daily ones of closed days (before `closed_before`; later days get theirs when they close)."""
    query = select(Scan.id, *_COLUMNS).where(Scan.id > low, Scan.id <= high)
    if since is not None:
        query = query.where(Scan.scanned_at >= since)
    rows = session.execute(query).all()
    if not rows:
        return 0
    new = [ScanFacts(*row[1:]) for row in rows]
    days = [scan.scanned_at.astimezone(UTC).date() for scan in new]
    deltas = fold(new, _earlier_scans(session, new, days, low))
    _add(session, deltas, closed_before)
    visits = sorted(
        (day, scan.visitor, row[0]) for row, scan, day in zip(rows, new, days, strict=True) if not scan.is_bot
    )
    if visits:
        _remember_visitors(session, visits)
    return len(new)


def _remember_visitors(session: Session, visits: list[tuple[date, str, int]]) -> None:
    """visitor_scans rows (day, visitor, scan id), in key order. On SQLite at the driver, as the buckets go
    (_executemany); psycopg's executemany already sends them in one pipeline."""
    if dialect_of(session) is postgresql:
        session.execute(insert(VisitorScan.__table__), [{"day": d, "visitor": v, "scan_id": i} for d, v, i in visits])
        return
    to_day = _bind_processor(session, VisitorScan.__table__.c.day)
    rows = [(to_day(day), visitor, scan_id) for day, visitor, scan_id in visits]
    session.connection().exec_driver_sql("INSERT INTO visitor_scans (day, visitor, scan_id) VALUES (?, ?, ?)", rows)


def _earlier_scans(session: Session, new: list[ScanFacts], days: list[date], low: int) -> Iterator[ScanFacts]:
    """Non-bot scans with id <= low of the visitors in `new` (scanned on `days`, UTC) on the same days (fold()
    keeps those of the same link), found through visitor_scans."""
    visitors_by_day: dict[date, set[str]] = {}
    for scan, day in zip(new, days, strict=True):
        if not scan.is_bot:
            visitors_by_day.setdefault(day, set()).add(scan.visitor)
    v = VisitorScan
    for day, visitors in sorted(visitors_by_day.items()):
        ordered = sorted(visitors)
        day_start = datetime.combine(day, time(), UTC)
        for start in range(0, len(ordered), _LOOKUP_BATCH):
            query = (
                select(*_COLUMNS)
                .join(v, v.scan_id == Scan.id)
                .where(v.day == day, v.visitor.in_(ordered[start : start + _LOOKUP_BATCH]), v.scan_id <= low)
                # The day's scans only, as they are: on PostgreSQL only its month's partition is searched.
                .where(Scan.scanned_at >= day_start, Scan.scanned_at < day_start + timedelta(days=1))
            )
            for row in session.execute(query):
                yield ScanFacts(*row)


def forget_past_visitors(sessions: sessionmaker[Session]) -> int:
    """Delete the visitor_scans rows of days older than the oldest visitor salt. Those salts are gone, so no
    scan stored from now on carries those days' hashes (a late scan of such a day gets a new salt). Call it
    only when every scan stored so far is folded: an unfolded scan of such a day would still look for them."""
    with sessions.begin() as session:
        oldest_salt = select(func.min(VisitorSalt.day)).scalar_subquery()
        return session.execute(delete(VisitorScan).where(VisitorScan.day < oldest_salt)).rowcount


_COUNTERS = {
    HourlyBucket: ("scans", "bots", "visitors", "first_seen", "last_seen"),
    DailyBucket: ("scans", "bots", "visitors"),
}
_KEY = ("link_id", "dimension", "value", "start")


def _key_order(table: type[HourlyBucket | DailyBucket]) -> Callable[[tuple], tuple]:
    """Rows (link, dimension, value, start, ...) sorted as the table's primary key: B-tree writes in key
    order touch each page once."""
    if table is HourlyBucket:
        return lambda row: (row[1], row[3], row[0], row[2])
    return lambda row: (row[0], row[1], row[3], row[2])


def _add(session: Session, deltas: Deltas, closed_before: date | None) -> None:
    """Add the deltas to the buckets: one upsert per bucket, INSERT ... ON CONFLICT DO UPDATE SET n = n + delta.

    Below SQLAlchemy's ORM and statement compiler, at the driver: a first rollup over a big table writes
    millions of bucket rows, and per-row ORM work was most of its time. On PostgreSQL the rows are COPYed to
    a temporary table and merged by one statement; on SQLite they go through the driver's executemany,
    their values converted by the columns' own types (so stored exactly as SQLAlchemy stores them).
    """
    hours: dict[int, datetime] = {}
    days: dict[int, datetime] = {}
    first_open_day = (closed_before - EPOCH.date()).days if closed_before else None  # in days since the epoch
    for table, buckets, starts, unit in (
        (HourlyBucket, deltas.hourly, hours, timedelta(hours=1)),
        (DailyBucket, deltas.daily, days, timedelta(days=1)),
    ):
        rows = []
        for (link, dimension, value, number), counters in buckets.items():
            if not any(counters):
                continue
            if table is DailyBucket and (first_open_day is None or number >= first_open_day):
                continue  # an open day: close_days writes it from the hourly buckets
            start = starts.get(number)
            if start is None:
                start = starts[number] = EPOCH + unit * number
            rows.append((deltas.links[link], DIMENSION_NAMES[dimension], value, start, *counters))
        if rows:
            (_copy_and_merge if dialect_of(session) is postgresql else _executemany)(session, table, rows)


def _merge_sql(table: type[HourlyBucket | DailyBucket], source: str) -> str:
    name = table.__tablename__
    columns = ", ".join(_KEY + _COUNTERS[table])
    updates = ", ".join(f"{c} = {name}.{c} + excluded.{c}" for c in _COUNTERS[table])
    return (f"INSERT INTO {name} ({columns}) {source} "
            f"ON CONFLICT (link_id, dimension, start, value) DO UPDATE SET {updates}")


def _bind_processor(session: Session, column: Column[Any]) -> Callable[[Any], Any]:
    """What SQLAlchemy itself makes of the column's values on the session's database, for rows sent straight
    to the driver. dialect_impl: this dialect's processor (for UTCDateTime, SQLite's DATETIME text after the
    decorator's UTC check), not the generic type's. Memoised: a chunk's rows repeat a few links, hours and
    days, each converted once."""
    dialect = session.get_bind().dialect
    process = column.type.dialect_impl(dialect).bind_processor(dialect)
    return functools.cache(process) if process is not None else (lambda value: value)


def _executemany(session: Session, table: type[HourlyBucket | DailyBucket], rows: list[tuple]) -> None:
    to_link = _bind_processor(session, table.__table__.c.link_id)
    to_start = _bind_processor(session, table.__table__.c.start)
    converted = [(to_link(link), dimension, value, to_start(start), *counters)
                 for link, dimension, value, start, *counters in rows]
    converted.sort(key=_key_order(table))
    placeholders = ", ".join("?" * (len(_KEY) + len(_COUNTERS[table])))
    session.connection().exec_driver_sql(_merge_sql(table, f"VALUES ({placeholders})"), converted)


def _copy_and_merge(session: Session, table: type[HourlyBucket | DailyBucket], rows: list[tuple]) -> None:
    connection = session.connection().connection.driver_connection  # psycopg's, in this transaction
    columns = ", ".join(_KEY + _COUNTERS[table])
    rows.sort(key=_key_order(table))
    with connection.cursor() as cursor:
        cursor.execute(f"CREATE TEMPORARY TABLE rollup_delta (LIKE {table.__tablename__}) ON COMMIT DROP")
        # Binary COPY: psycopg's C dumpers, ~5x less client time than text.
        with cursor.copy(f"COPY rollup_delta ({columns}) FROM STDIN (FORMAT BINARY)") as copy:
            copy.set_types(["uuid", "varchar", "varchar", "timestamptz"] + ["int4"] * len(_COUNTERS[table]))
            for row in rows:
                copy.write_row(row)
        # WHERE true: without it PostgreSQL cannot tell the SELECT's end from ON CONFLICT (documented).
        cursor.execute(_merge_sql(table, f"SELECT {columns} FROM rollup_delta WHERE true"))
        cursor.execute("DROP TABLE rollup_delta")
