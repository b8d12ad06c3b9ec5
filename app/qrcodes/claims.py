"""Who renders a code, since when, and how many renders of it started: what makes recovery from a dead
render explicit and bounded.

A pool process claims a code when its render starts (`render_claimed_by` is "host:pid",
`render_claimed_at`) and counts the start (`render_attempts`); a chunk claims all its codes when it
starts, without counting. The claim ends with the code `ready` or `failed`, or is released when the code
goes back to the broker (a render that raised, a chunk's rest handed on).

A claim that outlived its process is how the republisher tells a render that was lost (the process was
SIGKILLed: out of memory, the hard time limit, which acknowledges the message, or celery#3541, which
loses it) from one that is only waiting in the queue; the count is how a code that kills its process
every time becomes `failed` instead of being tried for ever.
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Iterable
from datetime import datetime, timedelta

import psutil
from sqlalchemy import update
from sqlalchemy.orm import Session, sessionmaker

from app.kit.db import utcnow
from app.qrcodes.models import QRCode, Status

_IN_CHUNK = 1000
# psutil derives a process's start time from the boot time, which /proc gives in whole seconds.
_START_TIME_SLACK = 1.0


def this_process() -> str:
    """The claimant's name; computed on each call, as a pool process is a fork of its parent."""
    return f"{socket.gethostname()}:{os.getpid()}"


def start_attempt(sessions: sessionmaker[Session], code_id: uuid.UUID, max_attempts: int) -> int | None:
    """Claim a pending code for a render and count it; returns which attempt this is, or None when the
    code is not pending (ready, failed, deleted) or has had its `max_attempts` already."""
    now = utcnow()
    with sessions.begin() as session:
        # Conditional: two deliveries of one code each count, and neither goes past the bound.
        claimed = session.execute(
            update(QRCode)
            .where(
                QRCode.id == code_id,
                QRCode.status == Status.PENDING,
                QRCode.deleted_at.is_(None),
                QRCode.render_attempts < max_attempts,
            )
            .values(
                render_attempts=QRCode.render_attempts + 1,
                render_claimed_by=this_process(),
                render_claimed_at=now,
                updated_at=now,
            )
            .returning(QRCode.render_attempts)
        ).scalar_one_or_none()
    return claimed


def give_back(sessions: sessionmaker[Session], code_id: uuid.UUID) -> None:
    """This process's attempt was cut short by a fault outside the code (the image store down): it is not
    counted, and the claim ends, as the task waits the fault out (workers/retries.py)."""
    with sessions.begin() as session:
        session.execute(
            update(QRCode)
            .where(
                QRCode.id == code_id,
                QRCode.status == Status.PENDING,
                QRCode.render_claimed_by == this_process(),
                QRCode.render_attempts > 0,
            )
            .values(render_attempts=QRCode.render_attempts - 1, render_claimed_by=None, render_claimed_at=None)
        )


def claim(sessions: sessionmaker[Session], code_ids: Iterable[uuid.UUID]) -> None:
    """A chunk's claim on the codes it is about to render, uncounted: if its process dies, the codes it had
    not reached have a dead claim too, and go back to the broker with the one that killed it."""
    _set_claims(sessions, list(code_ids), this_process(), utcnow())


def release(sessions: sessionmaker[Session], code_ids: Iterable[uuid.UUID]) -> None:
    """The codes are back in the broker (or left for the republisher): nobody renders them now."""
    _set_claims(sessions, list(code_ids), None, None)


def _set_claims(
    sessions: sessionmaker[Session], code_ids: list[uuid.UUID], by: str | None, at: datetime | None
) -> None:
    with sessions.begin() as session:
        for start in range(0, len(code_ids), _IN_CHUNK):
            session.execute(
                update(QRCode)
                .where(QRCode.id.in_(code_ids[start : start + _IN_CHUNK]), QRCode.status == Status.PENDING)
                .values(render_claimed_by=by, render_claimed_at=at)
            )


def is_live(claimed_by: str, claimed_at: datetime, now: datetime, time_limit: timedelta) -> bool:
    """Whether the claimant may still be rendering. No task outlives the hard time limit (its process is
    killed), so an older claim is dead wherever it was made; on this host, a claim is dead as soon as its
    process is gone (or its pid belongs to a process started after the claim)."""
    if claimed_at < now - time_limit:
        return False
    host, _, pid = claimed_by.rpartition(":")
    if host != socket.gethostname():
        return True
    try:
        process = psutil.Process(int(pid))
        if process.status() == psutil.STATUS_ZOMBIE:  # killed, not yet reaped by its parent
            return False
        return process.create_time() <= claimed_at.timestamp() + _START_TIME_SLACK
    except (psutil.NoSuchProcess, ValueError):
        return False
