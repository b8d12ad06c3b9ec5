"""Issue #21: under load the writers share SQLite's one write lock, and reads stay out of it.

A read request writes nothing (SQLite: the database's data_version stays; both: the key's row is untouched);
the key's last use reaches the database through Redis and beat's flush; a writer in another process holding
the lock for seconds makes API reads answer at once and API writes and scan batches wait, not fail; the
rollup folds in transactions of a bounded size and leaves the lock to other writers between them.
"""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta

import pytest
from redis import Redis
from sqlalchemy import select, text, update

from app.analytics import rollup as rollups
from app.analytics.sqlite_turns import SQLITE_CHUNK
from app.identity.models import ApiKey, Scope
from app.identity.usage import USAGE_KEY, flush_key_usage
from app.kit.db import create_sync_engine, sync_sessionmaker
from app.scans import ingest
from app.scans.enrichment import Enricher
from app.scans.events import ScanRecorded
from tests.conftest import _issue, fresh_database, wait_until_rendered
from tests.integration.analytics_helpers import insert_scans, new_links, scan_row

URL_CODE = {"kind": "url", "dynamic": True, "data": {"url": "https://example.com/contention"}}
LOCK_SECONDS = 3.0
_XMIN = text("SELECT xmin::text FROM api_keys WHERE prefix = :p")


def _key_row(sessions, caller) -> tuple:
    prefix = caller.key.split("_")[1]
    with sessions() as session:
        return session.execute(select(ApiKey.last_used_at).where(ApiKey.prefix == prefix)).one()


def _sqlite_path(backend) -> str:
    return backend.settings.database_url.removeprefix("sqlite:///")


def test_a_read_request_writes_nothing(backend, gateway, alice, sessions):
    code = gateway.post("/v1/qrcodes", json=URL_CODE, headers=alice.headers).json()
    wait_until_rendered(gateway, alice, code["id"])  # the render's writes are over
    if backend.name == "sqlite":
        # data_version changes when any other connection commits a change to the database.
        watcher = sqlite3.connect(_sqlite_path(backend))
        before = watcher.execute("PRAGMA data_version").fetchone()
    else:
        watcher = None
        with sessions() as session:  # xmin: the transaction that last wrote the row
            before = session.execute(_XMIN, {"p": alice.key.split("_")[1]}).one()
    for path in (f"/v1/qrcodes/{code['id']}", "/v1/qrcodes", f"/v1/qrcodes/{code['id']}/analytics"):
        assert gateway.get(path, headers=alice.headers).status_code == 200, path
    if watcher is not None:
        assert watcher.execute("PRAGMA data_version").fetchone() == before
        watcher.close()
    else:
        with sessions() as session:
            assert session.execute(_XMIN, {"p": alice.key.split("_")[1]}).one() == before


def test_a_keys_last_use_is_flushed_to_the_database(backend, gateway, sessions):
    # A key of its own: one the suite's other tests use may have been flushed already.
    caller = _issue(backend.settings, "workspace-b", Scope.READ)
    redis = Redis.from_url(backend.settings.redis_url)
    before = datetime.now(UTC)
    assert gateway.get("/v1/qrcodes", headers=caller.headers).status_code == 200
    assert _key_row(sessions, caller) == (None,)  # the request wrote nothing
    prefix = caller.key.split("_")[1]
    with sessions() as session:
        key_id = str(session.scalar(select(ApiKey.id).where(ApiKey.prefix == prefix)))
    deadline = time.monotonic() + 30  # the gateway pushes every 5 s (QRFLOW_KEY_USAGE_PUSH_SECONDS)
    while redis.zscore(USAGE_KEY, key_id) is None:
        assert time.monotonic() < deadline, "the gateway never pushed the key's use to Redis"
        time.sleep(0.2)
    from workers.celery_app import celery_app

    celery_app.send_task("identity.flush_key_usage")  # as beat sends it; the test's worker runs it
    deadline = time.monotonic() + 30
    while (last_used := _key_row(sessions, caller)[0]) is None:
        assert time.monotonic() < deadline, "the flush never wrote last_used_at"
        time.sleep(0.2)
    assert last_used is not None and before - timedelta(seconds=1) <= last_used <= datetime.now(UTC)
    redis.close()


def test_a_flush_never_moves_a_last_use_back(backend, bob, sessions):
    redis = Redis.from_url(backend.settings.redis_url)
    prefix = bob.key.split("_")[1]
    later = datetime.now(UTC) + timedelta(days=1)
    with sessions.begin() as session:
        session.execute(update(ApiKey).where(ApiKey.prefix == prefix).values(last_used_at=later))
        key_id = str(session.scalar(select(ApiKey.id).where(ApiKey.prefix == prefix)))
    redis.zadd(USAGE_KEY, {key_id: time.time()})
    assert flush_key_usage(sessions, redis) >= 1
    assert _key_row(sessions, bob) == (later,)
    assert redis.zscore(USAGE_KEY, key_id) is None  # popped: written once
    redis.close()


# --- SQLite's write lock ----------------------------------------------------------------------------------

_HOLDER = """
import sqlite3, sys, time
db = sqlite3.connect(sys.argv[1], isolation_level=None)
db.execute("BEGIN IMMEDIATE")
print("locked", flush=True)
time.sleep(float(sys.argv[2]))
db.execute("COMMIT")
"""


def _hold_write_lock(path: str, seconds: float) -> subprocess.Popen[str]:
    """Another process holding SQLite's write lock for `seconds`, as a long write transaction would."""
    holder = subprocess.Popen([sys.executable, "-c", _HOLDER, path, str(seconds)], stdout=subprocess.PIPE, text=True)
    assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
    return holder


def test_a_writer_holding_the_lock_makes_requests_wait_not_fail(backend, gateway, alice, engine, sessions):
    if backend.name != "sqlite":
        pytest.skip("SQLite's database-wide write lock")
    code = gateway.post("/v1/qrcodes", json=URL_CODE, headers=alice.headers).json()
    wait_until_rendered(gateway, alice, code["id"])
    holder = _hold_write_lock(_sqlite_path(backend), LOCK_SECONDS)
    locked_at = time.monotonic()
    # A read needs no lock: answered while the other process holds it (wide margin: far less than 1 s).
    read = gateway.get(f"/v1/qrcodes/{code['id']}", headers=alice.headers)
    assert read.status_code == 200 and time.monotonic() - locked_at < LOCK_SECONDS
    # A write waits its turn in the busy timeout and succeeds once the lock is free.
    created = gateway.post("/v1/qrcodes", json=URL_CODE, headers=alice.headers)
    assert created.status_code == 202, created.text
    assert holder.wait(10) == 0
    # So does a scans batch (the scans worker's transaction), started while the lock is held.
    (link,) = new_links(engine, 1)
    holder = _hold_write_lock(_sqlite_path(backend), LOCK_SECONDS)
    event = ScanRecorded(link_id=link, slug="contention", ip="203.0.113.9", user_agent="Mozilla/5.0 (X11; Linux)")
    assert ingest.record_scans(sessions, Enricher(None, False), [event]) == 1
    assert holder.wait(10) == 0


def test_the_rollup_folds_in_bounded_transactions_and_takes_turns(backend, tmp_path):
    with fresh_database(backend, tmp_path) as settings:
        engine = create_sync_engine(settings)
        sessions = sync_sessionmaker(engine)
        (link,) = new_links(engine, 1)
        start = datetime.now(UTC) - timedelta(hours=1)
        scans = 2 * SQLITE_CHUNK + 10
        rows = [scan_row(link, start + timedelta(milliseconds=i), visitor=f"v{i}") for i in range(scans)]
        insert_scans(engine, rows[:1])
        rollups.rollup(sessions)  # the state row exists, with the first scan folded
        insert_scans(engine, rows[1:])
        watermarks_seen: set[int] = set()
        done = threading.Event()

        def other_writer() -> None:  # a writer of another connection, trying all along
            other = create_sync_engine(settings)
            with other.connect() as connection:
                while not done.is_set():
                    with connection.begin():
                        connection.execute(text("UPDATE analytics_state SET updated_at = updated_at"))
                        watermarks_seen.add(connection.scalar(text("SELECT last_scan_id FROM analytics_state")))
                    time.sleep(0.005)
            other.dispose()

        writer = threading.Thread(target=other_writer)
        writer.start()
        report = rollups.rollup(sessions)  # the default chunk of the backend
        done.set()
        writer.join()
        engine.dispose()
    assert report.folded == scans - 1 and report.caught_up
    if backend.name == "sqlite":  # never more than SQLITE_CHUNK per transaction, fewer on a busy machine
        assert report.transactions >= -(-(scans - 1) // SQLITE_CHUNK)
    else:
        assert report.transactions == 1  # CHUNK
    assert report.longest_transaction_s > 0
    if backend.name == "sqlite":
        # The other writer got the lock between the rollup's transactions: it saw a watermark in between.
        assert {w for w in watermarks_seen if 1 < w < report.watermark}, sorted(watermarks_seen)
