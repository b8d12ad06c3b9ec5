"""How the rollup shares SQLite's one write lock with the scans workers and the gateway (issue #21).

A rollup transaction holds the lock from its first statement to its commit, and every other writer waits
in SQLite's busy handler meanwhile. 10,000 scans per transaction held it 1.1-1.4 s on an idle machine and
9 s under a scan flood, and the rollup took it again at once: the scans workers' busy timeout ran out,
they backed off for tens of seconds, and the backlog stopped draining. So on SQLite the rollup
- folds at most SQLITE_CHUNK scans per transaction (~0.1 s on an idle machine, and as fast per scan),
  starting at SQLITE_FIRST_CHUNK; fewer when a transaction held the lock longer than SQLITE_TURN_SECONDS
  (a machine short of CPU: 1,000 scans held it 2.4 s at load 20 on 2 cores), in proportion, growing back
  once transactions are quick again;
- leaves the lock free between two transactions as long as the last one held it.

PostgreSQL locks rows, not the database: there the rollup keeps its big chunks and never pauses.
"""

from __future__ import annotations

import time

from sqlalchemy.dialects import sqlite
from sqlalchemy.orm import Session, sessionmaker

from app.kit.db import dialect_of

SQLITE_CHUNK = 1_000
SQLITE_TURN_SECONDS = 0.25
# A run's first transaction, before it knows how fast this machine folds today: 1,000 scans held the lock
# 0.5-0.9 s under a flood at load 15-20 on 2 cores, every run; quick ones double it at once.
SQLITE_FIRST_CHUNK = 250
_MIN_CHUNK = 50


def is_sqlite(sessions: sessionmaker[Session]) -> bool:
    with sessions() as session:
        return dialect_of(session) is sqlite


def next_chunk(chunk: int, held: float) -> int:
    """The next transaction's scans, from how long `chunk` scans held the lock: shrunk in proportion when
    they held it longer than SQLITE_TURN_SECONDS, doubled (up to SQLITE_CHUNK) when less than half of it."""
    if held > SQLITE_TURN_SECONDS:
        return max(_MIN_CHUNK, int(chunk * SQLITE_TURN_SECONDS / held))
    if held < SQLITE_TURN_SECONDS / 2:
        return min(SQLITE_CHUNK, chunk * 2)
    return chunk


def give_way(session: Session, held: float) -> None:
    """Between two transactions of a loop, on SQLite: leave the lock free as long as the last one held it.

    SQLite has no queue for its lock: a writer waiting for it sleeps in its busy handler and looks again
    every 100 ms at most, so a loop that took the lock again at once would find it free nearly every time
    and starve the others past their busy timeout. Pausing as long as it held the lock leaves the others at
    least half of the lock's time, in windows as long as a transaction (~0.1 s and more) that they see."""
    if dialect_of(session) is sqlite:
        time.sleep(held)
