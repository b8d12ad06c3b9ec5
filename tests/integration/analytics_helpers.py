"""Shared by the analytics tests: links and scans written straight into a backend's database, and the
brute-force counts every bucket must equal (plain SQL over the raw table, independent of the rollup)."""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Iterable
from datetime import UTC, datetime

from sqlalchemy import Engine, case, func, insert, literal_column, not_, select, text
from sqlalchemy.orm import Session

from app.analytics.models import DIMENSIONS, DailyBucket, HourlyBucket
from app.identity.models import Workspace
from app.kit.db import dialect_of, utcnow
from app.links.models import Link
from app.scans import partitions
from app.scans.models import CLASS, COUNTED, Scan, VisitorSalt

COLUMN = {"device": Scan.device, "os": Scan.os, "browser": Scan.browser, "country": Scan.country,
          "referrer": Scan.referrer_host, "class": CLASS}
# Only a person's scan counts (app/scans/agents.py); bots' and unknown agents' are the buckets' `bots`.
NOT_COUNTED = not_(COUNTED)


def new_links(engine: Engine, count: int, workspace: str = "analytics-tests") -> list[uuid.UUID]:
    with Session(engine, expire_on_commit=False) as session, session.begin():
        workspace_id = session.scalar(select(Workspace.id).where(Workspace.name == workspace))
        if workspace_id is None:
            row = Workspace(name=workspace)
            session.add(row)
            session.flush()
            workspace_id = row.id
        links = [Link(workspace_id=workspace_id, slug=f"a-{secrets.token_hex(8)}", target_url="https://example.com/")
                 for _ in range(count)]
        session.add_all(links)
    return [link.id for link in links]


def scan_row(link_id: uuid.UUID, at: datetime, *, visitor: str = "v", device: str = "mobile", os: str | None = "iOS",
             browser: str | None = "Mobile Safari", country: str | None = None, referrer: str | None = None,
             bot: bool = False, agent_class: str | None = None) -> dict:
    return {
        "event_id": uuid.uuid4(), "link_id": link_id, "scanned_at": at, "stored_at": utcnow(),
        "user_agent": "test", "referrer": None, "referrer_host": referrer, "browser": browser, "os": os,
        "device": device, "is_bot": bot, "country": country, "visitor": visitor, "ip_anonymized": None,
    } | ({"agent_class": agent_class} if agent_class else {})


def insert_scans(engine: Engine, rows: list[dict]) -> None:
    """Stored as ingestion stores them: with their UTC days' visitor salts (which a rollup's forgetting of
    past visitors goes by), and on PostgreSQL into their months' partitions."""
    if rows:
        days = {row["scanned_at"].astimezone(UTC).date() for row in rows}
        with engine.begin() as connection:
            if partitions.is_partitioned(connection):
                partitions.ensure(connection, {partitions.month_of(row["scanned_at"]) for row in rows})
            connection.execute(
                dialect_of(connection).insert(VisitorSalt).on_conflict_do_nothing(index_elements=["day"]),
                [{"day": day, "salt": secrets.token_bytes(32)} for day in days],
            )
            connection.execute(insert(Scan), rows)


def _hour(engine: Engine):
    if engine.dialect.name == "postgresql":
        return func.to_char(
            func.timezone(literal_column("'UTC'"), Scan.scanned_at), literal_column("'YYYY-MM-DD HH24'")
        )
    return func.substr(Scan.scanned_at, literal_column("1"), literal_column("13"))


def _day(engine: Engine):
    if engine.dialect.name == "postgresql":
        return func.to_char(func.timezone(literal_column("'UTC'"), Scan.scanned_at), literal_column("'YYYY-MM-DD'"))
    return func.substr(Scan.scanned_at, literal_column("1"), literal_column("10"))


def _value(dimension: str):
    # Literal SQL, not bound parameters: PostgreSQL must see the same expression in SELECT and GROUP BY
    # (which groups by the output names: a constant cannot be a GROUP BY term there).
    return literal_column("''") if dimension == "all" else func.coalesce(COLUMN[dimension], literal_column("''"))


def brute_force(engine: Engine, links: Iterable[uuid.UUID], watermark: int) -> tuple[dict, dict]:
    """({(link, dimension, value, 'YYYY-MM-DD HH'): (scans, bots, visitors, first_seen, last_seen)},
    {(link, dimension, value, 'YYYY-MM-DD'): (scans, bots, visitors)}) over the scans with id <= watermark."""
    links = list(links)
    hourly: dict = {}
    daily: dict = {}
    not_bot = case((NOT_COUNTED, 0), else_=1)
    bot = case((NOT_COUNTED, 1), else_=0)
    distinct_visitors = func.count(func.distinct(case((NOT_COUNTED, None), else_=Scan.visitor)))
    with engine.connect() as connection:
        for dimension in DIMENSIONS:
            value = _value(dimension).label("value")
            for grain, key, target in (("hour", _hour(engine), hourly), ("day", _day(engine), daily)):
                key = key.label("k")
                query = (
                    select(Scan.link_id, value, key, func.sum(not_bot), func.sum(bot), distinct_visitors)
                    .where(Scan.link_id.in_(links), Scan.id <= watermark)
                    .group_by(Scan.link_id, text("value"), text("k"))
                )
                for link_id, v, k, scans, bots, visitors in connection.execute(query):
                    target[(link_id, dimension, v, k)] = [scans, bots, visitors] + ([0, 0] if grain == "hour" else [])
            # first_seen / last_seen: each visitor's first and last hour of each day, counted per hour.
            per_visitor = (
                select(Scan.link_id.label("link_id"), value, _day(engine).label("d"), Scan.visitor,
                       func.min(_hour(engine)).label("first"), func.max(_hour(engine)).label("last"))
                .where(Scan.link_id.in_(links), Scan.id <= watermark, COUNTED)
                .group_by(Scan.link_id, text("value"), text("d"), Scan.visitor)
                .subquery()
            )
            for position, column in ((3, per_visitor.c.first), (4, per_visitor.c.last)):
                query = select(per_visitor.c.link_id, per_visitor.c.value, column, func.count()).group_by(
                    per_visitor.c.link_id, per_visitor.c.value, column
                )
                for link_id, v, hour, count in connection.execute(query):
                    hourly[(link_id, dimension, v, hour)][position] = count
    return ({k: tuple(v) for k, v in hourly.items()}, {k: tuple(v) for k, v in daily.items()})


def stored_buckets(engine: Engine, links: Iterable[uuid.UUID]) -> tuple[dict, dict]:
    """The buckets as stored, keyed like brute_force's; rows that count nothing are left out."""
    links = list(links)
    hourly, daily = {}, {}
    with engine.connect() as connection:
        for row in connection.execute(select(HourlyBucket.__table__).where(HourlyBucket.link_id.in_(links))):
            counts = (row.scans, row.bots, row.visitors, row.first_seen, row.last_seen)
            if any(counts):
                hourly[(row.link_id, row.dimension, row.value, _utc(row.start).strftime("%Y-%m-%d %H"))] = counts
        for row in connection.execute(select(DailyBucket.__table__).where(DailyBucket.link_id.in_(links))):
            counts = (row.scans, row.bots, row.visitors)
            if any(counts):
                daily[(row.link_id, row.dimension, row.value, _utc(row.start).strftime("%Y-%m-%d"))] = counts
    return hourly, daily


def _utc(value: datetime) -> datetime:
    from datetime import UTC

    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
