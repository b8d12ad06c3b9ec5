"""Storing scans, as the scan workers run it: enrich a batch of ScanRecorded events, insert them at once.

Exactly once, whatever is redelivered: one transaction inserts the batch with ON CONFLICT (event_id,
scanned_at) DO NOTHING (a redelivered event carries its time too: app/scans/partitions.py) and adds to
each link's scans_total only the rows it really inserted (RETURNING). A batch that was stored before its
worker died is, when redelivered, a no-op; one that was not is stored in full.

No raw IP is stored. A visitor is the hash of IP and user agent with a random salt of the scan's UTC day
(visitor_salts): the same person counts once a day, and once the day's salt is purged
(purge_visitor_salts, SALT_KEEP_DAYS later) nobody can link a hash to an IP again. A scan arriving after
its day's salt was purged (an outage of days) gets a fresh salt: it may count as one more visitor.
"""

from __future__ import annotations

import secrets
import time
import uuid
from collections import Counter
from datetime import date, datetime, timedelta

import structlog
from sqlalchemy import String, bindparam, cast, delete, func, literal_column, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from app.kit.db import dialect_of, utcnow
from app.links.models import Link
from app.scans import partitions
from app.scans.enrichment import Enricher, visitor_hash
from app.scans.events import ScanRecorded
from app.scans.models import Scan, VisitorSalt
from app.scans.watermark import hold_for_insert
from app.webhooks import sources as webhooks

log = structlog.get_logger(__name__)

SALT_KEEP_DAYS = 2  # the day itself, and one more for scans that arrive late
_DEDUP_KEY = ["event_id", "scanned_at"]  # the scans' unique key (app/scans/models.py)


def record_scans(sessions: sessionmaker[Session], enricher: Enricher, scans: list[ScanRecorded]) -> int:
    """Store a batch; returns how many scans were new."""
    partitions.ensure_for(sessions, (scan.occurred_at for scan in scans))
    try:
        return _record(sessions, enricher, scans)
    except IntegrityError as exc:
        # Retention dropped a past month's partition between ensure_for and the INSERT (a late scan of a
        # month just expired): made again, the batch goes in. Nothing of the failed attempt was committed.
        if getattr(exc.orig, "sqlstate", None) != partitions.NO_PARTITION:
            raise
        partitions.ensure_for(sessions, (scan.occurred_at for scan in scans))
        return _record(sessions, enricher, scans)


def _record(sessions: sessionmaker[Session], enricher: Enricher, scans: list[ScanRecorded]) -> int:
    with sessions.begin() as session:
        hold_for_insert(session)  # before any id is drawn: the rollups' watermark (app/scans/watermark.py)
        known = _existing_links(session, {scan.link_id for scan in scans})
        kept = [scan for scan in scans if scan.link_id in known]
        if len(kept) < len(scans):
            # Only a link removed with its whole workspace is missing: its scans have nowhere to go.
            log.warning("scans_of_removed_links_skipped", skipped=len(scans) - len(kept))
        if not kept:
            return 0
        salts = _salts(session, {scan.occurred_at.date() for scan in kept})
        stored_at = utcnow()
        rows = [_row(scan, enricher, salts[scan.occurred_at.date()], stored_at) for scan in kept]
        writing = time.monotonic()  # on SQLite the INSERT takes the write lock (or waits for it)
        inserted = _insert_new_scans(session, rows)
        added = Counter(link_id for link_id, agent_class, _ in inserted if agent_class == "person")
        _count_scans(session, added)
        # link.scanned for exactly the people's scans stored, and link.exhausted (app/webhooks/sources.py).
        people = {event_id for _, agent_class, event_id in inserted if agent_class == "person"}
        webhooks.scans_stored(session, [row for row in rows if row["event_id"] in people], added)
    # write_s: how long the batch's writes and commit took, waiting for SQLite's lock included (issue #21).
    log.info("scans_stored", received=len(scans), stored=len(inserted), write_s=round(time.monotonic() - writing, 3))
    return len(inserted)


def purge_visitor_salts(sessions: sessionmaker[Session]) -> int:
    cutoff = utcnow().date() - timedelta(days=SALT_KEEP_DAYS - 1)
    with sessions.begin() as session:
        return session.execute(delete(VisitorSalt).where(VisitorSalt.day < cutoff)).rowcount


def _existing_links(session: Session, link_ids: set[uuid.UUID]) -> set[uuid.UUID]:
    return set(session.scalars(select(Link.id).where(Link.id.in_(link_ids))))


def _salts(session: Session, days: set[date]) -> dict[date, bytes]:
    """Each day's salt, created by whichever worker needs it first (the primary key settles races).

    Read first: a day's salt exists from its first batch on, so writing one is rare. On SQLite the batch's
    first write is then its INSERT of scans, and the work before it (enriching, hashing) does not hold
    the database's one write lock while another scans worker process waits for it."""
    salts = _read_salts(session, days)
    if missing := days - salts.keys():
        session.execute(
            dialect_of(session).insert(VisitorSalt.__table__).on_conflict_do_nothing(index_elements=["day"]),
            [{"day": day, "salt": secrets.token_bytes(32)} for day in missing],
        )
        salts = _read_salts(session, days)
    return salts


def _read_salts(session: Session, days: set[date]) -> dict[date, bytes]:
    rows = session.execute(select(VisitorSalt.day, VisitorSalt.salt).where(VisitorSalt.day.in_(days)))
    return {day: salt for day, salt in rows}


def _insert_new_scans(session: Session, rows: list[dict]) -> list[tuple[str, str, str]]:
    """INSERT … ON CONFLICT (event_id, scanned_at) DO NOTHING in one statement; (link id as text, agent
    class, event id) of each row really inserted. The link id comes back as text: made into a UUID once per
    link by the caller, not once per row (15% of the worker's time per scan in a profile)."""
    scans = Scan.__table__
    returning = (cast(scans.c.link_id, String), scans.c.agent_class, scans.c.event_id)
    if dialect_of(session) is postgresql:
        # One array per column, unnested into rows: a short statement that psycopg parses once and the
        # server prepares, where a VALUES list of 1,000 rows is 14,000 placeholders that psycopg parses
        # in Python on every batch (half the worker's time per scan; bench/scan_ids.py).
        columns = [column for column in scans.c if column.name in rows[0]]
        arrays = [bindparam(column.name, type_=postgresql.ARRAY(column.type)) for column in columns]
        statement = (
            postgresql.insert(scans)
            .from_select(columns, select(literal_column("*")).select_from(func.unnest(*arrays)))
            .on_conflict_do_nothing(index_elements=_DEDUP_KEY)
            .returning(*returning)
        )
        arrays_of_rows = {column.name: [row[column.name] for row in rows] for column in columns}
        return session.execute(statement, arrays_of_rows).all()
    # SQLite's driver binds a VALUES list natively. Core, not the ORM's bulk insert: a third of the cost.
    statement = sqlite.insert(scans).on_conflict_do_nothing(index_elements=_DEDUP_KEY).returning(*returning)
    return session.execute(statement, rows).all()


def _count_scans(session: Session, counts: Counter[str]) -> None:
    """Add to each link's scans_total: one statement for the batch's links, not an ORM update per link
    (for a batch over 20 codes, 0.4 ms against 4.4 on SQLite, 1.3 against 8.4 on PostgreSQL). In the
    order of the link ids, so that two workers' transactions lock the rows they share in the same order
    and cannot deadlock on PostgreSQL."""
    if not counts:
        return
    links = Link.__table__
    session.execute(
        update(links)
        .where(links.c.id == bindparam("link"))
        .values(scans_total=links.c.scans_total + bindparam("added")),
        [{"link": uuid.UUID(link_id), "added": counts[link_id]} for link_id in sorted(counts)],
    )


def _row(scan: ScanRecorded, enricher: Enricher, salt: bytes, stored_at: datetime) -> dict:
    facts = enricher.enrich(scan.user_agent, scan.referrer, scan.ip)
    return {
        "event_id": scan.event_id,
        "link_id": scan.link_id,
        "scanned_at": scan.occurred_at,
        "stored_at": stored_at,
        "user_agent": scan.user_agent,
        "referrer": scan.referrer,
        "referrer_host": facts.referrer_host,
        "browser": facts.browser,
        "os": facts.os,
        "device": facts.device,
        "is_bot": facts.is_bot,
        "agent_class": facts.agent_class,
        "country": facts.country,
        "visitor": visitor_hash(salt, scan.ip, scan.user_agent),
        "ip_anonymized": facts.ip_anonymized,
    }
