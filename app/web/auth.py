"""Who is signed in to the dashboard, and what they may do: FastAPI dependencies for the /app pages.

- `SignedIn`: a live session (app/identity/sessions.py) of an enabled person; without one, GET gets a 303
  to /app/sign-in?next=<this page> (SignInRequired, turned into the redirect by install_auth_handlers).
  A person whose password someone else chose (a one-time password) is sent to /app/account/password first.
- `EditorSignedIn`, `AdminSignedIn`: the role at least editor or admin, else a 403 page (NotAllowed).
- `CsrfChecked`: for every state-changing request: the form field `csrf_token` or the header
  `X-CSRF-Token` equals the session's token, and the browser does not say the request came from another
  site (Sec-Fetch-Site, Origin); else 403.

The session cookie is HttpOnly (no script reads it), SameSite=Lax and Secure when PUBLIC_BASE_URL is https,
path /app. Lax rather than Strict: a person following a link to a dashboard page from a mail or a chat
arrives signed in; Lax still keeps the cookie off cross-site POSTs, and the CSRF token guards every
state-changing request whatever the browser does with SameSite.
"""

from __future__ import annotations

import secrets
import uuid
from dataclasses import dataclass
from typing import Annotated
from urllib.parse import quote, unquote, urlsplit

from fastapi import Depends, FastAPI, Request, Response
from fastapi.responses import RedirectResponse

from app.gateway.deps import SessionDep
from app.identity.models import Person, Role
from app.identity.service import Principal
from app.identity.sessions import SessionStore
from app.identity.throttle import SignInThrottle
from app.kit.settings import Settings

__all__ = [
    "AdminSignedIn", "CsrfChecked", "EditorSignedIn", "NotAllowed", "PasswordChangeRequired", "Role",
    "SESSION_COOKIE", "SignInRequired",
    "SignedIn", "SignedInPerson", "current_person", "install_auth_handlers", "safe_next", "session_store",
]

SESSION_COOKIE = "qrflow_session"
COOKIE_PATH = "/app"
SIGN_IN_PATH = "/app/sign-in"
PASSWORD_PATH = "/app/account/password"
# What a person who must choose a password may still do before they have.
_BEFORE_A_NEW_PASSWORD = (PASSWORD_PATH, "/app/sign-out")
HOME_PATH = "/app"
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "x-csrf-token"


@dataclass(frozen=True)
class SignedInPerson:
    person_id: uuid.UUID
    workspace_id: uuid.UUID
    email: str
    role: Role
    csrf_token: str

    @property
    def principal(self) -> Principal:
        """The caller as the services know it: the API key scope this person's role grants."""
        return Principal(workspace_id=self.workspace_id, key_id=None, scope=self.role.scope)


class SignInRequired(Exception):  # noqa: N818 - a state, not an error
    def __init__(self, next_path: str) -> None:
        super().__init__(next_path)
        self.next_path = next_path


class PasswordChangeRequired(Exception):  # noqa: N818 - a state, not an error
    pass


class NotAllowed(Exception):  # noqa: N818
    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def session_store(request: Request) -> SessionStore:
    settings: Settings = request.app.state.settings
    return SessionStore(request.app.state.redis, idle_seconds=settings.session_idle_seconds,
                        absolute_seconds=settings.session_absolute_seconds)


def sign_in_throttle(request: Request) -> SignInThrottle:
    settings: Settings = request.app.state.settings
    return SignInThrottle(request.app.state.redis, per_email=settings.sign_in_failures_per_email,
                          per_client=settings.sign_in_failures_per_client,
                          window_seconds=settings.sign_in_throttle_seconds)


def safe_next(value: str | None) -> str:
    """Where to go after signing in: a path of the dashboard on this site, nothing else (no open redirect:
    not //evil.example, not https://evil, not /app/../v1)."""
    if not value or not value.startswith("/") or value.startswith("//") or "\\" in value:
        return HOME_PATH
    parts = urlsplit(value)
    if parts.scheme or parts.netloc or not (parts.path == HOME_PATH or parts.path.startswith(HOME_PATH + "/")):
        return HOME_PATH
    if any(segment in (".", "..") for segment in unquote(parts.path).split("/")):  # /app/../v1 is not under /app
        return HOME_PATH
    if any(ord(c) < 0x20 for c in value):
        return HOME_PATH
    return value


def _here(request: Request) -> str:
    query = request.url.query
    return request.url.path + (f"?{query}" if query else "")


async def current_person(request: Request, session: SessionDep) -> SignedInPerson:
    token = request.cookies.get(SESSION_COOKIE, "")
    store = session_store(request)
    web_session = await store.lookup(token)
    if web_session is None:
        raise SignInRequired(_here(request))
    person = await session.get(Person, web_session.person_id)
    if person is None or person.disabled_at is not None or person.workspace_id != web_session.workspace_id:
        await session.rollback()
        await store.end(token)
        raise SignInRequired(_here(request))
    must_change_password = person.must_change_password
    signed_in = SignedInPerson(person.id, person.workspace_id, person.email, Role(person.role), web_session.csrf_token)
    # The read's transaction ends here: on SQLite the gateway has one connection, and the handler may
    # first spend a while off the database (a password hashed, a logo checked) before it uses its own.
    await session.rollback()
    request.state.person = signed_in  # for the layout: who is signed in, the sign-out form's token
    if must_change_password and request.url.path not in _BEFORE_A_NEW_PASSWORD:
        raise PasswordChangeRequired()
    return signed_in


SignedIn = Annotated[SignedInPerson, Depends(current_person)]


def _at_least(role: Role):  # noqa: ANN202 - a dependency factory
    async def check(person: SignedIn) -> SignedInPerson:
        if not person.role.allows(role):
            raise NotAllowed(f"this needs the {role.value} role; you are {person.role.value}")
        return person

    return check


EditorSignedIn = Annotated[SignedInPerson, Depends(_at_least(Role.EDITOR))]
AdminSignedIn = Annotated[SignedInPerson, Depends(_at_least(Role.ADMIN))]


def _origin_of(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}".lower()


def refuse_cross_site(request: Request) -> None:
    """A browser names where a request comes from: a form another site posts here is refused before its
    token is even looked at (the token would refuse it too; this says why)."""
    if request.headers.get("sec-fetch-site", "same-origin") not in ("same-origin", "none"):
        raise NotAllowed("a request from another site is not accepted")
    origin = request.headers.get("origin")
    if origin is not None:
        own = {_origin_of(str(request.base_url)), _origin_of(request.app.state.settings.public_base_url)}
        if origin.lower() not in own:
            raise NotAllowed("a request from another site is not accepted")


async def check_csrf(request: Request, person: SignedIn) -> SignedInPerson:
    refuse_cross_site(request)
    sent = request.headers.get(CSRF_HEADER)
    if sent is None and request.headers.get("content-type", "").startswith(
        ("application/x-www-form-urlencoded", "multipart/form-data")
    ):
        value = (await request.form()).get(CSRF_FIELD)
        sent = value if isinstance(value, str) else None
    if not sent or not secrets.compare_digest(sent.encode(), person.csrf_token.encode()):
        raise NotAllowed("the form's security token is missing or out of date: reload the page and try again")
    return person


CsrfChecked = Annotated[SignedInPerson, Depends(check_csrf)]


def set_session_cookie(response: Response, settings: Settings, token: str) -> None:
    response.set_cookie(SESSION_COOKIE, token, max_age=settings.session_absolute_seconds, path=COOKIE_PATH,
                        httponly=True, samesite="lax", secure=settings.secure_cookies)


def clear_session_cookie(response: Response, settings: Settings) -> None:
    response.delete_cookie(SESSION_COOKIE, path=COOKIE_PATH, httponly=True, samesite="lax",
                           secure=settings.secure_cookies)


def install_auth_handlers(app: FastAPI) -> None:
    """On the app serving /app: a missing session becomes the sign-in page, a refusal a 403 page (the
    dashboard's error.html, through app.state.pages)."""

    @app.exception_handler(SignInRequired)
    async def sign_in(request: Request, exc: SignInRequired) -> Response:
        target = SIGN_IN_PATH
        if request.method in ("GET", "HEAD") and exc.next_path != HOME_PATH:
            target += "?next=" + quote(exc.next_path, safe="")
        response = RedirectResponse(target, status_code=303)
        if request.headers.get("hx-request"):
            response.headers["HX-Redirect"] = target  # htmx swaps a page in place; this makes it navigate
        # Only a cookie the request carried (a stale one) is cleared: a cross-site POST carries none
        # (SameSite=Lax), and clearing anyway would let any site sign a person out.
        if SESSION_COOKIE in request.cookies:
            clear_session_cookie(response, request.app.state.settings)
        return response

    @app.exception_handler(PasswordChangeRequired)
    async def choose_a_password(request: Request, exc: PasswordChangeRequired) -> Response:
        response = RedirectResponse(PASSWORD_PATH, status_code=303)
        if request.headers.get("hx-request"):
            response.headers["HX-Redirect"] = PASSWORD_PATH
        return response

    @app.exception_handler(NotAllowed)
    async def forbidden(request: Request, exc: NotAllowed) -> Response:
        return request.app.state.pages.render(
            request, "error.html", status_code=403, heading="Not allowed", message=exc.message
        )
