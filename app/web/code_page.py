"""A code's page (/app/codes/{id}): its image and downloads, its short link, the edit and delete forms, through
the same service functions as GET/PATCH/DELETE /v1/qrcodes/{id}."""

from __future__ import annotations

import uuid
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import ValidationError

from app.gateway.deps import LinkCacheDep, PublisherDep, SessionDep, SettingsDep, StoreDep
from app.kit.errors import DomainError
from app.qrcodes import service
from app.qrcodes.schemas import UpdateCode
from app.qrcodes.views import code_out
from app.web.auth import CsrfChecked, EditorSignedIn, SignedIn
from app.web.templating import PagesDep

router = APIRouter(prefix="/app", include_in_schema=False)
SCALES = (2, 5, 10, 20)


@router.get("/codes/{code_id}", response_class=HTMLResponse)
async def code_page(
    request: Request, code_id: uuid.UUID, person: SignedIn, session: SessionDep, settings: SettingsDep,
    pages: PagesDep,
) -> HTMLResponse:
    code = code_out(await service.get_code(session, person.workspace_id, code_id), settings.public_base_url)
    return pages.render(
        request, "code.html", person=person, section="codes", code=code, scales=SCALES, errors={}, values=None,
        saved=request.query_params.get("saved") == "1",
    )


@router.get("/codes/{code_id}/image-panel", response_class=HTMLResponse)
async def image_panel(
    request: Request, code_id: uuid.UUID, person: SignedIn, session: SessionDep, settings: SettingsDep,
    pages: PagesDep,
) -> HTMLResponse:
    """The image part of the page, which a pending code's page asks for until the code is drawn."""
    code = code_out(await service.get_code(session, person.workspace_id, code_id), settings.public_base_url)
    return pages.render(request, "code_image.html", code=code, scales=SCALES)


@router.post("/codes/{code_id}", response_class=HTMLResponse)
async def update(
    request: Request,
    code_id: uuid.UUID,
    person: EditorSignedIn,
    _csrf: CsrfChecked,
    session: SessionDep,
    publisher: PublisherDep,
    link_cache: LinkCacheDep,
    settings: SettingsDep,
    pages: PagesDep,
) -> Response:
    current = await service.get_code(session, person.workspace_id, code_id)
    values = {k: v for k, v in (await request.form()).items() if isinstance(v, str)}
    expires = current.link.expires_at.isoformat() if current.link and current.link.expires_at else ""
    changes_body = _changes(values, dynamic=current.link is not None, current_expiry=expires)
    errors: dict[str, str] = {}
    try:
        changes = UpdateCode.model_validate(changes_body)
        await service.update_code(session, publisher, link_cache, person.workspace_id, code_id, changes)
    except ValidationError as exc:
        errors = {".".join(map(str, e["loc"])) or "form": e["msg"].removeprefix("Value error, ") for e in exc.errors()}
    except DomainError as exc:
        if exc.status >= 500 or exc.status == 404:
            raise
        errors = {exc.field or "form": exc.message}
    else:
        return RedirectResponse(f"/app/codes/{code_id}?saved=1", status_code=303)
    await session.rollback()
    code = code_out(await service.get_code(session, person.workspace_id, code_id), settings.public_base_url)
    return pages.render(
        request, "code.html", status_code=422, person=person, section="codes", code=code, scales=SCALES,
        errors=errors, values=values, saved=False,
    )


@router.post("/codes/{code_id}/delete")
async def delete(
    code_id: uuid.UUID,
    person: EditorSignedIn,
    _csrf: CsrfChecked,
    session: SessionDep,
    publisher: PublisherDep,
    store: StoreDep,
    link_cache: LinkCacheDep,
) -> RedirectResponse:
    await service.delete_code(session, publisher, store, link_cache, person.workspace_id, code_id)
    return RedirectResponse("/app/codes", status_code=303)


def _changes(values: dict[str, str], *, dynamic: bool, current_expiry: str) -> dict[str, Any]:
    """The PATCH body the edit form describes: every field it shows, an empty limit meaning none. An expiry
    left as it was is not sent: one already past would be refused (a new one must be in the future)."""
    body: dict[str, Any] = {
        "title": values.get("title", "").strip() or None,
        "tags": [t.strip() for t in values.get("tags", "").split(",") if t.strip()],
    }
    if dynamic:
        body["target_url"] = values.get("target_url", "")
        body["forward_query"] = "forward_query" in values
        body["disabled"] = "disabled" in values
        expires_at = values.get("expires_at", "").strip()
        if expires_at != current_expiry:
            body["expires_at"] = expires_at or None
        body["max_scans"] = values.get("max_scans", "").strip() or None
    return body
