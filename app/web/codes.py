"""The codes table (/app/codes) and a code's images for the dashboard: thin adapters over app.qrcodes.service."""

from __future__ import annotations

import uuid
from typing import Annotated, Literal

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, Response

from app.gateway.deps import SessionDep, SettingsDep, StoreDep
from app.gateway.images import stored_image_response
from app.kit.errors import Invalid, NotFound
from app.qrcodes import service
from app.qrcodes.content import Kind
from app.qrcodes.models import Status
from app.qrcodes.schemas import IMAGE_FORMATS
from app.qrcodes.views import code_out
from app.web.auth import SignedIn
from app.web.templating import PagesDep

router = APIRouter(prefix="/app", include_in_schema=False)
PAGE_SIZE = 50
KINDS: tuple[str, ...] = Kind.__args__  # type: ignore[attr-defined]


@router.get("/codes", response_class=HTMLResponse)
async def codes(
    request: Request,
    person: SignedIn,
    session: SessionDep,
    settings: SettingsDep,
    pages: PagesDep,
    q: Annotated[str, Query(max_length=200)] = "",
    kind: Annotated[Kind | Literal[""], Query()] = "",
    tag: Annotated[str, Query(max_length=64)] = "",
    status: Annotated[Status | Literal[""], Query()] = "",
    sort: Literal["newest", "oldest"] = "newest",
    cursor: Annotated[str | None, Query(max_length=256)] = None,
) -> HTMLResponse:
    if "\x00" in q + tag:
        raise Invalid("NUL characters (U+0000) are not allowed", field="q")
    rows, next_cursor = await service.list_codes(
        session, person.workspace_id, limit=PAGE_SIZE, cursor=cursor or None, tag=tag.strip() or None,
        kind=kind or None, status=status or None, search=q.strip() or None, oldest_first=sort == "oldest",
    )
    filters = {"q": q, "kind": kind, "tag": tag, "status": status, "sort": sort}
    return pages.render(
        request, "codes.html", person=person, section="codes",
        codes=[code_out(code, settings.public_base_url) for code in rows],
        filters=filters, next_cursor=next_cursor, kinds=KINDS, statuses=[s.value for s in Status],
        first_page=cursor is None,
    )


@router.get("/codes/{code_id}/image.{fmt}")
async def image(
    code_id: uuid.UUID,
    fmt: str,
    request: Request,
    person: SignedIn,
    session: SessionDep,
    store: StoreDep,
    scale: Annotated[int | None, Query(ge=1, le=50)] = None,
    download: bool = False,
) -> Response:
    """A code's image as the API serves it (GET /v1/qrcodes/{id}/image.{fmt}), for a signed-in person."""
    if fmt not in IMAGE_FORMATS:
        raise NotFound(f"there is no image.{fmt}: the formats are {', '.join(IMAGE_FORMATS)}", field="fmt")
    code = await service.get_code(session, person.workspace_id, code_id)
    key, etag = service.stored_image_key(code, fmt)
    stored_scale = code.style["scale"]
    rescale = fmt == "png" and scale is not None and scale != stored_scale
    if rescale and code.style.get("logo"):
        raise Invalid("scale is not available for a code with a logo: its PNG has style.scale only", field="scale")
    headers = {"Cache-Control": "private, max-age=31536000, immutable"}
    if download:
        suffix = f"-x{scale}" if rescale else ""
        headers["Content-Disposition"] = f'attachment; filename="qrcode-{code.id}{suffix}.{fmt}"'
    return await stored_image_response(store, key, fmt, headers, (stored_scale, scale) if rescale else None)
