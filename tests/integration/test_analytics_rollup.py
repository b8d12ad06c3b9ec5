"""Rollups against the raw table, on SQLite and PostgreSQL: after any sequence of inserts (late scans
included) and rollups in any chunk sizes, every bucket equals a brute-force count over the raw scans;
rolling up again, rebuilding, or two rollups at once change nothing; retention keeps the analytics."""

from __future__ import annotations

import threading
from datetime import UTC, date, datetime, timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import delete, func, select

from app.analytics import rollup as rollups
from app.analytics.models import DailyBucket, HourlyBucket, VisitorScan
from app.kit.db import create_sync_engine, sync_sessionmaker
from app.scans.models import Scan, VisitorSalt
from tests.conftest import fresh_database
from tests.integration.analytics_helpers import brute_force, insert_scans, new_links, scan_row, stored_buckets

BASE = datetime(2026, 3, 1, tzinfo=UTC)


@pytest.fixture
def fresh(backend, tmp_path):
    """An empty, migrated database of the backend's kind, for tests that need the whole table to
    themselves (retention deletes every expired scan, whoever inserted it)."""
    with fresh_database(backend, tmp_path) as settings:
        engine = create_sync_engine(settings)
        yield engine, sync_sessionmaker(engine)
        engine.dispose()


def watermark(sessions) -> int:
    return rollups.read_state(sessions).last_scan_id


def assert_buckets_match_raw(engine, sessions, links) -> None:
    expected_hourly, expected_daily = brute_force(engine, links, watermark(sessions))
    hourly, daily = stored_buckets(engine, links)
    assert daily == expected_daily
    assert hourly == expected_hourly


# A few values per dimension, so buckets collide; None is "unknown".
scans_strategy = st.lists(
    st.tuples(
        st.integers(0, 2),  # which link
        # A few hours around two UTC midnights: visitors come back within an hour, a day, and across days.
        st.tuples(st.sampled_from([0, 1, 2, 22, 23, 24, 25, 47, 48, 71]), st.integers(0, 59)),
        st.sampled_from(["mobile", "tablet", "desktop", "other"]),
        st.sampled_from([None, "iOS", "Android"]),
        st.sampled_from([None, "Mobile Safari", "Chrome"]),
        st.sampled_from([None, "FR", "DE"]),
        st.sampled_from([None, "www.instagram.com", "t.co"]),
        st.integers(0, 2).map(lambda n: n == 0),  # a bot, one time in three
        st.integers(0, 4),  # visitor: few, so they come back within a day and across days
    ),
    max_size=60,
)


@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
@given(scans=scans_strategy, data=st.data())
def test_every_bucket_equals_a_brute_force_count_of_the_raw_scans(engine, sessions, scans, data):
    links = new_links(engine, 3)
    rows = [
        scan_row(links[link], BASE + timedelta(hours=at[0], minutes=at[1]), device=device, os=os, browser=browser,
                 country=country, referrer=referrer, bot=bot, visitor=f"visitor-{visitor}")
        for link, at, device, os, browser, country, referrer, bot, visitor in scans
    ]
    # Inserted in batches in random order (later batches bring late scans: old times, new ids), with
    # rollups of random chunk sizes in between.
    position = 0
    while position < len(rows):
        size = data.draw(st.integers(1, 20), label="batch")
        insert_scans(engine, rows[position : position + size])
        position += size
        if data.draw(st.booleans(), label="roll up now"):
            rollups.rollup(sessions, chunk=data.draw(st.integers(1, 40), label="chunk"))
    report = rollups.rollup(sessions, chunk=data.draw(st.integers(1, 40), label="final chunk"))
    assert report.caught_up
    assert_buckets_match_raw(engine, sessions, links)

    before = stored_buckets(engine, links)
    assert rollups.rollup(sessions).folded == 0  # running it again changes nothing
    assert stored_buckets(engine, links) == before


def test_a_rebuild_recounts_the_same_numbers(engine, sessions):
    links = new_links(engine, 2)
    insert_scans(engine, [
        scan_row(links[i % 2], BASE + timedelta(hours=i * 5, minutes=i), visitor=f"v{i % 3}", bot=i % 4 == 0,
                 country=["FR", None][i % 2])
        for i in range(40)
    ])
    rollups.rollup(sessions, chunk=7)
    before = stored_buckets(engine, links)
    since, report = rollups.rebuild(sessions, date(2026, 3, 3), chunk=11)
    assert since == date(2026, 3, 3) and report.caught_up
    assert stored_buckets(engine, links) == before
    rollups.rebuild(sessions)
    assert stored_buckets(engine, links) == before
    assert_buckets_match_raw(engine, sessions, links)


def test_two_rollups_at_once_count_every_scan_once(backend, engine, sessions):
    links = new_links(engine, 3)
    insert_scans(engine, [
        scan_row(links[i % 3], BASE + timedelta(minutes=17 * i), visitor=f"v{i % 7}", bot=i % 5 == 0)
        for i in range(600)
    ])
    # Two workers' worth: separate engines (connections), started together, small chunks so they interleave.
    barrier = threading.Barrier(2)
    errors: list[BaseException] = []
    reports = []

    def run() -> None:
        other = create_sync_engine(backend.settings)
        try:
            barrier.wait()
            reports.append(rollups.rollup(sync_sessionmaker(other), chunk=25))
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
        finally:
            other.dispose()

    threads = [threading.Thread(target=run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    assert all(report.caught_up for report in reports)
    assert sum(report.folded for report in reports) >= 600  # between them, every scan once (and others')
    assert_buckets_match_raw(engine, sessions, links)


def test_retention_deletes_rolled_up_raw_scans_and_the_analytics_stay(fresh):
    engine, sessions = fresh
    links = new_links(engine, 1)
    now = datetime(2026, 6, 30, 12, tzinfo=UTC)
    old = [scan_row(links[0], datetime(2026, 6, 1, 10, tzinfo=UTC) + timedelta(minutes=i), visitor=f"o{i % 4}")
           for i in range(30)]
    recent = [scan_row(links[0], datetime(2026, 6, 29, 10, tzinfo=UTC), visitor="r")]
    insert_scans(engine, old + recent)
    rollups.rollup(sessions, retention_days=7, now=lambda: now)

    def raw(day: datetime) -> int:
        with engine.connect() as connection:
            return connection.scalar(select(func.count()).select_from(Scan).where(
                Scan.link_id == links[0], Scan.scanned_at >= day, Scan.scanned_at < day + timedelta(days=1)))

    # PostgreSQL drops whole months (app/scans/partitions.py): June's scans stay until July 1st is 7 days ago.
    by_month = engine.dialect.name == "postgresql"
    assert raw(datetime(2026, 6, 1, tzinfo=UTC)) == (30 if by_month else 0)
    assert raw(datetime(2026, 6, 29, tzinfo=UTC)) == 1
    _, daily = stored_buckets(engine, links)
    assert daily[(links[0], "all", "", "2026-06-01")] == (30, 0, 4)

    # A late scan from before the horizon: added to its buckets (not recounted from rows that are gone).
    insert_scans(engine, [scan_row(links[0], datetime(2026, 6, 1, 23, tzinfo=UTC), visitor="late")])
    rollups.rollup(sessions, retention_days=7, now=lambda: now)
    _, daily = stored_buckets(engine, links)
    assert daily[(links[0], "all", "", "2026-06-01")] == (31, 0, 5)
    # Its raw row goes once retention's walk (in id order) passes it: when the scans stored before it expire.
    assert raw(datetime(2026, 6, 1, tzinfo=UTC)) == (31 if by_month else 1)
    later = datetime(2026, 7, 10, tzinfo=UTC)
    insert_scans(engine, [scan_row(links[0], later, visitor="n")])
    rollups.rollup(sessions, retention_days=7, now=lambda: later)
    assert raw(datetime(2026, 6, 1, tzinfo=UTC)) == raw(datetime(2026, 6, 29, tzinfo=UTC)) == 0
    assert raw(later) == 1

    # A rebuild leaves the days whose raw scans are gone alone.
    since, _ = rollups.rebuild(sessions, date(2026, 5, 1))
    assert since is not None and since > date(2026, 6, 1)
    assert stored_buckets(engine, links)[1][(links[0], "all", "", "2026-06-01")] == (31, 0, 5)


def test_buckets_hold_nothing_for_links_without_scans(engine, sessions):
    links = new_links(engine, 1)
    rollups.rollup(sessions)
    with engine.connect() as connection:
        for table in (HourlyBucket, DailyBucket):
            assert connection.scalar(select(func.count()).select_from(table).where(table.link_id == links[0])) == 0


def test_a_day_gets_its_daily_buckets_when_it_is_over_and_late_scans_still_count(fresh):
    engine, sessions = fresh
    links = new_links(engine, 1)
    day = datetime(2026, 5, 4, tzinfo=UTC)
    insert_scans(engine, [scan_row(links[0], day + timedelta(hours=h), visitor=f"v{h % 3}") for h in range(10)])
    rollups.rollup(sessions, now=lambda: day + timedelta(hours=12))  # the day is still open
    hourly, daily = stored_buckets(engine, links)
    assert hourly and not daily
    report = rollups.rollup(sessions, now=lambda: day + timedelta(days=1, hours=1))
    assert report.closed == 1 and rollups.read_state(sessions).closed_before == date(2026, 5, 5)
    assert stored_buckets(engine, links)[1][(links[0], "all", "", "2026-05-04")] == (10, 0, 3)
    # A late scan of the closed day goes to its hourly and its daily buckets.
    insert_scans(engine, [scan_row(links[0], day + timedelta(hours=23), visitor="late")])
    rollups.rollup(sessions, now=lambda: day + timedelta(days=1, hours=2))
    assert_buckets_match_raw(engine, sessions, links)


def test_a_visitor_is_found_again_while_their_days_salt_lives_and_forgotten_after(fresh):
    engine, sessions = fresh
    links = new_links(engine, 1)
    day = datetime(2026, 5, 4, 9, tzinfo=UTC)
    next_day = day + timedelta(days=1)
    insert_scans(engine, [scan_row(links[0], day, visitor="v"), scan_row(links[0], day, visitor="b", bot=True),
                          scan_row(links[0], next_day, visitor="w")])
    rollups.rollup(sessions)

    def remembered() -> set[tuple[date, str]]:
        with engine.connect() as connection:
            return {(d, v) for d, v in connection.execute(select(VisitorScan.day, VisitorScan.visitor))}

    assert remembered() == {(day.date(), "v"), (next_day.date(), "w")}  # bots are never counted as visitors
    # Back the same day, in a later rollup: found, so still one visitor.
    insert_scans(engine, [scan_row(links[0], day + timedelta(hours=5), visitor="v")])
    rollups.rollup(sessions)
    assert stored_buckets(engine, links)[0][(links[0], "all", "", "2026-05-04 14")] == (1, 0, 1, 0, 1)
    assert_buckets_match_raw(engine, sessions, links)

    # The first day's salt is purged (scans.purge_visitor_salts): no scan can carry its hashes any more.
    with engine.begin() as connection:
        connection.execute(delete(VisitorSalt).where(VisitorSalt.day == day.date()))
    rollups.rollup(sessions)
    assert remembered() == {(next_day.date(), "w")}
    assert_buckets_match_raw(engine, sessions, links)
