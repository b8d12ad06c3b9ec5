"""/v1/logos: a thin adapter from HTTP to the logos of the qrcodes context."""

from __future__ import annotations

import uuid

from fastapi import APIRouter, Request, Response, status

from app.gateway.deps import Reader, SessionDep, StoreDep, Writer
from app.gateway.errors import error_responses
from app.qrcodes import logos
from app.qrcodes.logo_files import MAX_LOGO_BYTES, MEDIA_TYPES
from app.qrcodes.logos import LogoOut

router = APIRouter(prefix="/v1/logos", tags=["logos"])

_BINARY = {"schema": {"type": "string", "format": "binary"}}
_UPLOAD = {
    "requestBody": {
        "required": True,
        "description": f"The image itself, at most {MAX_LOGO_BYTES // 1024} KiB: a PNG (at most 4096 px on a "
        "side), or an SVG with a viewBox or a width and height, and no scripts, event handlers or "
        "references outside the document.",
        "content": {media_type: _BINARY for media_type in MEDIA_TYPES},
    }
}


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=LogoOut,
    openapi_extra=_UPLOAD,
    responses={
        201: {
            "description": "Stored; use its id as a code's `style.logo`",
            "headers": {"Location": {"description": "The logo's URL", "required": True, "schema": {"type": "string"}}},
        },
        **error_responses(
            401, 403, 409, 413, 415, 422, 429, 503,
            _409="A request with the same Idempotency-Key is still being processed (`idempotency_key_in_use`)",
            _413=f"The body is larger than {MAX_LOGO_BYTES // 1024} KiB",
            _415="Content-Type is neither image/png nor image/svg+xml",
            _422="Not a readable image of the declared type, or one the checks refuse (the message says which)",
            _503="The image store is unreachable; retry after `Retry-After` seconds",
        ),
    },
    summary="Upload a logo (PNG or SVG) to place in codes",
)
async def upload_logo(
    request: Request, principal: Writer, session: SessionDep, store: StoreDep, response: Response
) -> LogoOut:
    # The raw body: the gateway's body size limit (hardening.py) has already bounded it.
    logo = await logos.upload_logo(
        session, store, principal.workspace_id, request.headers.get("content-type"), await request.body()
    )
    response.headers["Location"] = f"/v1/logos/{logo.id}"
    return LogoOut.of(logo)


@router.get("/{logo_id}", response_model=LogoOut, responses=error_responses(401, 404, 422, 429), summary="Get a logo")
async def get_logo(logo_id: uuid.UUID, principal: Reader, session: SessionDep) -> LogoOut:
    return LogoOut.of(await logos.get_logo(session, principal.workspace_id, logo_id))
