"""Correcting history: judge stored scans again with today's classifier, and recount what they changed.

Crawler lists improve (app/scans/agents.py), so a verdict stored last month may be wrong today. Every scan
keeps the raw user agent it was judged by, which is all re-evaluation needs. `reclassify` walks the stored
scans (those scanned since a UTC day, or all), asks the classifier again (one verdict per distinct user
agent, cached), and where browser, OS, device or class changed:
- updates the scan row;
- moves the link's scans_total by the scans that became, or stopped being, a person's (exact, also for
  links whose older scans retention has deleted: only the changed scans move it);
- recounts the buckets from the first UTC day with a changed scan (app/analytics/rollup.py, recount).
All in one transaction that holds the rollup's lock: readers see the old numbers until the new ones are all
there, and a run that dies changes nothing, so running it again is always safe. On SQLite the transaction
holds the database's write lock throughout (scan ingestion waits, as for `qrflow rollup --rebuild`).
"""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, date, datetime, time
from typing import Any

import structlog
from sqlalchemy import bindparam, func, select, update
from sqlalchemy.orm import Session, sessionmaker

from app.analytics import rollup as rollups
from app.links.models import Link
from app.scans import agents
from app.scans.models import Scan

log = structlog.get_logger(__name__)

CHUNK = 5_000  # scans read per query: a bounded batch of rows in memory


@dataclass
class ReclassifyReport:
    examined: int = 0  # stored scans judged again
    changed: int = 0  # of which browser, OS, device or class changed
    people_added: int = 0  # net change of scans_total over all links (negative: fewer people)
    links_changed: int = 0  # links whose scans_total moved
    recounted_from: str | None = None  # the first UTC day whose buckets were recounted (None: none)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def reclassify(
    sessions: sessionmaker[Session],
    since: date | None = None,
    *,
    chunk: int = CHUNK,
    progress: Callable[[ReclassifyReport], None] | None = None,
) -> ReclassifyReport:
    """Judge again the scans scanned since UTC day `since` (None: all) and recount what changed."""
    report = ReclassifyReport()
    start = datetime.combine(since, time(), UTC) if since else None
    with sessions.begin() as session:
        rollups.lock(session)  # first: no rollup folds a scan while its verdict may change
        top = session.scalar(select(func.max(Scan.id))) or 0
        people: Counter[uuid.UUID] = Counter()
        first_changed: date | None = None
        low = 0
        while low < top:
            high = min(low + chunk, top)
            changed_day = _judge_again(session, low, high, start, report, people)
            if changed_day is not None and (first_changed is None or changed_day < first_changed):
                first_changed = changed_day
            low = high
            if progress is not None:
                progress(report)
        _move_scans_totals(session, people)
        report.people_added = sum(people.values())
        report.links_changed = sum(1 for added in people.values() if added)
        if first_changed is not None:
            recounted = rollups.recount(session, first_changed)
            report.recounted_from = str(recounted or first_changed)
    log.info("scans_reclassified", since=str(since), **report.to_dict())
    return report


def _judge_again(
    session: Session, low: int, high: int, start: datetime | None, report: ReclassifyReport,
    people: Counter[uuid.UUID],
) -> date | None:
    """Scans with low < id <= high: update those whose verdict changed; the first UTC day among them."""
    query = select(
        Scan.id, Scan.link_id, Scan.scanned_at, Scan.user_agent, Scan.browser, Scan.os, Scan.device, Scan.is_bot,
        Scan.agent_class,
    ).where(Scan.id > low, Scan.id <= high)
    if start is not None:
        query = query.where(Scan.scanned_at >= start)
    updates = []
    first: date | None = None
    for scan_id, link_id, scanned_at, user_agent, browser, os, device, is_bot, agent_class in session.execute(query):
        report.examined += 1
        agent = agents.classify(user_agent)
        if (agent.browser, agent.os, agent.device, agent.is_bot, agent.agent_class) == (
            browser, os, device, is_bot, agent_class
        ):
            continue
        was_person = not is_bot and agent_class == "person"
        people[link_id] += int(agent.is_person) - int(was_person)
        updates.append({"scan": scan_id, "new_browser": agent.browser, "new_os": agent.os,
                        "new_device": agent.device, "new_is_bot": agent.is_bot, "new_class": agent.agent_class})
        day = scanned_at.astimezone(UTC).date()
        first = day if first is None or day < first else first
    if updates:
        scans = Scan.__table__
        session.execute(
            update(scans)
            .where(scans.c.id == bindparam("scan"))
            .values(browser=bindparam("new_browser"), os=bindparam("new_os"), device=bindparam("new_device"),
                    is_bot=bindparam("new_is_bot"), agent_class=bindparam("new_class")),
            updates,
        )
        report.changed += len(updates)
    return first


def _move_scans_totals(session: Session, people: Counter[uuid.UUID]) -> None:
    """In link order, as ingestion adds to them (app/scans/ingest.py): no deadlock between the two."""
    moves = [{"link": link, "added": added} for link, added in sorted(people.items()) if added]
    if moves:
        links = Link.__table__
        session.execute(
            update(links)
            .where(links.c.id == bindparam("link"))
            .values(scans_total=links.c.scans_total + bindparam("added")),
            moves,
        )
