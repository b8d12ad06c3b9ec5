"""New code (/app/codes/new): a form per kind, its live preview and the create, through the same service
functions as POST /v1/qrcodes and POST /v1/logos. The preview is drawn by a worker (PreviewRequested): the
gateway never renders."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from starlette.datastructures import UploadFile

from app.gateway.deps import LinkCacheDep, PublisherDep, SessionDep, SettingsDep, StoreDep, TrackedTasksDep
from app.kit.errors import DomainError, NotFound
from app.qrcodes import logos, service
from app.qrcodes.content import KIND_DATA
from app.qrcodes.events import PreviewRequested
from app.web.auth import CsrfChecked, EditorSignedIn
from app.web.code_form import CodeForm, code_form, request_body, validate
from app.web.form_submissions import FormSubmission
from app.web.templating import PagesDep

router = APIRouter(prefix="/app", include_in_schema=False)
KINDS = tuple(KIND_DATA)


@router.get("/codes/new", response_class=HTMLResponse)
async def new_code(
    request: Request, person: EditorSignedIn, pages: PagesDep, kind: Annotated[str, Query(max_length=16)] = "url"
) -> HTMLResponse:
    if kind not in KIND_DATA:
        raise NotFound(f"there is no kind {kind!r}: the kinds are {', '.join(KINDS)}", field="kind")
    return pages.render(
        request, "new_code.html", person=person, section="new", form=code_form(kind), kinds=KINDS, values={},
        errors={}, form_id=uuid.uuid4(),
    )


@router.post("/codes/new", response_class=HTMLResponse)
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
    values = await request.form()
    form = code_form(_kind(values.get("kind")))
    body = request_body(form, values)
    create_request, errors = validate(body)
    if create_request is not None:
        submission = FormSubmission(request.app.state.redis, person.person_id, values.get("form_id"))
        earlier = await submission.claim()
        if earlier is not None:
            return RedirectResponse(f"/app/codes/{earlier}", status_code=303)
        try:
            code = await service.create_code(
                session, publisher, link_cache, person.workspace_id, create_request, settings.public_base_url,
                max_render_cost=settings.max_render_cost,
            )
        except DomainError as exc:
            await submission.release()
            if exc.status >= 500:
                raise
            errors = {exc.field or "form": exc.message}
        except BaseException:
            await submission.release()
            raise
        else:
            await submission.done(code.id)
            return RedirectResponse(f"/app/codes/{code.id}", status_code=303)
    return pages.render(
        request, "new_code.html", status_code=422, person=person, section="new", form=form, kinds=KINDS,
        values={k: v for k, v in values.items() if isinstance(v, str)}, errors=_placed(form, errors),
        form_id=values.get("form_id") or uuid.uuid4(),
    )


@router.post("/codes/preview", response_class=HTMLResponse)
async def preview(
    request: Request,
    person: EditorSignedIn,
    _csrf: CsrfChecked,
    session: SessionDep,
    settings: SettingsDep,
    tasks: TrackedTasksDep,
    pages: PagesDep,
) -> HTMLResponse:
    """Checks the form as a create would (the API's messages, by field) and starts drawing its code."""
    values = await request.form()
    form = code_form(_kind(values.get("kind")))
    create_request, errors = validate(request_body(form, values))
    task_id = content = None
    if create_request is not None:
        try:
            code = await service.checked_code(
                session, person.workspace_id, create_request, settings.public_base_url, settings.max_render_cost
            )
        except DomainError as exc:
            if exc.status >= 500:
                raise
            errors = {exc.field or "form": exc.message}
        else:
            content = code.content
            requested = PreviewRequested(
                workspace_id=person.workspace_id, kind=code.kind, content=code.content, style=code.style
            )
            task_id = await tasks.start(requested, person.workspace_id)
    return pages.render(
        request, "preview.html", form=form, errors=_placed(form, errors), task_id=task_id, content=content,
    )


@router.get("/codes/preview/{task_id}", response_class=HTMLResponse)
async def preview_image(
    request: Request, task_id: uuid.UUID, person: EditorSignedIn, tasks: TrackedTasksDep, pages: PagesDep
) -> HTMLResponse:
    """The preview once a worker has drawn it; until then, a fragment that asks again."""
    state = await tasks.state(task_id, person.workspace_id)
    if state is None:
        raise NotFound("no such preview", field="task_id")
    result = state.result or {}
    if state.state in ("SUCCESS", "FAILURE"):
        await tasks.forget(task_id)  # read once: it would otherwise stay in Redis for a day
    return pages.render(request, "preview_image.html", task_id=task_id, state=state.state, result=result)


@router.post("/logos", response_class=HTMLResponse)
async def upload_logo(
    request: Request,
    person: EditorSignedIn,
    _csrf: CsrfChecked,
    session: SessionDep,
    store: StoreDep,
    pages: PagesDep,
) -> HTMLResponse:
    """A logo for the code being made, stored as POST /v1/logos stores it; the form then names its id."""
    upload = (await request.form()).get("logo_file")
    logo, error = None, None
    if not isinstance(upload, UploadFile) or not upload.filename:
        error = "choose a PNG or SVG file"
    else:
        try:
            logo = await logos.upload_logo(
                session, store, person.workspace_id, upload.content_type, await upload.read(logos.MAX_LOGO_BYTES + 1)
            )
        except DomainError as exc:
            if exc.status >= 500:
                raise
            error = exc.message
    response = pages.render(request, "logo_slot.html", logo=logo, error=error)
    if logo is not None:
        response.headers["HX-Trigger"] = "logo-stored"  # the preview draws the code again, with its logo
    return response


def _kind(value: object) -> str:
    if not isinstance(value, str) or value not in KIND_DATA:
        raise NotFound(f"there is no kind {value!r}: the kinds are {', '.join(KINDS)}", field="kind")
    return value


def _placed(form: CodeForm, errors: dict[str, str]) -> dict[str, str]:
    """Each message by the field it names; one naming a group (data, style) or nothing by the form's top."""
    names = {f.name for f in form.fields} | {"data", "style", "style.logo"}
    placed: dict[str, str] = {}
    for name, message in errors.items():
        target = name if name in names else "form"
        placed[target] = f"{placed[target]}; {message}" if target in placed else message
    return placed
