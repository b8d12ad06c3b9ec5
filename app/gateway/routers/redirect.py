"""GET /r/{slug}: where people land when they scan a dynamic code."""

from __future__ import annotations

import re

from fastapi import APIRouter
from fastapi.responses import JSONResponse, RedirectResponse, Response

from app.gateway.deps import SessionDep
from app.gateway.errors import error_body, error_responses
from app.links import service as links
from app.qrcodes.schemas import SLUG_PATTERN

router = APIRouter(tags=["redirect"])
_SLUG = re.compile(SLUG_PATTERN)


@router.get(
    "/r/{slug}",
    status_code=302,
    response_class=RedirectResponse,
    responses={
        302: {
            "description": "To the code's current target; never cached, so every scan comes back here",
            "headers": {
                "Location": {"description": "The target URL", "required": True, "schema": {"type": "string"}},
                "Cache-Control": {"description": "`no-store`", "required": True, "schema": {"type": "string"}},
            },
        },
        **error_responses(404, 410, 429, _404="No such link", _410="The code was deleted: the link is gone"),
    },
    summary="Follow a dynamic code's short link",
)
@router.head("/r/{slug}", include_in_schema=False)
async def follow(slug: str, session: SessionDep) -> Response:
    # A slug that could never have been given out (a NUL byte in it, say, which PostgreSQL cannot even
    # compare) is unknown without asking the database.
    resolution = await links.resolve(session, slug) if _SLUG.fullmatch(slug) else None
    if resolution is None:
        return JSONResponse(error_body("not_found", f"no link {slug!r}"), status_code=404)
    if resolution.gone or resolution.target_url is None:
        return JSONResponse(error_body("gone", f"link {slug!r} no longer redirects"), status_code=410)
    # no-store: browsers must come back every time, so the target can change and every scan is seen.
    return RedirectResponse(resolution.target_url, status_code=302, headers={"Cache-Control": "no-store"})
