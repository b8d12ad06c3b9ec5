"""Use cases of batches, as the gateway runs them (async sessions).

Create: read and validate every row (in a thread), then one transaction writes the batch and all its
codes, then the render is published as chunk events, a few per batch (BatchChunkRequested). Commit first,
publish after, as for single codes: a publish that fails leaves codes pending, and the lost-render
republisher (app/qrcodes/recovery.py) publishes their chunks again.

Progress is never stored: it is counted from the codes' statuses, so a redelivered chunk, a worker that
died or a deleted code cannot make it drift.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from typing import Literal

import structlog
from anyio import to_thread
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from app.kit.db import new_id
from app.kit.errors import Invalid, NotFound, NotReady
from app.kit.messaging import EventPublisher
from app.kit.storage import ImageStore
from app.links import service as links
from app.qrcodes import render_cost
from app.qrcodes.batches import archive, intake
from app.qrcodes.batches.events import BatchChunkRequested
from app.qrcodes.batches.intake import Intake, RowError
from app.qrcodes.batches.models import Batch
from app.qrcodes.batches.repository import BatchRepository, Progress, rows_to_insert
from app.qrcodes.batches.schemas import MAX_LISTED_ERRORS, BatchError, BatchOut
from app.qrcodes.repository import Cursor

log = structlog.get_logger(__name__)

# Slug announcements to the redirect caches in flight at once (one Redis PUBLISH each).
_ANNOUNCE_AT_ONCE = 50
# A generated slug can collide with a stored one (one chance in ~10^14 per link); drawn again this often.
_INSERT_ATTEMPTS = 3


async def create_batch(
    session: AsyncSession,
    publisher: EventPublisher,
    links_changed: links.LinkChanges,
    workspace_id: uuid.UUID,
    body: bytes,
    media_type: Literal["json", "csv"],
    *,
    formats: str | None,
    partial: bool,
    public_base_url: str,
    chunk_size: int,
    max_render_cost: float = float("inf"),
    max_batch_render_cost: float = float("inf"),
) -> BatchOut:
    # The API key's look-up left a transaction open. End it: on SQLite the gateway has one connection,
    # which no request should hold while this one's rows are validated.
    await session.commit()
    read = await to_thread.run_sync(intake.read, body, media_type, formats, workspace_id, public_base_url)
    await to_thread.run_sync(_refuse_costly, read, max_render_cost, max_batch_render_cost)
    repository = BatchRepository(session)
    batch_id = new_id()
    for attempt in range(_INSERT_ATTEMPTS):
        await _refuse_unavailable(repository, read, workspace_id)
        await session.commit()  # the look-up's transaction, again
        if read.errors and not partial:
            raise intake.refuse(read.errors)
        if not read.accepted.codes:
            raise intake.refuse(read.errors, why="no row is valid; nothing was created")
        rows = await to_thread.run_sync(rows_to_insert, read.accepted, batch_id)
        batch = Batch(
            id=batch_id,
            workspace_id=workspace_id,
            source=read.source,
            formats=read.formats,
            total=len(rows.codes),
            rejected=[e.as_dict() for e in read.errors],
            rejected_rows=read.rejected_rows,
        )
        try:
            await repository.insert(batch, rows.links, rows.codes, rows.tags, rows.items)
            await session.commit()
            break
        except IntegrityError:
            # A slug asked for was taken meanwhile (looked up again above), or a generated one collided.
            await session.rollback()
            session.expunge_all()
            if attempt == _INSERT_ATTEMPTS - 1:
                raise
            _redraw_generated_slugs(read, public_base_url)
    log.info("batch_created", batch_id=str(batch_id), codes=batch.total, rejected_rows=batch.rejected_rows)

    # Generated slugs were never served, so no cache holds them; asked-for ones may be cached as unknown.
    asked = list(read.accepted.slugs)
    for start in range(0, len(asked), _ANNOUNCE_AT_ONCE):
        await asyncio.gather(*(links_changed.changed(slug) for slug in asked[start : start + _ANNOUNCE_AT_ONCE]))
    code_ids = [code.id for code in read.accepted.codes]
    for chunk in chunks(code_ids, chunk_size):
        publisher.publish_later(BatchChunkRequested(batch_id=batch_id, code_ids=chunk))
    return batch_out(batch, Progress({"pending": batch.total}, None), [])


async def _refuse_unavailable(repository: BatchRepository, read: Intake, workspace_id: uuid.UUID) -> None:
    """Rows asking for a slug that is taken, or for a logo that is not the workspace's, become errors."""
    accepted = read.accepted
    taken = await repository.taken_slugs(accepted.slugs)
    errors = [
        RowError(row, "slug", "slug_taken", f"slug {slug!r} is already taken")
        for slug, row in accepted.slugs.items()
        if slug in taken
    ]
    foreign = await repository.foreign_logos(workspace_id, (logo for logo, _ in accepted.logos.values()))
    errors += [
        RowError(row, field, "invalid", f"no logo with id {logo} in this workspace (POST /v1/logos uploads one)")
        for row, (logo, field) in accepted.logos.items()
        if logo in foreign
    ]
    if errors:
        read.errors = sorted(read.errors + errors, key=lambda e: e.row or 0)
        accepted.drop({e.row for e in errors if e.row is not None})


def _refuse_costly(read: Intake, max_render_cost: float, max_batch_render_cost: float) -> None:
    """Rows over the render cost limit become errors; a batch over its own limit is refused whole."""
    accepted, errors, total = read.accepted, [], 0.0
    for row, code in zip(accepted.rows, accepted.codes, strict=True):
        cost = render_cost.estimate(code.content, code.style)
        too_costly = render_cost.too_costly(cost, max_render_cost)
        if too_costly:
            errors.append(RowError(row, "style.scale", "render_cost", too_costly))
        else:
            total += cost
    if errors:
        read.errors = sorted(read.errors + errors, key=lambda e: e.row or 0)
        accepted.drop({e.row for e in errors if e.row is not None})
    if total > max_batch_render_cost:
        raise Invalid(
            f"rendering this batch would take about {total:,.0f} s of a worker's CPU; at most "
            f"{max_batch_render_cost:,.0f} s per batch (split it, or use a smaller scale)",
            field="items",
        )


def _redraw_generated_slugs(read: Intake, public_base_url: str) -> None:
    asked = set(read.accepted.slugs)
    for code in read.accepted.codes:
        if code.link is not None and code.link.slug not in asked:
            code.link.slug = links.generate_slug()
            code.content = links.short_url(public_base_url, code.link.slug)  # same length: it still fits


def chunks(ids: list[uuid.UUID], size: int) -> Iterator[list[uuid.UUID]]:
    for start in range(0, len(ids), size):
        yield ids[start : start + size]


async def get_batch(session: AsyncSession, workspace_id: uuid.UUID, batch_id: uuid.UUID) -> BatchOut:
    return await _with_progress(session, await _get(session, workspace_id, batch_id))


async def list_batches(
    session: AsyncSession, workspace_id: uuid.UUID, *, limit: int, cursor: str | None
) -> tuple[list[BatchOut], str | None]:
    """A page of the workspace's batches, newest first, and the cursor of the next (None at the end): the
    way back to a batch whose POST response was lost."""
    after = Cursor.decode(cursor) if cursor else None
    batches = await BatchRepository(session).page(workspace_id, limit=limit + 1, after=after)
    page = batches[:limit]
    next_cursor = Cursor(page[-1].created_at, page[-1].id).encode() if len(batches) > limit else None
    return [await _with_progress(session, batch) for batch in page], next_cursor


async def _with_progress(session: AsyncSession, batch: Batch) -> BatchOut:
    repository = BatchRepository(session)
    progress = await repository.progress(batch.id)
    failures = await repository.failures(batch.id, MAX_LISTED_ERRORS) if progress.counts.get("failed") else []
    return batch_out(batch, progress, failures)


async def _get(session: AsyncSession, workspace_id: uuid.UUID, batch_id: uuid.UUID) -> Batch:
    batch = await BatchRepository(session).get(workspace_id, batch_id)
    if batch is None:
        # Also for another workspace's batch: its existence is not the caller's business (404, not 403).
        raise NotFound(f"no batch with id {batch_id}", field="id")
    return batch


def batch_out(batch: Batch, progress: Progress, failures: list[tuple[int, str | None]]) -> BatchOut:
    counts = progress.counts
    pending, done, failed = counts.get("pending", 0), counts.get("ready", 0), counts.get("failed", 0)
    if pending:
        status = "running" if done or failed else "pending"
    else:
        status = "failed" if failed else "done"
    errors = [BatchError(**e) for e in batch.rejected[:MAX_LISTED_ERRORS]]
    errors += [
        BatchError(row=row, field="render", type="render_failed", message=error or "rendering failed")
        for row, error in failures
    ]
    errors.sort(key=lambda e: e.row)
    return BatchOut(
        id=batch.id,
        status=status,
        total=batch.total,
        pending=pending,
        done=done,
        failed=failed,
        deleted=counts.get("deleted", 0),
        rejected=batch.rejected_rows,
        errors=errors[:MAX_LISTED_ERRORS],
        errors_total=len(batch.rejected) + failed,
        formats=batch.formats,
        source=batch.source,
        created_at=batch.created_at,
        finished_at=None if pending else progress.last_rendered_at,
        archive=f"/v1/batches/{batch.id}/archive.zip",
    )


async def open_archive(
    session: AsyncSession, store: ImageStore, workspace_id: uuid.UUID, batch_id: uuid.UUID, public_base_url: str
) -> Iterator[bytes]:
    """The zip, as chunks to stream; NotReady (409) while codes are still pending."""
    batch = await _get(session, workspace_id, batch_id)
    repository = BatchRepository(session)
    progress = await repository.progress(batch.id)
    pending = progress.counts.get("pending", 0)
    if pending:
        raise NotReady(f"{pending} of {batch.total} codes are still being rendered; retry shortly", retry_after=2)
    entries = await repository.manifest(batch.id)
    await session.commit()  # the zip is read from files, with no connection held
    return archive.stream(
        store, batch.workspace_id, entries, batch.rejected, batch.formats, public_base_url, batch.created_at
    )
