"""Batches (/app/batches): upload a CSV or paste JSON, see every bad row before anything is created (and
create the valid ones only, if asked), watch the progress, download the zip. Thin adapters over
app.qrcodes.batches.service, the service behind /v1/batches."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response, StreamingResponse
from starlette.datastructures import UploadFile

from app.gateway.deps import LinkCacheDep, PublisherDep, SessionDep, SettingsDep, StoreDep
from app.kit.errors import DomainError
from app.qrcodes.batches import service
from app.qrcodes.batches.intake import InvalidRows
from app.web.auth import CsrfChecked, EditorSignedIn, SignedIn
from app.web.templating import PagesDep

router = APIRouter(prefix="/app", include_in_schema=False)
PAGE_SIZE = 20


@router.get("/batches", response_class=HTMLResponse)
async def batches(
    request: Request, person: SignedIn, session: SessionDep, pages: PagesDep,
    cursor: Annotated[str | None, Query(max_length=256)] = None,
) -> HTMLResponse:
    items, next_cursor = await service.list_batches(session, person.workspace_id, limit=PAGE_SIZE, cursor=cursor)
    return pages.render(
        request, "batches.html", person=person, section="batches", batches=items, next_cursor=next_cursor,
        rejected=None, message=None, source="csv", body_text="", formats="png",
    )


@router.post("/batches", response_class=HTMLResponse)
async def create(
    request: Request,
    person: EditorSignedIn,
    _csrf: CsrfChecked,
    session: SessionDep,
    publisher: PublisherDep,
    link_cache: LinkCacheDep,
    settings: SettingsDep,
    pages: PagesDep,
) -> Response:
    form = await request.form()
    upload = form.get("csv_file")
    pasted = form.get("body_text")
    source = form.get("source") if form.get("source") in ("csv", "json") else "csv"
    if isinstance(upload, UploadFile) and upload.filename:
        body, source = await upload.read(), "csv"
    elif isinstance(pasted, str) and pasted.strip():
        body = pasted.encode()
    else:
        body = b""
    formats = form.get("formats") if isinstance(form.get("formats"), str) else None
    rejected, message = None, None
    if not body:
        message = "Choose a CSV file or paste JSON."
    else:
        try:
            batch = await service.create_batch(
                session, publisher, link_cache, person.workspace_id, body, source,
                formats=formats or None if source == "csv" else None, partial="partial" in form,
                public_base_url=settings.public_base_url, chunk_size=settings.batch_chunk_size,
                max_render_cost=settings.max_render_cost, max_batch_render_cost=settings.max_batch_render_cost,
            )
        except InvalidRows as exc:
            rejected, message = exc.details, exc.message
        except DomainError as exc:
            if exc.status >= 500:
                raise
            message = f"{exc.field}: {exc.message}" if exc.field else exc.message
        else:
            return RedirectResponse(f"/app/batches/{batch.id}", status_code=303)
    items, next_cursor = await service.list_batches(session, person.workspace_id, limit=PAGE_SIZE, cursor=None)
    return pages.render(
        request, "batches.html", status_code=422, person=person, section="batches", batches=items,
        next_cursor=next_cursor, rejected=rejected, message=message, source=source,
        body_text=body.decode("utf-8", "replace"), formats=formats or "png",
    )


@router.get("/batches/{batch_id}", response_class=HTMLResponse)
async def batch_page(
    request: Request, batch_id: uuid.UUID, person: SignedIn, session: SessionDep, pages: PagesDep
) -> HTMLResponse:
    batch = await service.get_batch(session, person.workspace_id, batch_id)
    return pages.render(request, "batch.html", person=person, section="batches", batch=batch)


@router.get("/batches/{batch_id}/progress", response_class=HTMLResponse)
async def progress(
    request: Request, batch_id: uuid.UUID, person: SignedIn, session: SessionDep, pages: PagesDep
) -> HTMLResponse:
    """The progress bar, which asks again while the batch is rendering."""
    batch = await service.get_batch(session, person.workspace_id, batch_id)
    return pages.render(request, "batch_progress.html", batch=batch)


@router.get("/batches/{batch_id}/archive.zip")
async def archive(
    batch_id: uuid.UUID, person: SignedIn, session: SessionDep, store: StoreDep, settings: SettingsDep
) -> StreamingResponse:
    chunks = await service.open_archive(session, store, person.workspace_id, batch_id, settings.public_base_url)
    return StreamingResponse(
        chunks, media_type="application/zip",
        headers={"Content-Disposition": f'attachment; filename="batch-{batch_id}.zip"'},
    )
