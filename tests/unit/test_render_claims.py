"""When a render's claim is alive, and when a broker message still holds a code (app/qrcodes/claims.py,
app/qrcodes/recovery.py): the rules that tell a lost render from a queued one."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import uuid
from datetime import timedelta

import psutil

from app.kit.db import utcnow
from app.qrcodes.claims import is_live, this_process
from app.qrcodes.recovery import LostAfter, _held_for, _Pending

LIMIT = timedelta(seconds=60)


def test_a_claim_of_a_live_process_is_live_until_the_hard_time_limit():
    now = utcnow()
    assert is_live(this_process(), now - timedelta(seconds=5), now, LIMIT)
    assert not is_live(this_process(), now - timedelta(seconds=61), now, LIMIT)


def test_a_claim_whose_process_is_gone_is_dead_at_once():
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    now = utcnow()
    assert not is_live(f"{socket.gethostname()}:{child.pid}", now - timedelta(seconds=1), now, LIMIT)


def test_a_pid_reused_by_a_process_started_after_the_claim_is_not_the_claimant():
    started = psutil.Process(os.getpid()).create_time()
    now = utcnow()
    claimed_before_this_process_existed = now - timedelta(seconds=now.timestamp() - started + 30)
    assert not is_live(this_process(), claimed_before_this_process_existed, now, timedelta(days=365))


def test_another_hosts_claim_is_judged_by_its_age_alone():
    now = utcnow()
    assert is_live("elsewhere.example:1", now - timedelta(seconds=30), now, LIMIT)
    assert not is_live("elsewhere.example:1", now - timedelta(seconds=90), now, LIMIT)


def _pending(claimed_seconds_ago: float | None) -> _Pending:
    now = utcnow()
    claimed_at = None if claimed_seconds_ago is None else now - timedelta(seconds=claimed_seconds_ago)
    by = None if claimed_at is None else "gone.example:1"
    return _Pending(uuid.uuid4(), None, now - timedelta(hours=1), by, claimed_at, int(by is not None))


def test_a_code_waiting_in_the_queue_or_taken_and_not_started_is_held():
    lost_after = LostAfter(unclaimed=timedelta(seconds=120), time_limit=LIMIT)
    now = utcnow()
    assert _held_for(_pending(None), [None], now, lost_after)
    assert _held_for(_pending(None), [now.timestamp() - 600], now, lost_after)
    assert not _held_for(_pending(None), [], now, lost_after)


def test_a_dead_claim_is_held_only_by_a_later_delivery_or_for_the_handback_grace():
    lost_after = LostAfter(unclaimed=timedelta(seconds=120), time_limit=LIMIT)
    now = utcnow()
    recent, old = _pending(20), _pending(200)
    # Taken again after the claim: the next delivery, not yet started.
    assert _held_for(old, [now.timestamp() - 10], now, lost_after)
    # The delivery that died: its worker may still hand it back, until the time limit and a grace are over.
    assert _held_for(recent, [now.timestamp() - 25], now, lost_after)
    assert not _held_for(old, [now.timestamp() - 205], now, lost_after)
    assert not _held_for(old, [], now, lost_after)
    assert _held_for(old, [now.timestamp() - 205, None], now, lost_after)
