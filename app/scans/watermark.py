"""Scan ids as a watermark: the rollups fold `scans` in id order, and must never read past a gap that
fills in later.

On SQLite that is free: one writer at a time, and an insert gets max(rowid) + 1, so ids are in commit
order. On PostgreSQL ids come from a sequence when a transaction inserts, not when it commits: a slow
ingest holding id 100 can commit after a fast one holding id 101 did, and a rollup reading max(id) = 101
in between would move its watermark past 100 for ever.

So every ingest transaction holds a shared advisory lock from before its INSERT until it commits
(`hold_for_insert`, the first statement of app/scans/ingest.py's transaction), and the rollup reads
max(id) under the exclusive one (`committed_max_id`). Once it has that lock, no ingest transaction is in
flight: each one that drew an id has committed or rolled back. Any transaction that starts later draws
ids above every id drawn so far, so above what it reads. The exclusive lock is held for one SELECT; ingest
transactions queued behind it wait that long (PostgreSQL does not let new shared requests jump a waiting
exclusive one, so the rollup cannot be starved either).
"""

from __future__ import annotations

from sqlalchemy import func, select, text
from sqlalchemy.dialects import postgresql
from sqlalchemy.orm import Session, sessionmaker

from app.kit.db import dialect_of
from app.scans.models import Scan

# An arbitrary 64-bit key, reserved for this in the database's advisory-lock space ("qrflow" + 1).
LOCK_KEY = 0x7172666C6F770001
# An ingest transaction left open (a stuck worker) must not park the rollup for ever: it fails, the task
# retries later, and scans keep being stored meanwhile.
_LOCK_TIMEOUT = "10s"


def hold_for_insert(session: Session) -> None:
    """Called first in every transaction that inserts scans (PostgreSQL; a no-op on SQLite)."""
    if dialect_of(session) is postgresql:
        session.execute(text("SELECT pg_advisory_xact_lock_shared(:key)"), {"key": LOCK_KEY})


def committed_max_id(sessions: sessionmaker[Session]) -> int:
    """The highest scan id below which every id is settled (committed, or rolled back for good); 0 when
    there are no scans. A transaction of its own, so the exclusive lock is released at once."""
    with sessions.begin() as session:
        if dialect_of(session) is postgresql:
            session.execute(text(f"SET LOCAL lock_timeout = '{_LOCK_TIMEOUT}'"))
            session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": LOCK_KEY})
        # A statement after the lock: in READ COMMITTED it gets a snapshot taken after the lock was granted.
        return session.scalar(select(func.max(Scan.id))) or 0
