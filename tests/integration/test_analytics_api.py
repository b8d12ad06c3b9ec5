"""The analytics API through the real gateway, on SQLite and PostgreSQL: numbers from the buckets equal
brute-force counts over the raw scans for any range, interval and time zone; zero-filled series, breakdowns,
CSV exports, workspaces kept apart, every bad parameter a 422 naming it, and a rollup triggered over HTTP
and run by a real `qrflow worker -Q analytics`."""

from __future__ import annotations

import csv
import io
import os
import random
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import case, func, select

from app.analytics import rollup as rollups
from app.analytics import service
from app.identity.models import Scope
from app.kit.db import utcnow
from app.qrcodes.models import QRCode
from app.scans.models import Scan
from tests.conftest import _issue
from tests.integration.analytics_helpers import NOT_COUNTED, insert_scans, scan_row
from tests.integration.test_qrcodes_api import created

START = datetime(2026, 3, 27, tzinfo=UTC)  # Paris moves its clocks on the 29th: a 23-hour local day
ZONES = [None, "Europe/Paris", "America/New_York", "Asia/Kolkata"]


def link_of(engine, code_id: str) -> uuid.UUID:
    with engine.connect() as connection:
        return connection.scalar(select(QRCode.link_id).where(QRCode.id == uuid.UUID(code_id)))


def dynamic_code(gateway, caller, **fields) -> dict:
    return created(gateway, caller, {"kind": "url", "data": {"url": "https://example.com/a"}, **fields})


def analytics(gateway, caller, code_id: str, **params) -> dict:
    response = gateway.get(f"/v1/qrcodes/{code_id}/analytics", params=params, headers=caller.headers)
    assert response.status_code == 200, response.text
    return response.json()


def brute(engine, sessions, link_id, start: datetime, end: datetime, **where) -> tuple[int, int, int]:
    """(scans, bots, unique) of the raw scans in [start, end), straight from the table."""
    query = select(
        func.coalesce(func.sum(case((NOT_COUNTED, 0), else_=1)), 0),
        func.coalesce(func.sum(case((NOT_COUNTED, 1), else_=0)), 0),
        func.count(func.distinct(case((NOT_COUNTED, None), else_=Scan.visitor))),
    ).where(Scan.link_id == link_id, Scan.scanned_at >= start, Scan.scanned_at < end,
            Scan.id <= rollups.read_state(sessions).last_scan_id)
    for column, value in where.items():
        query = query.where(getattr(Scan, column).is_(None) if value is None else getattr(Scan, column) == value)
    with engine.connect() as connection:
        return tuple(connection.execute(query).one())


@pytest.fixture(scope="module")
def dataset(gateway, alice, engine, sessions):
    """One code with 500 scans over four days around a DST change: people coming back within an hour and a
    day (visitor hashes are per UTC day), bots, and a few values per dimension."""
    code = dynamic_code(gateway, alice, title="dataset")
    link_id = link_of(engine, code["id"])
    rng = random.Random(7)
    rows = []
    for _ in range(500):
        at = START + timedelta(seconds=rng.randrange(4 * 86400))
        rows.append(scan_row(
            link_id, at, visitor=f"{at.date()}-{rng.randrange(25)}", bot=rng.random() < 0.1,
            device=rng.choice(["mobile", "mobile", "desktop", "tablet"]), os=rng.choice(["iOS", "Android", None]),
            country=rng.choice(["FR", "US", "IN", None]), referrer=rng.choice([None, "t.co", "www.instagram.com"]),
        ))
    insert_scans(engine, rows)
    rollups.rollup(sessions)
    return code, link_id


def point_start(point: dict) -> datetime:
    return datetime.fromisoformat(point["ts"])


def utc_boundaries(body: dict) -> list[tuple[datetime, datetime]]:
    """Each point's [start, end) in UTC, worked out from its label: local midnight (or the hour) floored to
    the whole UTC hour it falls in."""
    starts = [datetime.fromisoformat(p["ts"]).astimezone(UTC).replace(minute=0, second=0, microsecond=0)
              for p in body["series"]]
    ends = starts[1:] + [datetime.fromisoformat(body["to"])]
    return list(zip(starts, ends, strict=True))


@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    offset=st.integers(-6 * 60, 4 * 24 * 60), length=st.integers(1, 4 * 24 * 60),
    interval=st.sampled_from(["hour", "day"]), tz=st.sampled_from(ZONES),
)
def test_every_number_equals_a_brute_force_count_of_the_raw_scans(
    gateway, alice, engine, sessions, dataset, offset, length, interval, tz
):
    code, link_id = dataset
    start = START + timedelta(minutes=offset)
    params = {"from": start.isoformat(), "to": (start + timedelta(minutes=length)).isoformat(), "interval": interval}
    if tz:
        params["tz"] = tz
    body = analytics(gateway, alice, code["id"], **params)
    assert body["tz"] == (tz or "UTC")
    assert datetime.fromisoformat(body["from"]) <= start < datetime.fromisoformat(body["to"])

    for point, (low, high) in zip(body["series"], utc_boundaries(body), strict=True):
        assert (point["scans"], point["bots"], point["unique"]) == brute(engine, sessions, link_id, low, high), point
        if tz:
            assert datetime.fromisoformat(point["ts"]).utcoffset() == (
                point_start(point).astimezone(ZoneInfo(tz)).utcoffset()
            )

    low, high = datetime.fromisoformat(body["from"]), datetime.fromisoformat(body["to"])
    scans, bots, unique = brute(engine, sessions, link_id, low, high)
    assert (body["total"], body["bots"]) == (scans, bots)
    assert body["total"] == sum(p["scans"] for p in body["series"])
    if body["unique_exact"]:
        assert body["unique"] == unique
    else:  # a range inside one UTC day: an upper bound, no more than its hours' sum
        assert unique <= body["unique"] <= sum(p["unique"] for p in body["series"])
    for entry in body["breakdowns"]["country"]:
        expected = brute(engine, sessions, link_id, low, high, country=entry["value"])
        assert (entry["scans"], entry["bots"]) == expected[:2]
        assert entry["unique"] == expected[2] if body["unique_exact"] else entry["unique"] >= expected[2]


def test_series_are_zero_filled_and_breakdowns_ranked(gateway, alice, engine, sessions):
    code = dynamic_code(gateway, alice)
    link_id = link_of(engine, code["id"])
    day = datetime(2026, 2, 10, tzinfo=UTC)
    insert_scans(engine, [
        scan_row(link_id, day + timedelta(hours=9), visitor="a", device="mobile", country="FR", referrer="t.co"),
        scan_row(link_id, day + timedelta(hours=9, minutes=5), visitor="a", device="mobile", country="FR"),
        scan_row(link_id, day + timedelta(hours=11), visitor="b", device="desktop", os=None, country="DE"),
        scan_row(link_id, day + timedelta(hours=12), visitor="bot", device="other", bot=True),
        scan_row(link_id, day + timedelta(days=2, hours=1), visitor="c", device="mobile"),
    ])
    rollups.rollup(sessions)

    body = analytics(gateway, alice, code["id"], **{"from": "2026-02-09", "to": "2026-02-14"})
    assert [p["ts"] for p in body["series"]] == [f"2026-02-{d:02d}T00:00:00Z" for d in range(9, 14)]
    assert [(p["scans"], p["unique"], p["bots"]) for p in body["series"]] == [
        (0, 0, 0), (3, 2, 1), (0, 0, 0), (1, 1, 0), (0, 0, 0)]
    assert (body["total"], body["unique"], body["bots"], body["unique_exact"]) == (4, 3, 1, True)
    assert body["as_of"] is not None
    assert body["breakdowns"]["device"] == [
        {"value": "mobile", "scans": 3, "unique": 2, "bots": 0},
        {"value": "desktop", "scans": 1, "unique": 1, "bots": 0},
        {"value": "other", "scans": 0, "unique": 0, "bots": 1},
    ]
    assert body["breakdowns"]["os"][1] == {"value": None, "scans": 1, "unique": 1, "bots": 0}  # unknown
    assert {e["value"]: e["scans"] for e in body["breakdowns"]["referrer"]} == {None: 3, "t.co": 1}

    hourly = analytics(gateway, alice, code["id"], **{"from": "2026-02-10T08:30:00Z", "to": "2026-02-10T12:00:00Z",
                                                      "interval": "hour"})
    assert [(p["ts"][11:16], p["scans"], p["unique"]) for p in hourly["series"]] == [
        ("08:00", 0, 0), ("09:00", 2, 1), ("10:00", 0, 0), ("11:00", 1, 1)]
    assert hourly["unique_exact"] is False and hourly["unique"] == 2

    # Days in Tokyo (UTC+9), from and to read there: 10 Feb 09:00-12:00 UTC is that evening; 12 Feb 01:00 UTC
    # is 10:00 on the 12th.
    tokyo = analytics(gateway, alice, code["id"], **{"from": "2026-02-10", "to": "2026-02-13", "tz": "Asia/Tokyo"})
    assert [(p["ts"], p["scans"], p["bots"]) for p in tokyo["series"]] == [
        ("2026-02-10T00:00:00+09:00", 3, 1), ("2026-02-11T00:00:00+09:00", 0, 0), ("2026-02-12T00:00:00+09:00", 1, 0)]


def test_today_is_counted_from_hourly_buckets_until_it_is_over(gateway, alice, engine, sessions):
    """Today has no daily buckets yet (the rollup writes a day's when it is over): the same numbers come from
    its hours, in UTC and in a zone whose days cross UTC midnight."""
    code = dynamic_code(gateway, alice)
    link_id = link_of(engine, code["id"])
    now = utcnow()
    today = now.replace(hour=0, minute=0, second=0, microsecond=0)
    rng = random.Random(3)
    times = [today - timedelta(hours=30)
             + timedelta(minutes=rng.randrange(int((now - today).total_seconds() // 60) + 1800))
             for _ in range(60)]
    insert_scans(engine, [scan_row(link_id, at, visitor=f"{at.date()}-{rng.randrange(8)}", bot=rng.random() < 0.1)
                          for at in times if at < now])
    rollups.rollup(sessions)
    for tz in (None, "America/New_York", "Asia/Tokyo"):
        params = {"from": (today - timedelta(days=2)).isoformat(), "to": now.isoformat(), **({"tz": tz} if tz else {})}
        body = analytics(gateway, alice, code["id"], **params)
        for point, (low, high) in zip(body["series"], utc_boundaries(body), strict=True):
            assert (point["scans"], point["bots"], point["unique"]) == brute(engine, sessions, link_id, low, high)
        low, high = datetime.fromisoformat(body["from"]), datetime.fromisoformat(body["to"])
        assert (body["total"], body["bots"], body["unique"]) == brute(engine, sessions, link_id, low, high)


def test_the_default_range_is_the_last_30_days(gateway, alice, engine, sessions):
    code = dynamic_code(gateway, alice)
    link_id = link_of(engine, code["id"])
    now = utcnow()
    insert_scans(engine, [scan_row(link_id, now - timedelta(days=2), visitor="x"),
                          scan_row(link_id, now - timedelta(days=40), visitor="y")])
    rollups.rollup(sessions)
    body = analytics(gateway, alice, code["id"])
    assert len(body["series"]) in (30, 31) and body["total"] == 1
    assert datetime.fromisoformat(body["to"]) > now


def test_a_static_code_has_zeros_and_other_workspaces_get_404(gateway, alice, bob):
    static = created(gateway, alice, {"kind": "text", "data": {"text": "static"}})
    body = analytics(gateway, alice, static["id"], **{"from": "2026-01-01", "to": "2026-01-03"})
    assert [p["scans"] for p in body["series"]] == [0, 0] and body["breakdowns"]["device"] == []
    for path in ("analytics", "analytics.csv", "scans.csv"):
        response = gateway.get(f"/v1/qrcodes/{static['id']}/{path}", headers=bob.headers)
        assert response.status_code == 404 and response.json()["code"] == "not_found"


@pytest.mark.parametrize(("params", "field"), [
    ({"tz": "Mars/Olympus_Mons"}, "tz"),
    ({"tz": "../../etc/passwd"}, "tz"),
    ({"from": "2026-02-10", "to": "2026-02-10"}, "to"),
    ({"from": "2020-01-01", "to": "2026-01-01", "interval": "hour"}, "from"),
    ({"from": "1000-01-01", "to": "9000-01-01"}, "from"),
    ({"interval": "week"}, "interval"),
    ({"from": "yesterday"}, "from"),
    ({"to": "0001-01-01T00:00:00Z"}, "from"),
])
def test_bad_parameters_are_422_naming_the_field(gateway, alice, dataset, params, field):
    code, _ = dataset
    response = gateway.get(f"/v1/qrcodes/{code['id']}/analytics", params=params, headers=alice.headers)
    assert response.status_code == 422, response.text
    assert [e["field"] for e in response.json()["errors"]] == [field]


def test_csv_exports(gateway, alice, engine, sessions, monkeypatch):
    code = dynamic_code(gateway, alice)
    link_id = link_of(engine, code["id"])
    at = datetime(2026, 2, 20, 10, tzinfo=UTC)
    rows = [scan_row(link_id, at, visitor=f"v{i}") for i in range(7)]  # same instant: keyset ties on id
    rows[3]["user_agent"] = "=HYPERLINK(\"http://evil\")"
    insert_scans(engine, rows)
    rollups.rollup(sessions)

    series = gateway.get(f"/v1/qrcodes/{code['id']}/analytics.csv", params={"from": "2026-02-19", "to": "2026-02-22"},
                         headers=alice.headers)
    assert series.status_code == 200 and series.headers["content-type"].startswith("text/csv")
    assert "attachment" in series.headers["content-disposition"]
    assert list(csv.reader(io.StringIO(series.text))) == [
        ["ts", "scans", "unique", "bots"],
        ["2026-02-19T00:00:00+00:00", "0", "0", "0"],
        ["2026-02-20T00:00:00+00:00", "7", "7", "0"],
        ["2026-02-21T00:00:00+00:00", "0", "0", "0"],
    ]

    monkeypatch.setattr(service, "SCANS_CSV_PAGE", 3)  # several pages
    raw = gateway.get(f"/v1/qrcodes/{code['id']}/scans.csv", headers=alice.headers)
    assert raw.status_code == 200
    table = list(csv.DictReader(io.StringIO(raw.text)))
    assert [r["visitor"] for r in table] == [f"v{i}" for i in range(7)]
    assert table[3]["user_agent"] == "'=HYPERLINK(\"http://evil\")"  # never a formula in a spreadsheet
    assert not {"ip", "ip_address"} & set(table[0])
    window = gateway.get(f"/v1/qrcodes/{code['id']}/scans.csv", params={"from": "2026-02-20T10:00:01"},
                         headers=alice.headers)
    assert window.text.count("\r\n") == 1  # the header alone
    bad = gateway.get(f"/v1/qrcodes/{code['id']}/scans.csv", params={"from": "2026-02-21", "to": "2026-02-20"},
                      headers=alice.headers)
    assert bad.status_code == 422 and bad.json()["errors"][0]["field"] == "to"


def test_workspace_totals_and_top_codes(gateway, engine, sessions, backend):
    carol = _issue(backend.settings, f"workspace-{uuid.uuid4().hex[:8]}", Scope.WRITE)
    codes = [dynamic_code(gateway, carol, title=f"c{i}") for i in range(3)]
    day = datetime(2026, 2, 1, 12, tzinfo=UTC)
    for i, code in enumerate(codes):
        insert_scans(engine, [scan_row(link_of(engine, code["id"]), day, visitor=f"v{n}") for n in range(i + 1)])
    rollups.rollup(sessions)
    assert gateway.delete(f"/v1/qrcodes/{codes[2]['id']}", headers=carol.headers).status_code == 204

    body = gateway.get("/v1/analytics", params={"from": "2026-02-01", "to": "2026-02-02", "top": 5},
                       headers=carol.headers).json()
    assert (body["total"], body["unique"], body["bots"]) == (6, 6, 0)  # the deleted code's scans happened
    assert [(c["title"], c["scans"]) for c in body["top_codes"]] == [("c1", 2), ("c0", 1)]


# --- a rollup over HTTP, run by a real analytics worker ------------------------------------------------


@pytest.fixture(scope="module")
def analytics_worker(backend, redis_url, tmp_path_factory):
    """`qrflow worker -Q analytics` on the test broker and the backend's database (the in-process test
    worker consumes qr, scans and default only)."""
    log = (tmp_path_factory.mktemp("analytics-worker") / "worker.log").open("wb")
    env = {**os.environ, "QRFLOW_REDIS_URL": redis_url, "QRFLOW_DATABASE_URL": backend.settings.database_url,
           "QRFLOW_DATA_DIR": str(backend.settings.data_dir), "QRFLOW_LOG_FORMAT": "json"}
    worker = subprocess.Popen(
        [sys.executable, "-m", "app.cli", "worker", "-Q", "analytics", "-c", "1", "--pool", "solo"],
        env=env, stdout=log, stderr=log,
    )
    yield worker
    worker.terminate()
    worker.wait(30)
    log.close()


def test_a_rollup_triggered_over_http_reports_its_state(gateway, alice, bob, backend, engine, analytics_worker):
    operator = _issue(backend.settings, alice.workspace, Scope.OPERATOR)
    assert gateway.post("/v1/analytics/rollup", headers=alice.headers).status_code == 403  # write scope
    # A workspace's admin neither starts the platform-wide rollup nor sees its report (#13 item 8).
    admin = _issue(backend.settings, alice.workspace, Scope.ADMIN)
    refused = gateway.post("/v1/analytics/rollup", headers=admin.headers)
    assert refused.status_code == 403 and "operator" in refused.json()["message"]

    code = dynamic_code(gateway, alice)
    insert_scans(engine, [scan_row(link_of(engine, code["id"]), datetime(2026, 2, 25, 8, tzinfo=UTC))])
    accepted = gateway.post("/v1/analytics/rollup", headers=operator.headers)
    assert accepted.status_code == 202, accepted.text
    task_id = accepted.json()["task_id"]
    assert accepted.headers["location"] == f"/v1/tasks/{task_id}"

    deadline = time.monotonic() + 60
    while (state := gateway.get(f"/v1/tasks/{task_id}", headers=alice.headers).json())["state"] != "SUCCESS":
        assert state["state"] in ("PENDING", "STARTED"), state
        assert time.monotonic() < deadline, f"the rollup task is still {state['state']}"
        time.sleep(0.2)
    assert state["result"]["caught_up"] is True and state["done_at"]
    body = analytics(gateway, alice, code["id"], **{"from": "2026-02-25", "to": "2026-02-26"})
    assert body["total"] == 1

    assert gateway.get(f"/v1/tasks/{task_id}", headers=bob.headers).status_code == 404  # not bob's
    unknown = gateway.get(f"/v1/tasks/{uuid.uuid4()}", headers=alice.headers)
    assert unknown.status_code == 404 and unknown.json()["errors"][0]["field"] == "task_id"
