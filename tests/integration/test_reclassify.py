"""Correcting history (issue #15): scans stored with verdicts the lists have since improved on are judged
again, over HTTP (a real analytics worker) and by `qrflow scans reclassify --since`; afterwards every count
(scans_total, hourly and daily buckets with their uniques, a code's and the workspace's analytics) equals a
brute-force recount of the raw scans, on SQLite and PostgreSQL."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select, update

from app.analytics import rollup as rollups
from app.identity.models import Scope
from app.links.models import Link
from app.scans.agents import classify
from app.scans.models import COUNTED, Scan
from tests.conftest import _issue
from tests.integration.analytics_helpers import brute_force, insert_scans, scan_row, stored_buckets
from tests.integration.test_analytics_api import analytics_worker, link_of  # noqa: F401
from tests.integration.test_redirect import IPHONE, dynamic_code
from tests.integration.test_scan_truth import ANDROID, JUNK, PREVIEW_FETCHERS

DAY = datetime(2026, 3, 10, tzinfo=UTC)
# (user agent, what an older list stored for it): wrong in every direction a verdict can move.
STALE = [
    (IPHONE, dict(bot=False, browser="Mobile Safari", os="iOS", device="mobile")),  # right already
    (PREVIEW_FETCHERS["Slack"], dict(bot=False, browser=None, os=None, device="other")),  # a bot taken for a person
    (PREVIEW_FETCHERS["iMessage"], dict(bot=False, browser="Safari", os="Mac OS X", device="desktop")),
    (JUNK, dict(bot=False, browser=None, os=None, device="other")),  # junk taken for a person
    (ANDROID, dict(bot=True, browser="Chrome Mobile", os="Android", device="other")),  # a person taken for a bot
]


def stale_history(gateway, caller, engine) -> list[uuid.UUID]:  # noqa: F811
    """Two codes, three days of scans stored as an older list judged them, rolled up, scans_total to match."""
    links = [link_of(engine, dynamic_code(gateway, caller)["id"]) for _ in range(2)]
    rows = []
    for n in range(90):
        user_agent, stored = STALE[n % len(STALE)]
        at = DAY + timedelta(days=n % 3, hours=(n * 7) % 24, minutes=n % 60)
        # Visitors come back within a day, so uniques differ from scans.
        row = scan_row(links[n % 2], at, visitor=f"visitor-{n % 11}", **stored)
        row["user_agent"] = user_agent
        rows.append(row)
    insert_scans(engine, rows)
    with engine.begin() as connection:
        for link in links:
            people = connection.scalar(select(func.count()).where(Scan.link_id == link, COUNTED))
            connection.execute(update(Link).where(Link.id == link).values(scans_total=people))
    return links


def assert_every_count_is_a_recount(gateway, caller, engine, sessions, links) -> None:  # noqa: F811
    watermark = rollups.read_state(sessions).last_scan_id
    assert stored_buckets(engine, links) == brute_force(engine, links, watermark)
    with engine.connect() as connection:
        for link in links:
            scans_total = connection.scalar(select(Link.scans_total).where(Link.id == link))
            assert scans_total == connection.scalar(select(func.count()).where(Scan.link_id == link, COUNTED))
    span = {"from": "2026-03-10", "to": "2026-03-13"}
    workspace = gateway.get("/v1/analytics", params=span, headers=caller.headers).json()
    hourly, _ = brute_force(engine, links, watermark)
    people = sum(counts[0] for (_, dimension, _, _), counts in hourly.items() if dimension == "all")
    not_people = sum(counts[1] for (_, dimension, _, _), counts in hourly.items() if dimension == "all")
    assert (workspace["total"], workspace["bots"]) == (people, not_people)
    _, daily = brute_force(engine, links, watermark)
    visitor_days = sum(counts[2] for (_, dimension, _, _), counts in daily.items() if dimension == "all")
    assert workspace["unique"] == visitor_days
    for top in workspace["top_codes"]:
        body = gateway.get(f"/v1/qrcodes/{top['id']}/analytics", params=span, headers=caller.headers).json()
        assert (body["total"], body["unique"], body["bots"]) == (top["scans"], top["unique"], top["bots"])
        by_class = {entry["value"]: entry for entry in body["breakdowns"]["class"]}
        assert sum(entry["scans"] for entry in by_class.values()) == body["total"]


def verdicts(engine, links) -> set[tuple[str, str]]:  # noqa: F811
    with engine.connect() as connection:
        return set(connection.execute(select(Scan.user_agent, Scan.agent_class).where(Scan.link_id.in_(links))))


def test_reclassify_over_http_corrects_every_count(gateway, backend, engine, sessions, analytics_worker):  # noqa: F811
    admin = _issue(backend.settings, f"reclassify-{uuid.uuid4().hex[:8]}", Scope.ADMIN)
    links = stale_history(gateway, admin, engine)
    rollups.rollup(sessions)
    assert_every_count_is_a_recount(gateway, admin, engine, sessions, links)  # consistent, and wrong

    writer = _issue(backend.settings, admin.workspace, Scope.WRITE)
    assert gateway.post("/v1/admin/reclassify", headers=writer.headers).status_code == 403
    # Platform-wide: a workspace's admin may not start it, an operator may.
    assert gateway.post("/v1/admin/reclassify", headers=admin.headers).status_code == 403
    operator = _issue(backend.settings, admin.workspace, Scope.OPERATOR)
    bad = gateway.post("/v1/admin/reclassify", params={"since": "2026-13-01"}, headers=operator.headers)
    assert bad.status_code == 422
    accepted = gateway.post("/v1/admin/reclassify", headers=operator.headers)
    assert accepted.status_code == 202, accepted.text
    task = accepted.headers["location"]
    deadline = time.monotonic() + 120
    while (state := gateway.get(task, headers=admin.headers).json())["state"] != "SUCCESS":
        assert state["state"] in ("PENDING", "STARTED", "PROGRESS"), state
        assert time.monotonic() < deadline, f"the reclassify task is still {state['state']}"
        time.sleep(0.2)
    assert state["result"]["changed"] >= 72  # four of every five scans were judged wrong
    rollups.rollup(sessions)

    assert verdicts(engine, links) == {(agent, classify(agent).agent_class) for agent, _ in STALE}
    assert_every_count_is_a_recount(gateway, admin, engine, sessions, links)
    # Run again: nothing left to change, nothing moves.
    accepted = gateway.post("/v1/admin/reclassify", headers=operator.headers)
    deadline = time.monotonic() + 120
    while (state := gateway.get(accepted.headers["location"], headers=admin.headers).json())["state"] != "SUCCESS":
        assert time.monotonic() < deadline
        time.sleep(0.2)
    assert (state["result"]["changed"], state["result"]["people_added"]) == (0, 0)
    assert_every_count_is_a_recount(gateway, admin, engine, sessions, links)


@pytest.mark.usefixtures("gateway")
def test_the_cli_judges_again_only_scans_since_a_day(gateway, backend, engine, sessions):  # noqa: F811
    admin = _issue(backend.settings, f"reclassify-{uuid.uuid4().hex[:8]}", Scope.ADMIN)
    links = stale_history(gateway, admin, engine)
    rollups.rollup(sessions)
    env = {**os.environ, "QRFLOW_DATABASE_URL": backend.settings.database_url,
           "QRFLOW_DATA_DIR": str(backend.settings.data_dir)}
    done = subprocess.run([sys.executable, "-m", "app.cli", "scans", "reclassify", "--since", "2026-03-11"],
                          env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "changed" in done.stdout + done.stderr
    rollups.rollup(sessions)
    with engine.connect() as connection:
        rows = connection.execute(select(Scan.scanned_at, Scan.user_agent, Scan.agent_class, Scan.is_bot)
                                  .where(Scan.link_id.in_(links))).all()
    for scanned_at, user_agent, agent_class, is_bot in rows:
        judged_again = scanned_at.replace(tzinfo=UTC) >= DAY + timedelta(days=1)
        stale = dict(STALE)[user_agent]
        expected = classify(user_agent).agent_class if judged_again else ("bot" if stale["bot"] else "person")
        assert ("bot" if is_bot else agent_class) == expected, (scanned_at, user_agent)
    assert_every_count_is_a_recount(gateway, admin, engine, sessions, links)
