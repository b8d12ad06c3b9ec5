"""Engines, sessions and the declarative base shared by every bounded context.

The gateway uses an async engine; Celery workers cannot run coroutines (celery#6552), so they use a
sync engine on the same models. SQLite gets WAL and a busy timeout so the gateway and workers can
write to one file at once.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType

import structlog
from sqlalchemy import Connection, DateTime, Engine, MetaData, create_engine, event, make_url
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker
from sqlalchemy.types import TypeDecorator
from uuid_utils.compat import uuid7

from app.kit.settings import Settings

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


# Foreign key columns name their type (Uuid): one left to take its target's type is NullType until the target's
# module happens to be imported, and a process that loads only some tables (`qrflow rollup`) reads ids as strings.
class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class UTCDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes on every backend (SQLite stores no offset and hands back naive values)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: object) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        return value.astimezone(UTC) if value is not None else None

    def process_result_value(self, value: datetime | None, dialect: object) -> datetime | None:
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value


def utcnow() -> datetime:
    return datetime.now(UTC)


def new_id() -> uuid.UUID:
    """A UUIDv7: it begins with its millisecond, so new rows land at the right edge of every index on an
    id instead of on a random page. At 20k scans/s that is the difference between touching a handful
    of pages of the scans' event_id index per batch and one per scan (bench/scan_ids.py)."""
    return uuid7()


def dialect_of(bind: Session | Connection) -> ModuleType:
    """`postgresql` or `sqlite`, the module of the database behind a session or a connection: for what
    SQLAlchemy keeps per dialect (INSERT … ON CONFLICT), and for the few paths that differ
    (`dialect_of(session) is postgresql`)."""
    dialect = bind.get_bind().dialect if isinstance(bind, Session) else bind.dialect
    return postgresql if dialect.name == "postgresql" else sqlite


# How a writer waits for SQLite's one write lock: in the busy handler, up to busy_timeout, polling (every
# 100 ms at most once it has waited a while) rather than queueing. pysqlite's default transaction control
# begins a transaction only at the first INSERT/UPDATE/DELETE, so that statement starts the transaction and
# takes the lock at once, and waits; an explicit BEGIN followed by a read and then a write would instead
# fail at the write with SQLITE_BUSY without waiting (a read snapshot cannot be upgraded behind another
# writer). Nothing here issues BEGIN itself (tests/integration/test_database_contention.py holds the lock
# from another process: a request's read-then-insert and a scans batch wait and succeed). What starved
# writers past the timeout under a scan flood was the rollup holding the lock for seconds and taking it
# again at once (issue #21; app/analytics/rollup.py now folds in short turns).
def _sqlite_pragmas(dbapi_connection: object, _record: object) -> None:
    cursor = dbapi_connection.cursor()  # type: ignore[attr-defined]
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    # Checkpoint the WAL every ~16 MB rather than ~4 MB: a scans batch dirties the same index pages as
    # the one before, and each checkpoint writes them back (and syncs) once. 13–21% less time per stored
    # scan, 2–11% less CPU (300k scans in-process, three runs each; bench/results/ingest.md).
    cursor.execute("PRAGMA wal_autocheckpoint=4000")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def _rollback_if_in_transaction(dbapi_connection: object, _record: object, _state: object) -> None:
    """The pool's reset of a returned connection, minus the ROLLBACK when there is nothing to roll back.

    A session ends its transaction before it returns its connection, and pysqlite begins one only at a
    write, so after a read the pool's own ROLLBACK is a second no-op; through aiosqlite it is still a trip
    to the database's thread, which waits its turn behind every redirect on a flooded event loop (issue
    #21). Whether a transaction is open is sqlite3's own flag, read without that trip."""
    sqlite_connection = getattr(dbapi_connection.driver_connection, "_conn", None)  # type: ignore[attr-defined]
    if sqlite_connection is not None and sqlite_connection.in_transaction:
        dbapi_connection.rollback()  # type: ignore[attr-defined]


def make_private(settings: Settings) -> None:
    """The data directory 0700 and an SQLite database 0600, created so or tightened: they hold every
    workspace's codes, key hashes, scans (IP addresses) and Flower's password, for qrflow's user alone."""
    try:
        settings.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        settings.data_dir.chmod(0o700)
        database = make_url(settings.database_url).database if settings.is_sqlite else None
        if database and database != ":memory:" and not database.startswith("file:"):
            path = Path(database)
            path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            path.touch(mode=0o600)  # before SQLite creates it 0644; its -wal and -shm files copy this mode
            for file in (path, path.with_name(f"{path.name}-wal"), path.with_name(f"{path.name}-shm")):
                if file.exists():
                    file.chmod(0o600)
    except OSError as exc:  # a directory qrflow does not own (a mounted volume): its owner decides
        structlog.get_logger(__name__).warning("data_dir_not_made_private", error=repr(exc))


def create_sync_engine(settings: Settings) -> Engine:
    make_private(settings)
    if settings.is_sqlite:
        engine = create_engine(settings.sync_database_url, connect_args={"timeout": 10})
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    return create_engine(
        settings.sync_database_url, pool_pre_ping=True, connect_args={"connect_timeout": 5}
    )


def create_gateway_engine(settings: Settings) -> AsyncEngine:
    make_private(settings)
    if settings.is_sqlite:
        # SQLite has one writer at a time. Many gateway connections would contend in SQLite's busy
        # handler, which polls with sleeps instead of queueing: under load a writer starved past the
        # busy timeout and the request failed ("database is locked"). One connection makes requests
        # wait their turn in order, in the event loop; each holds it only for a few statements.
        engine = create_async_engine(
            settings.async_database_url,
            connect_args={"timeout": 10},
            pool_size=1,
            max_overflow=0,
            pool_timeout=30,
            pool_reset_on_return=None,  # _rollback_if_in_transaction instead
        )
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        event.listen(engine.sync_engine, "reset", _rollback_if_in_transaction)
        return engine
    return create_async_engine(
        settings.async_database_url,
        pool_pre_ping=True,
        pool_size=10,
        connect_args={"connect_timeout": 5},
    )


def sync_sessionmaker(engine: Engine) -> sessionmaker:
    return sessionmaker(engine, expire_on_commit=False)


def async_sessions(engine: AsyncEngine) -> async_sessionmaker:
    return async_sessionmaker(engine, expire_on_commit=False)
