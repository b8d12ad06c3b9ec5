"""/v1/qrcodes: a thin adapter from HTTP to the qrcodes service."""

from __future__ import annotations

import uuid
from typing import Annotated

from anyio import to_thread
from fastapi import APIRouter, Body, Query, Request, Response, status
from fastapi.responses import FileResponse

from app.errors import Invalid, NotFound
from app.gateway.deps import PublisherDep, Reader, SessionDep, SettingsDep, StoreDep, Writer
from app.gateway.images import MEDIA_TYPES, rescale_png
from app.qrcodes import service
from app.qrcodes.content import Kind
from app.qrcodes.schemas import CREATE_EXAMPLES, CodeOut, CodePage, CreateCode, ImageFormat, UpdateCode
from app.qrcodes.views import code_out

router = APIRouter(prefix="/v1/qrcodes", tags=["qrcodes"])

_ERRORS = {
    401: {"description": "Missing or invalid API key"},
    404: {"description": "No such code in this workspace"},
    422: {"description": "Invalid input; the body names each bad field"},
}


@router.post(
    "",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=CodeOut,
    responses={**_ERRORS, 409: {"description": "Slug taken"}},
    summary="Create a QR code; it renders in the background",
)
async def create_code(
    request: Annotated[CreateCode, Body(openapi_examples=CREATE_EXAMPLES)],
    principal: Writer,
    session: SessionDep,
    publisher: PublisherDep,
    settings: SettingsDep,
    response: Response,
) -> CodeOut:
    code = await service.create_code(
        session, publisher, principal.workspace_id, request, settings.public_base_url
    )
    response.headers["Location"] = f"/v1/qrcodes/{code.id}"
    return code_out(code, settings.public_base_url)


@router.get("", response_model=CodePage, responses=_ERRORS, summary="List codes, newest first")
async def list_codes(
    principal: Reader,
    session: SessionDep,
    settings: SettingsDep,
    cursor: str | None = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    tag: str | None = None,
    kind: Kind | None = None,
) -> CodePage:
    codes, next_cursor = await service.list_codes(
        session, principal.workspace_id, limit=limit, cursor=cursor, tag=tag, kind=kind
    )
    return CodePage(items=[code_out(c, settings.public_base_url) for c in codes], next_cursor=next_cursor)


@router.get("/{code_id}", response_model=CodeOut, responses=_ERRORS, summary="Get a code")
async def get_code(code_id: uuid.UUID, principal: Reader, session: SessionDep, settings: SettingsDep) -> CodeOut:
    code = await service.get_code(session, principal.workspace_id, code_id)
    return code_out(code, settings.public_base_url)


@router.patch(
    "/{code_id}",
    response_model=CodeOut,
    responses=_ERRORS,
    summary="Change title, tags, or a dynamic code's target (the image stays the same)",
)
async def update_code(
    code_id: uuid.UUID, changes: UpdateCode, principal: Writer, session: SessionDep, settings: SettingsDep
) -> CodeOut:
    code = await service.update_code(session, principal.workspace_id, code_id, changes)
    return code_out(code, settings.public_base_url)


@router.delete(
    "/{code_id}", status_code=status.HTTP_204_NO_CONTENT, responses=_ERRORS, summary="Delete a code"
)
async def delete_code(code_id: uuid.UUID, principal: Writer, session: SessionDep, store: StoreDep) -> None:
    await service.delete_code(session, store, principal.workspace_id, code_id)


@router.get(
    "/{code_id}/image.{fmt}",
    responses={
        **_ERRORS,
        200: {"content": {t: {} for t in MEDIA_TYPES.values()}, "description": "The image"},
        304: {"description": "Not modified (If-None-Match)"},
        409: {"description": "Still rendering (see Retry-After) or rendering failed"},
    },
    response_class=Response,
    summary="Download a code's image",
)
async def get_image(
    code_id: uuid.UUID,
    fmt: ImageFormat,
    request: Request,
    principal: Reader,
    session: SessionDep,
    store: StoreDep,
    scale: Annotated[int | None, Query(ge=1, le=50, description="PNG only: pixels per module")] = None,
) -> Response:
    code = await service.get_code(session, principal.workspace_id, code_id)
    key, etag = service.stored_image_key(code, fmt)
    stored_scale = code.style["scale"]
    if scale is not None and fmt != "png":
        raise Invalid("scale applies only to PNG images", field="scale")
    rescale = scale is not None and scale != stored_scale
    etag_header = f'"{etag}-s{scale}"' if rescale else f'"{etag}"'
    # Images never change for a given etag (style is fixed at creation), so caches may keep them.
    headers = {"ETag": etag_header, "Cache-Control": "private, max-age=31536000, immutable"}
    if request.headers.get("if-none-match") == etag_header:
        return Response(status_code=304, headers=headers)
    path = store.path(key)
    if path is None:
        raise NotFound("the image file is missing from storage", field="id")
    if rescale:
        data = await to_thread.run_sync(rescale_png, path.read_bytes(), stored_scale, scale)
        return Response(data, media_type=MEDIA_TYPES["png"], headers=headers)
    return FileResponse(path, media_type=MEDIA_TYPES[fmt], headers=headers)
