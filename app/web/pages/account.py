"""Signing in and out, your password, people and API keys: page handlers that call app/identity's services.

Sign-in is the one form posted without a session, hence without a CSRF token: it is refused from other
sites (Origin, Sec-Fetch-Site) and throttled per email and per client address. Passwords and keys made
here are shown once, in the response to the request that made them, and never again.
"""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Form, Request, Response
from fastapi.responses import RedirectResponse

from app.gateway.deps import SessionDep
from app.gateway.ratelimit import client_ip
from app.identity import people
from app.identity.models import Role, Scope
from app.identity.passwords import one_time_password
from app.identity.service import create_api_key, list_api_keys, revoke_workspace_api_key
from app.kit.errors import DomainError, Invalid
from app.web.auth import (
    HOME_PATH,
    SESSION_COOKIE,
    AdminSignedIn,
    CsrfChecked,
    NotAllowed,
    SignedIn,
    clear_session_cookie,
    refuse_cross_site,
    safe_next,
    session_store,
    set_session_cookie,
    sign_in_throttle,
)

router = APIRouter(prefix="/app", include_in_schema=False)
# Scopes an admin may give a key from the dashboard (operator keys are the platform's, from the CLI).
KEY_SCOPES = (Scope.READ, Scope.WRITE, Scope.ADMIN)


def _render(request: Request, template: str, status_code: int = 200, **context: object) -> Response:
    return request.app.state.pages.render(request, template, status_code=status_code, **context)


@router.get("/sign-in")
async def sign_in_page(request: Request, next: str = "") -> Response:  # noqa: A002 - the query parameter's name
    return _render(request, "sign_in.html", next=safe_next(next), email="", error=None)


@router.post("/sign-in")
async def sign_in(
    request: Request,
    session: SessionDep,
    email: Annotated[str, Form(max_length=320)],
    password: Annotated[str, Form(max_length=1024)],
    next: Annotated[str, Form()] = "",  # noqa: A002
) -> Response:
    refuse_cross_site(request)
    target = safe_next(next)
    client = client_ip(request.scope)
    throttle = sign_in_throttle(request)
    throttled = await throttle.check(email, client)
    if throttled is not None:
        minutes = -(-throttled.retry_after // 60)
        response = _render(
            request, "sign_in.html", status_code=429, next=target, email=email,
            error=f"Too many failed sign-ins: try again in {minutes} minute{'s' if minutes > 1 else ''}.",
        )
        response.headers["Retry-After"] = str(throttled.retry_after)
        return response
    person = await people.authenticate_person(session, email, password)
    if person is None:
        await throttle.failed(email, client)
        return _render(request, "sign_in.html", status_code=401, next=target, email=email,
                       error="Wrong email or password, or the account is disabled.")
    await throttle.succeeded(email)
    store = session_store(request)
    if old := request.cookies.get(SESSION_COOKIE):
        await store.end(old)
    token, _ = await store.start(person.id, person.workspace_id)
    response = RedirectResponse(target, status_code=303)
    set_session_cookie(response, request.app.state.settings, token)
    return response


@router.post("/sign-out")
async def sign_out(request: Request, person: CsrfChecked) -> Response:
    """Signed out everywhere: every session of this person ends, on every device."""
    await session_store(request).end_all(person.person_id)
    response = RedirectResponse("/app/sign-in", status_code=303)
    clear_session_cookie(response, request.app.state.settings)
    return response


# --- your password ----------------------------------------------------------------------------------


@router.get("/account/password")
async def password_page(request: Request, person: SignedIn) -> Response:
    return _render(request, "account/password.html", error=None, field=None)


@router.post("/account/password")
async def change_password(
    request: Request, session: SessionDep, person: CsrfChecked,
    current_password: Annotated[str, Form(max_length=1024)],
    new_password: Annotated[str, Form(max_length=1024)],
    repeated_password: Annotated[str, Form(max_length=1024)],
) -> Response:
    """A new password of their own; every other session of theirs ends, this browser gets a new one."""
    store = session_store(request)
    try:
        if new_password != repeated_password:
            raise Invalid("the two new passwords differ", field="repeated_password")
        await people.change_password(session, store, person.person_id, current_password, new_password)
    except DomainError as refused:
        return _render(request, "account/password.html", status_code=refused.status, error=refused.message,
                       field=refused.field)
    token, _ = await store.start(person.person_id, person.workspace_id)
    response = RedirectResponse(HOME_PATH, status_code=303)
    set_session_cookie(response, request.app.state.settings, token)
    return response


# --- people ---------------------------------------------------------------------------------------


async def _people_page(request: Request, session: SessionDep, admin: AdminSignedIn, status_code: int = 200,
                       **shown: object) -> Response:
    listed = await people.list_people(session, admin.workspace_id)
    context = {"created": None, "created_password": None, "error": None, "typed_email": "", **shown}
    return _render(request, "people.html", status_code=status_code, section="people", people=listed,
                   roles=list(Role), **context)


@router.get("/people")
async def people_page(request: Request, session: SessionDep, admin: AdminSignedIn) -> Response:
    return await _people_page(request, session, admin)


@router.post("/people")
async def add_person(
    request: Request, session: SessionDep, admin: AdminSignedIn, _: CsrfChecked,
    email: Annotated[str, Form(max_length=320)], role: Annotated[Role, Form()],
) -> Response:
    """A new person with a one-time password, shown on this page once."""
    password = one_time_password()
    try:
        person = await people.create_person(session, admin.workspace_id, email, role, password,
                                            must_change_password=True)
    except DomainError as refused:  # shown next to the form, which keeps what was typed
        await session.rollback()
        return await _people_page(request, session, admin, status_code=refused.status, error=refused.message,
                                  typed_email=email)
    return await _people_page(request, session, admin, created=person.email, created_password=password)


@router.post("/people/{person_id}/role")
async def change_role(
    session: SessionDep, admin: AdminSignedIn, _: CsrfChecked, person_id: uuid.UUID, role: Annotated[Role, Form()],
) -> Response:
    await people.change_role(session, admin.workspace_id, person_id, role)
    return RedirectResponse("/app/people", status_code=303)


@router.post("/people/{person_id}/disable")
async def disable_person(
    request: Request, session: SessionDep, admin: AdminSignedIn, _: CsrfChecked, person_id: uuid.UUID,
) -> Response:
    if person_id == admin.person_id:
        raise NotAllowed("you cannot disable yourself; another admin can")
    await people.disable_person(session, session_store(request), admin.workspace_id, person_id)
    return RedirectResponse("/app/people", status_code=303)


@router.post("/people/{person_id}/enable")
async def enable_person(session: SessionDep, admin: AdminSignedIn, _: CsrfChecked, person_id: uuid.UUID) -> Response:
    await people.enable_person(session, admin.workspace_id, person_id)
    return RedirectResponse("/app/people", status_code=303)


# --- API keys -------------------------------------------------------------------------------------


async def _keys_page(request: Request, session: SessionDep, admin: AdminSignedIn, **shown: object) -> Response:
    keys = await list_api_keys(session, admin.workspace_id)
    context = {"created_key": None, **shown}
    return _render(request, "api_keys.html", section="api-keys", keys=keys, scopes=KEY_SCOPES, **context)


@router.get("/api-keys")
async def api_keys_page(request: Request, session: SessionDep, admin: AdminSignedIn) -> Response:
    return await _keys_page(request, session, admin)


@router.post("/api-keys")
async def create_key(
    request: Request, session: SessionDep, admin: AdminSignedIn, _: CsrfChecked,
    scope: Annotated[Scope, Form()], name: Annotated[str, Form(max_length=100)] = "",
) -> Response:
    """A new key of this workspace, shown on this page once."""
    plaintext = await create_api_key(admin.principal, session, scope, name)
    return await _keys_page(request, session, admin, created_key=plaintext)


@router.post("/api-keys/{key_id}/revoke")
async def revoke_key(session: SessionDep, admin: AdminSignedIn, _: CsrfChecked, key_id: uuid.UUID) -> Response:
    await revoke_workspace_api_key(session, admin.workspace_id, key_id)
    return RedirectResponse("/app/api-keys", status_code=303)
