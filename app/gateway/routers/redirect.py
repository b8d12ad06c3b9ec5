"""GET /r/{slug}: where people land when they scan a dynamic code."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse, RedirectResponse, Response

from app.gateway.deps import SessionDep
from app.gateway.errors import error_body
from app.links import service as links

router = APIRouter(tags=["redirect"])


@router.get("/r/{slug}", summary="Follow a dynamic code's short link")
@router.head("/r/{slug}", include_in_schema=False)
async def follow(slug: str, session: SessionDep) -> Response:
    resolution = await links.resolve(session, slug)
    if resolution is None:
        return JSONResponse(error_body("not_found", f"no link {slug!r}"), status_code=404)
    if resolution.gone or resolution.target_url is None:
        return JSONResponse(error_body("gone", f"link {slug!r} no longer redirects"), status_code=410)
    # no-store: browsers must come back every time, so the target can change and every scan is seen.
    return RedirectResponse(resolution.target_url, status_code=302, headers={"Cache-Control": "no-store"})
