"""The scans table's monthly partitions (PostgreSQL; on SQLite the same calls keep working on one plain
table): storing exactly once with the scan's time in the unique key, partitions made ahead and on demand,
retention dropping whole months only once every scan in them is folded."""

from __future__ import annotations

import threading
import time
from datetime import UTC, date, datetime

import pytest
from sqlalchemy import event, func, select, text

from app.analytics import rollup as rollups
from app.kit.db import create_sync_engine, sync_sessionmaker
from app.links.models import Link
from app.scans import partitions
from app.scans.enrichment import Enricher
from app.scans.events import ScanRecorded
from app.scans.ingest import record_scans
from app.scans.models import Scan
from tests.conftest import fresh_database
from tests.integration.analytics_helpers import insert_scans, new_links, scan_row, stored_buckets

IPHONE = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 Mobile/15E148 Safari/604.1"


@pytest.fixture
def fresh(backend, tmp_path):
    with fresh_database(backend, tmp_path) as settings:
        engine = create_sync_engine(settings)
        yield engine, sync_sessionmaker(engine)
        engine.dispose()


def months(engine) -> list[date]:
    with engine.connect() as connection:
        return partitions.present(connection) if partitions.is_partitioned(connection) else []


def stored(engine) -> int:
    with engine.connect() as connection:
        return connection.scalar(select(func.count()).select_from(Scan))


def test_a_redelivered_batch_is_stored_once_even_in_a_month_without_a_partition(fresh):
    """Events travel as JSON (spool line, broker message): the copy a worker gets again carries the same
    id and time, so (event_id, scanned_at) finds it. A scan of a month no partition covers (a gateway's
    clock years off) creates its month first instead of failing its batch."""
    engine, sessions = fresh
    link = new_links(engine, 1)[0]
    long_ago = datetime(2019, 3, 31, 23, 59, 59, 999999, tzinfo=UTC)
    events = [ScanRecorded(slug="s", link_id=link, user_agent=IPHONE, ip="203.0.113.9", occurred_at=long_ago),
              ScanRecorded(slug="s", link_id=link, user_agent=IPHONE, ip="203.0.113.10")]
    lines = [event.model_dump_json() for event in events]

    def delivered() -> list[ScanRecorded]:
        return [ScanRecorded.model_validate_json(line) for line in lines]

    assert record_scans(sessions, Enricher(), delivered()) == 2
    assert record_scans(sessions, Enricher(), delivered()) == 0
    assert stored(engine) == 2
    with sessions() as session:
        assert session.scalar(select(Link.scans_total).where(Link.id == link)) == 2
        assert session.scalar(select(Scan.scanned_at).where(Scan.event_id == events[0].event_id)) == long_ago
    if engine.dialect.name == "postgresql":
        assert date(2019, 3, 1) in months(engine) and date(2019, 4, 1) not in months(engine)


def test_beat_creates_the_coming_months_once(fresh):
    engine, sessions = fresh
    at = datetime(2031, 11, 20, tzinfo=UTC)
    created = partitions.create_ahead(sessions, 3, now=at)
    again = partitions.create_ahead(sessions, 3, now=at)
    if engine.dialect.name != "postgresql":
        assert created == again == []  # one plain table
        return
    coming = [date(2031, 11, 1), date(2031, 12, 1), date(2032, 1, 1), date(2032, 2, 1)]
    assert created == coming and again == []
    assert set(coming) <= set(months(engine))


def test_retention_drops_a_month_only_once_all_its_scans_are_folded(fresh):
    engine, sessions = fresh
    if engine.dialect.name != "postgresql":
        pytest.skip("SQLite deletes expired rows one by one (test_analytics_rollup.py)")
    link = new_links(engine, 1)[0]
    insert_scans(engine, [scan_row(link, datetime(2026, 4, 10, tzinfo=UTC), visitor=f"v{i}") for i in range(5)])
    insert_scans(engine, [scan_row(link, datetime(2026, 5, 2, tzinfo=UTC))])
    rollups.rollup(sessions)
    # A late scan of April, stored after the rollup: April cannot go before it is folded.
    insert_scans(engine, [scan_row(link, datetime(2026, 4, 30, 23, tzinfo=UTC), visitor="late")])
    august = datetime(2026, 8, 20, tzinfo=UTC)
    assert rollups.purge_expired_scans(sessions, 30, now=lambda: august) == 0
    assert date(2026, 4, 1) in months(engine) and stored(engine) == 7

    report = rollups.rollup(sessions, retention_days=30, now=lambda: august)
    assert report.purged == 7  # April's six and May's one (the cutoff: July 21)
    assert date(2026, 4, 1) not in months(engine) and date(2026, 5, 1) not in months(engine)
    assert stored(engine) == 0
    assert rollups.read_state(sessions).purged_before == date(2026, 6, 1)
    _, daily = stored_buckets(engine, [link])  # the analytics stay
    assert daily[(link, "all", "", "2026-04-10")][0] == 5
    assert daily[(link, "all", "", "2026-04-30")][0] == 1


def test_a_month_dropped_by_retention_under_a_batch_is_made_again_and_the_batch_stored(fresh):
    """Retention may drop a past month's partition between a batch's check for it and its INSERT (a late
    scan of a month just expired): the INSERT finds no partition, and the batch makes it again and goes in."""
    engine, sessions = fresh
    if engine.dialect.name != "postgresql":
        pytest.skip("one plain table on SQLite")
    link = new_links(engine, 1)[0]
    late = datetime(2019, 5, 5, tzinfo=UTC)
    record_scans(sessions, Enricher(), [ScanRecorded(slug="s", link_id=link, user_agent=IPHONE, occurred_at=late)])
    dropped: list[str] = []

    def retention_strikes(connection, cursor, statement, parameters, context, executemany) -> None:
        if statement.startswith("INSERT INTO scans") and not dropped:
            # Another connection, as the rollup's: the batch's transaction holds no lock on scans yet.
            with engine.connect() as other, other.begin():
                other.execute(text("DROP TABLE scans_y2019m05"))
            dropped.append(statement)

    event.listen(engine, "before_cursor_execute", retention_strikes)
    try:
        batch = [ScanRecorded(slug="s", link_id=link, user_agent=IPHONE, occurred_at=late) for _ in range(3)]
        assert record_scans(sessions, Enricher(), batch) == 3
    finally:
        event.remove(engine, "before_cursor_execute", retention_strikes)
    assert dropped and stored(engine) == 3  # the first scan went with its partition; the batch is all there
    assert date(2019, 5, 1) in months(engine)


def test_the_beat_task_run_by_a_worker_makes_a_missing_coming_month(backend, worker):
    """scans.create_partitions, as beat sends it, run by the real worker on the test broker."""
    from workers.celery_app import celery_app

    engine = create_sync_engine(backend.settings)
    try:
        if engine.dialect.name != "postgresql":
            pytest.skip("one plain table on SQLite")
        furthest = partitions.months_from(partitions.month_of(datetime.now(UTC)), 4)[-1]
        with engine.begin() as connection:
            connection.execute(text(f"DROP TABLE IF EXISTS {partitions.partition_name(furthest)}"))
        assert furthest not in months(engine)
        celery_app.send_task("scans.create_partitions")
        deadline = time.monotonic() + 30
        while furthest not in months(engine) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert furthest in months(engine)
    finally:
        engine.dispose()


def test_workers_making_the_same_month_at_once_all_carry_on(fresh):
    """Four workers' first batches of a month no one made yet, released together, month after month."""
    engine, sessions = fresh
    if engine.dialect.name != "postgresql":
        pytest.skip("one plain table on SQLite")
    months_wanted = partitions.months_from(date(2018, 1, 1), 6)
    barrier, errors = threading.Barrier(4), []

    def worker_batches() -> None:
        try:
            for month in months_wanted:
                barrier.wait(timeout=30)
                partitions.ensure_for(sessions, [datetime(month.year, month.month, 15, tzinfo=UTC)])
        except Exception as exc:  # noqa: BLE001 - reported below, with the thread's error
            errors.append(exc)

    threads = [threading.Thread(target=worker_batches) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert set(months_wanted) <= set(months(engine))
