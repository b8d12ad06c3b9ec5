"""The events other contexts' changes cause, recorded in the transaction of the change.

Each function is called by the context's own write (qrcodes service and jobs, scans ingest) with its
session, before the commit; it reads what the event says from that transaction, so the event tells the
state the change committed, and is stored if and only if the change is.
"""

from __future__ import annotations

import uuid
from collections import Counter

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

from app.kit.messaging import EventPublisher
from app.links.models import Link
from app.qrcodes.batches.models import Batch, BatchItem
from app.qrcodes.models import QRCode, QRCodeTag, Status
from app.webhooks.events import (
    BatchCompleted,
    CodeData,
    LinkExhausted,
    LinkScanned,
    QRCodeFailed,
    QRCodeReady,
)
from app.webhooks.outbox import AsyncOutbox, Outbox

# batch.completed's id is derived from the batch: whichever worker finishes the last code, it is one event.
_BATCH_COMPLETED = uuid.UUID("6f1d3c1e-8a53-4f57-9d2b-2f3c0d6b9a11")


def code_data(model: type[CodeData], code: QRCode) -> CodeData:
    return model(
        code_id=code.id,
        kind=code.kind,
        title=code.title,
        tags=code.tags,
        status=str(code.status),
        slug=code.link.slug if code.link is not None else None,
        error=code.error,
    )


async def code_changed(
    session: AsyncSession, publisher: EventPublisher, model: type[CodeData], code: QRCode
) -> None:
    """qrcode.created, updated, deleted: from the gateway, before it commits the change."""
    outbox = await AsyncOutbox.load(session, code.workspace_id, publisher)
    if outbox.wanted(code.workspace_id, model.type):
        await outbox.record(code.workspace_id, code_data(model, code), code_id=code.id, tags=code.tags)


def render_finished(session: Session, code_id: uuid.UUID) -> None:
    """qrcode.ready or qrcode.failed, and batch.completed if it was its batch's last pending code."""
    code = session.get(QRCode, code_id)
    outbox = Outbox(session, [code.workspace_id])
    model = QRCodeReady if code.status == Status.READY else QRCodeFailed
    if outbox.wanted(code.workspace_id, model.type):
        outbox.record(code.workspace_id, code_data(model, code), code_id=code.id, tags=code.tags)
    if outbox.wanted(code.workspace_id, BatchCompleted.type):
        _batch_completed(session, outbox, code)


def _batch_completed(session: Session, outbox: Outbox, code: QRCode) -> None:
    batch_id = session.scalar(select(BatchItem.batch_id).where(BatchItem.code_id == code.id))
    if batch_id is None:
        return
    # The batch's row lock orders the workers finishing its last codes: the second one to take it reads
    # the first one's commit (PostgreSQL, read committed), so exactly one of them sees nothing pending.
    # SQLite has one writer at a time anyway.
    batch = session.scalar(select(Batch).where(Batch.id == batch_id).with_for_update())
    statuses = Counter(
        dict(
            session.execute(
                select(QRCode.status, func.count())
                .join(BatchItem, BatchItem.code_id == QRCode.id)
                .where(BatchItem.batch_id == batch_id, QRCode.deleted_at.is_(None))
                .group_by(QRCode.status)
            ).all()
        )
    )
    if statuses[Status.PENDING]:
        return
    data = BatchCompleted(
        batch_id=batch_id,
        total=batch.total,
        ready=statuses[Status.READY],
        failed=statuses[Status.FAILED],
        rejected_rows=batch.rejected_rows,
    )
    outbox.record(code.workspace_id, data, event_id=uuid.uuid5(_BATCH_COMPLETED, str(batch_id)))


def scans_stored(session: Session, rows: list[dict], added: Counter[str]) -> None:
    """link.scanned for each human scan the batch really inserted (`rows`, their event ids as the events'
    ids), and link.exhausted for each link whose count (`added`, by link id as text) reached max_scans."""
    outbox = Outbox(session)
    if not outbox.subscriptions:
        return  # the common case: one small query per batch, nothing else
    # The ids come as the database's text (SQLite: 32 hex digits, PostgreSQL: with dashes): made UUIDs.
    added_to = {uuid.UUID(link_id): count for link_id, count in added.items()}
    links = {
        row.id: row
        for row in session.execute(
            select(Link.id, Link.slug, Link.workspace_id, Link.max_scans, Link.scans_total, QRCode.id.label("code_id"))
            .join(QRCode, QRCode.link_id == Link.id)
            .where(Link.id.in_(list(added_to)))
        )
    }
    wanted = {
        link_id for link_id, link in links.items()
        if outbox.wanted(link.workspace_id, LinkScanned.type) or outbox.wanted(link.workspace_id, LinkExhausted.type)
    }
    if not wanted:
        return
    tags = _tags(session, [links[link_id].code_id for link_id in wanted])
    for row in rows:
        link = links.get(row["link_id"])
        if link is None or link.id not in wanted:
            continue
        data = LinkScanned(
            code_id=link.code_id, slug=link.slug, scanned_at=row["scanned_at"], device=row["device"],
            os=row["os"], browser=row["browser"], country=row["country"],
            referrer_host=row["referrer_host"], visitor=row["visitor"],
        )
        outbox.add(link.workspace_id, data, code_id=link.code_id, tags=tags[link.code_id], event_id=row["event_id"])
    for link_id in wanted:
        link = links[link_id]
        if link.max_scans is not None and link.scans_total - added_to[link_id] < link.max_scans <= link.scans_total:
            data = LinkExhausted(code_id=link.code_id, slug=link.slug, max_scans=link.max_scans,
                                 scans_total=link.scans_total)
            outbox.add(link.workspace_id, data, code_id=link.code_id, tags=tags[link.code_id])
    outbox.flush()


def _tags(session: Session, code_ids: list[uuid.UUID]) -> dict[uuid.UUID, list[str]]:
    found: dict[uuid.UUID, list[str]] = {code_id: [] for code_id in code_ids}
    query = select(QRCodeTag.code_id, QRCodeTag.tag).where(QRCodeTag.code_id.in_(code_ids))
    for code_id, tag in session.execute(query):
        found[code_id].append(tag)
    return found
