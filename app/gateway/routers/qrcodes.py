"""/v1/qrcodes: a thin adapter from HTTP to the qrcodes service."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Body, Path, Query, Request, Response, status

from app.gateway.deps import (
    JsonBody,
    LinkCacheDep,
    PublisherDep,
    Reader,
    SessionDep,
    SettingsDep,
    StoreDep,
    Writer,
)
from app.gateway.errors import ErrorBody, error_responses
from app.gateway.images import MEDIA_TYPES, stored_image_response
from app.kit.errors import Invalid, NotFound
from app.qrcodes import service
from app.qrcodes.content import Kind
from app.qrcodes.schemas import CREATE_EXAMPLES, IMAGE_FORMATS, CodeOut, CodePage, CreateCode, UpdateCode
from app.qrcodes.views import code_out
from app.scans.schemas import ScanOut, ScanPage

router = APIRouter(prefix="/v1/qrcodes", tags=["qrcodes"])

# Every route: 401 (authentication), 422 (parameters or body), 429 (the rate limit, when one is set).
# Reads never see 403: every key may read. 413 wherever a body is read.
_READ = (401, 422, 429)
_WRITE = (401, 403, 422, 429)
_LOCATION = {"Location": {"description": "The new code's URL", "required": True, "schema": {"type": "string"}}}
_IMAGE_HEADERS = {
    "ETag": {"description": "The image's digest (and scale)", "required": True, "schema": {"type": "string"}},
    "Cache-Control": {"description": "Images never change: immutable", "required": True, "schema": {"type": "string"}},
}
_RETRY_AFTER = {
    "Retry-After": {
        "description": "Seconds to wait while the code is still rendering (absent when rendering failed)",
        "schema": {"type": "integer"},
    }
}
_STORE_DOWN = "The image store is unreachable; retry after `Retry-After` seconds"
_NOT_JSON = "The body is not sent as `Content-Type: application/json`"
# The cursors this API hands out are ~100 characters; the bound keeps a forged one from being decoded at any
# length (base64, then JSON).
PageCursor = Annotated[str | None, Query(max_length=256, description="next_cursor of the previous page")]
PageLimit = Annotated[int, Query(ge=1, le=200)]


@router.post(
    "",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=CodeOut,
    responses={
        202: {"description": "Accepted: the code is stored, pending; a worker renders it", "headers": _LOCATION},
        **error_responses(
            *_WRITE, 409, 413, 415,
            _415=_NOT_JSON,
            _409="The slug is taken (`slug_taken`), or a request with the same Idempotency-Key is still being "
            "processed (`idempotency_key_in_use`, with Retry-After)",
            _422="Invalid input (`errors` names each bad field), or content too long for a QR code "
            "(`payload_too_long`)",
        ),
    },
    summary="Create a QR code; it renders in the background",
)
async def create_code(
    request: Annotated[CreateCode, Body(openapi_examples=CREATE_EXAMPLES)],
    principal: Writer,
    _json: JsonBody,
    session: SessionDep,
    publisher: PublisherDep,
    link_cache: LinkCacheDep,
    settings: SettingsDep,
    response: Response,
) -> CodeOut:
    code = await service.create_code(
        session, publisher, link_cache, principal.workspace_id, request, settings.public_base_url,
        max_render_cost=settings.max_render_cost,
    )
    response.headers["Location"] = f"/v1/qrcodes/{code.id}"
    return code_out(code, settings.public_base_url)


@router.get("", response_model=CodePage, responses=error_responses(*_READ), summary="List codes, newest first")
async def list_codes(
    principal: Reader,
    session: SessionDep,
    settings: SettingsDep,
    cursor: PageCursor = None,
    limit: PageLimit = 50,
    tag: Annotated[str | None, Query(description="Only codes with this tag")] = None,
    kind: Kind | None = None,
) -> CodePage:
    if tag is not None and "\x00" in tag:
        # No tag holds one (they are refused at creation), and PostgreSQL could not even compare it.
        raise Invalid("NUL characters (U+0000) are not allowed", field="tag")
    codes, next_cursor = await service.list_codes(
        session, principal.workspace_id, limit=limit, cursor=cursor, tag=tag, kind=kind
    )
    return CodePage(items=[code_out(c, settings.public_base_url) for c in codes], next_cursor=next_cursor)


@router.get("/{code_id}", response_model=CodeOut, responses=error_responses(*_READ, 404), summary="Get a code")
async def get_code(code_id: uuid.UUID, principal: Reader, session: SessionDep, settings: SettingsDep) -> CodeOut:
    code = await service.get_code(session, principal.workspace_id, code_id)
    return code_out(code, settings.public_base_url)


@router.patch(
    "/{code_id}",
    response_model=CodeOut,
    responses=error_responses(*_WRITE, 404, 413, 415, _415=_NOT_JSON),
    summary="Change title, tags, or a dynamic code's target and limits (the image stays the same)",
)
async def update_code(
    code_id: uuid.UUID,
    changes: UpdateCode,
    principal: Writer,
    _json: JsonBody,
    session: SessionDep,
    publisher: PublisherDep,
    link_cache: LinkCacheDep,
    settings: SettingsDep,
) -> CodeOut:
    code = await service.update_code(session, publisher, link_cache, principal.workspace_id, code_id, changes)
    return code_out(code, settings.public_base_url)


@router.delete(
    "/{code_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses={204: {"description": "Deleted; its short link now answers 410"}, **error_responses(*_WRITE, 404)},
    summary="Delete a code",
)
async def delete_code(
    code_id: uuid.UUID,
    principal: Writer,
    session: SessionDep,
    publisher: PublisherDep,
    store: StoreDep,
    link_cache: LinkCacheDep,
) -> None:
    await service.delete_code(session, publisher, store, link_cache, principal.workspace_id, code_id)


@router.get(
    "/{code_id}/scans",
    response_model=ScanPage,
    responses=error_responses(*_READ, 404),
    summary="List a code's scans, newest first",
    description="Scans as stored, a moment after each redirect. A static code's page is always empty: it "
    "encodes its content itself, so scanning it never reaches this server.",
)
async def list_scans(
    code_id: uuid.UUID,
    principal: Reader,
    session: SessionDep,
    cursor: PageCursor = None,
    limit: PageLimit = 50,
) -> ScanPage:
    scans, next_cursor = await service.list_scans(
        session, principal.workspace_id, code_id, limit=limit, cursor=cursor
    )
    return ScanPage(items=[ScanOut.from_scan(s) for s in scans], next_cursor=next_cursor)


@router.get(
    "/{code_id}/image.{fmt}",
    responses={
        200: {
            "description": "The image, in the format the path names",
            "content": {t: {"schema": {"type": "string", "format": "binary"}} for t in MEDIA_TYPES.values()},
            "headers": _IMAGE_HEADERS,
        },
        304: {"description": "Not modified (If-None-Match matched the ETag)", "headers": _IMAGE_HEADERS},
        **error_responses(*_READ, 404, 503, _503=_STORE_DOWN),
        409: {
            "model": ErrorBody,
            "description": "Not ready: still rendering (`not_ready`, with Retry-After), or rendering failed",
            "headers": _RETRY_AFTER,
        },
    },
    response_class=Response,
    summary="Download a code's image",
)
async def get_image(
    code_id: uuid.UUID,
    # Any name: an unknown format is an image this code does not have (404), not invalid input (422).
    fmt: Annotated[str, Path(json_schema_extra={"enum": list(IMAGE_FORMATS)})],
    request: Request,
    principal: Reader,
    session: SessionDep,
    store: StoreDep,
    scale: Annotated[int | None, Query(ge=1, le=50, description="PNG only: pixels per module")] = None,
) -> Response:
    if fmt not in IMAGE_FORMATS:
        raise NotFound(f"there is no image.{fmt}: the formats are {', '.join(IMAGE_FORMATS)}", field="fmt")
    code = await service.get_code(session, principal.workspace_id, code_id)
    key, etag = service.stored_image_key(code, fmt)
    stored_scale = code.style["scale"]
    if scale is not None and fmt != "png":
        raise Invalid("scale applies only to PNG images", field="scale")
    rescale = scale is not None and scale != stored_scale
    if rescale and code.style.get("logo"):
        # Rescaling resamples whole modules (images.py), which would reduce the logo to blocks.
        raise Invalid("scale is not available for a code with a logo: its PNG has style.scale only", field="scale")
    etag_header = f'"{etag}-s{scale}"' if rescale else f'"{etag}"'
    # Images never change for a given etag (style is fixed at creation), so caches may keep them.
    headers = {"ETag": etag_header, "Cache-Control": "private, max-age=31536000, immutable"}
    if request.headers.get("if-none-match") == etag_header:
        return Response(status_code=304, headers=headers)
    return await stored_image_response(store, key, fmt, headers, (stored_scale, scale) if rescale else None)
