"""/v1/batches: a thin adapter from HTTP to the batches service."""

from __future__ import annotations

import itertools
import uuid
from typing import Annotated, Any

from anyio import to_thread
from fastapi import APIRouter, FastAPI, Query, Request, Response, status
from fastapi.responses import StreamingResponse

from app.gateway.deps import (
    LinkCacheDep,
    PublisherDep,
    Reader,
    SessionDep,
    SettingsDep,
    StoreDep,
    Writer,
)
from app.gateway.errors import ErrorBody, error_responses
from app.qrcodes.batches import intake, service
from app.qrcodes.batches.schemas import BatchOut, BatchPage, CreateBatch

router = APIRouter(prefix="/v1/batches", tags=["batches"])

_READ = (401, 422, 429)
_WRITE = (401, 403, 422, 429)
_REF = "#/components/schemas/"
_CSV_EXAMPLE = (
    "kind,url,text,ssid,password,title,tags\r\n"
    "url,https://example.com/spring,,,,Poster A,print;spring\r\n"
    "text,,Hello from row 3,,,,\r\n"
    "wifi,,,Cafe Guest,espresso42,Wi-Fi card,\r\n"
)
# The body is read by the route itself (intake.py), not by FastAPI: it is JSON or CSV, and each row is
# validated on its own. So the document gets the body's description here.
_REQUEST_BODY: dict[str, Any] = {
    "required": True,
    "content": {
        "application/json": {
            "schema": {"$ref": _REF + "CreateBatch"},
            "example": {
                "items": [
                    {"kind": "url", "data": {"url": "https://example.com/spring"}, "title": "Poster A"},
                    {"kind": "wifi", "data": {"ssid": "Cafe Guest", "password": "espresso42"}},
                ],
                "formats": ["png", "svg"],
            },
        },
        "text/csv": {
            "schema": {
                "type": "string", "description": "A header row (kind and the fields' names), then one code per row."
            },
            "example": _CSV_EXAMPLE,
        },
    },
}
_CREATE_DESCRIPTION = """
Up to 10,000 codes in one request: JSON `{"items": [...], "formats": [...]}`, each item what
`POST /v1/qrcodes` takes, or a CSV file sent as the body with `Content-Type: text/csv`: a header row with
`kind` and the fields' names (`url`, `text`, `ssid`, `password`, `title`, `tags` separated by `;`, `slug`,
`scale`, …; `data.NAME` / `style.NAME` where a name is ambiguous), one code per row, an empty cell an
absent field. Every row is checked before anything is stored: bad rows are a `422` naming each one
(`errors[].row`: a JSON item's position from 1, a CSV record's line with the header as line 1), or, with
`?partial=true`, the valid rows are created and the batch lists the rejected ones. Codes render in the
background; `GET /v1/batches/{id}` shows progress, and the archive is ready when the status is `done`.
"""
_LOCATION = {"Location": {"description": "The batch's URL", "required": True, "schema": {"type": "string"}}}
_RETRY_AFTER = {
    "Retry-After": {"description": "Seconds to wait while codes are rendering", "schema": {"type": "integer"}}
}
_DISPOSITION = {
    "Content-Disposition": {
        "description": "attachment; filename=batch-{id}.zip", "required": True, "schema": {"type": "string"}
    }
}


@router.post(
    "",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=BatchOut,
    responses={
        202: {"description": "Accepted: the codes are stored, pending; workers render them", "headers": _LOCATION},
        **error_responses(
            *_WRITE, 409, 413, 415,
            _409="A request with the same Idempotency-Key is still being processed (`idempotency_key_in_use`)",
            _413="The body is larger than QRFLOW_MAX_BATCH_BODY_BYTES (16 MiB by default)",
            _415="The body is neither application/json nor text/csv",
            _422="Invalid rows (`errors` names each row and field; nothing was created), or an invalid request",
        ),
    },
    openapi_extra={"requestBody": _REQUEST_BODY},
    summary="Create up to 10,000 codes from JSON or CSV; they render in the background",
    description=_CREATE_DESCRIPTION,
)
async def create_batch(
    request: Request,
    principal: Writer,
    session: SessionDep,
    publisher: PublisherDep,
    link_cache: LinkCacheDep,
    settings: SettingsDep,
    response: Response,
    partial: Annotated[bool, Query(description="Create the valid rows and report the invalid ones")] = False,
    formats: Annotated[
        str | None, Query(max_length=64, description="The archive's formats, comma-separated (CSV bodies): png,svg")
    ] = None,
) -> BatchOut:
    media_type = intake.media_type(request.headers.get("content-type"))
    batch = await service.create_batch(
        session,
        publisher,
        link_cache,
        principal.workspace_id,
        await request.body(),
        media_type,
        formats=formats,
        partial=partial,
        public_base_url=settings.public_base_url,
        chunk_size=settings.batch_chunk_size,
        max_render_cost=settings.max_render_cost,
        max_batch_render_cost=settings.max_batch_render_cost,
    )
    response.headers["Location"] = f"/v1/batches/{batch.id}"
    return batch


@router.get(
    "",
    response_model=BatchPage,
    responses=error_responses(*_READ),
    summary="List batches, newest first",
    description="Each with its progress, as `GET /v1/batches/{id}` shows it; cursor pagination.",
)
async def list_batches(
    principal: Reader,
    session: SessionDep,
    cursor: Annotated[str | None, Query(max_length=256, description="next_cursor of the previous page")] = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
) -> BatchPage:
    items, next_cursor = await service.list_batches(session, principal.workspace_id, limit=limit, cursor=cursor)
    return BatchPage(items=items, next_cursor=next_cursor)


@router.get(
    "/{batch_id}", response_model=BatchOut, responses=error_responses(*_READ, 404), summary="A batch and its progress"
)
async def get_batch(batch_id: uuid.UUID, principal: Reader, session: SessionDep) -> BatchOut:
    return await service.get_batch(session, principal.workspace_id, batch_id)


@router.get(
    "/{batch_id}/archive.zip",
    responses={
        200: {
            "description": "Every image in the batch's formats and manifest.csv, streamed",
            "content": {"application/zip": {"schema": {"type": "string", "format": "binary"}}},
            "headers": _DISPOSITION,
        },
        **error_responses(*_READ, 404, 503, _503="The image store is unreachable; retry after `Retry-After` seconds"),
        409: {"model": ErrorBody, "description": "Codes are still rendering (`not_ready`)", "headers": _RETRY_AFTER},
    },
    response_class=Response,
    summary="Download a finished batch: images and manifest.csv",
)
async def get_archive(
    batch_id: uuid.UUID, principal: Reader, session: SessionDep, store: StoreDep, settings: SettingsDep
) -> Response:
    chunks = await service.open_archive(session, store, principal.workspace_id, batch_id, settings.public_base_url)
    # The first piece is made before the answer starts, so a store that is down is a 503 with Retry-After
    # rather than a zip cut short (one that fails later still is: docs/storage.md).
    first = await to_thread.run_sync(next, chunks, b"")
    # A sync iterator: Starlette reads it in a thread, so reading images and deflating never block the loop.
    return StreamingResponse(
        itertools.chain([first], chunks),
        media_type="application/zip",
        headers={"Content-Disposition": f'attachment; filename="batch-{batch_id}.zip"'},
    )


def install(app: FastAPI) -> None:
    """Include the routes, and put CreateBatch (and the models it refers to) in the OpenAPI document:
    FastAPI adds only the models of the bodies it reads itself."""
    app.include_router(router)
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            document = build()
            schemas = document.setdefault("components", {}).setdefault("schemas", {})
            schema = CreateBatch.model_json_schema(ref_template=_REF + "{model}")
            for name, definition in schema.pop("$defs", {}).items():
                schemas.setdefault(name, definition)
            schemas["CreateBatch"] = schema
        return app.openapi_schema  # type: ignore[return-value]

    app.openapi = openapi  # type: ignore[method-assign]
