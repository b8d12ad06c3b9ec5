"""FastAPI dependencies: the request's database session, its caller, and the resources on app.state."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

import structlog
from fastapi import Depends, HTTPException, Request, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.ext.asyncio import AsyncSession

from app.identity.models import Scope
from app.identity.service import Principal
from app.kit.errors import UnsupportedMediaType
from app.kit.messaging import EventPublisher
from app.kit.settings import Settings
from app.kit.storage import ImageStore
from app.kit.tracked_tasks import TrackedTasks
from app.links.cache import LinkCache


# Every dependency is async def, even those that only read app.state: FastAPI runs a plain def one in its
# thread pool, a trip out of the event loop and back that waits its turn behind every redirect under a
# scan flood (issue #21).
async def get_session(request: Request) -> AsyncIterator[AsyncSession]:
    async with request.app.state.sessions() as session:
        yield session


async def get_settings(request: Request) -> Settings:
    return request.app.state.settings


async def get_publisher(request: Request) -> EventPublisher:
    return request.app.state.publisher


async def get_store(request: Request) -> ImageStore:
    return request.app.state.store


async def get_link_cache(request: Request) -> LinkCache:
    return request.app.state.link_cache


async def get_tracked_tasks(request: Request) -> TrackedTasks:
    return request.app.state.tracked_tasks


SessionDep = Annotated[AsyncSession, Depends(get_session)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
PublisherDep = Annotated[EventPublisher, Depends(get_publisher)]
StoreDep = Annotated[ImageStore, Depends(get_store)]
# This process's redirect cache; told of each link a request changes, it tells the other processes.
LinkCacheDep = Annotated[LinkCache, Depends(get_link_cache)]
# Tasks a client starts and may ask about (GET /v1/tasks/{id}).
TrackedTasksDep = Annotated[TrackedTasks, Depends(get_tracked_tasks)]

_CHALLENGE = {"WWW-Authenticate": "Bearer"}
# Declares the scheme in the OpenAPI document (so /docs has an Authorize button); the checks and their
# messages are ours, hence auto_error=False.
_BEARER = HTTPBearer(auto_error=False, description="An API key: `qrflow apikey create --workspace NAME`")


async def get_principal(
    request: Request,
    session: SessionDep,
    _: Annotated[HTTPAuthorizationCredentials | None, Security(_BEARER)] = None,
) -> Principal:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if not header:
        raise HTTPException(401, "missing API key: send Authorization: Bearer <key>", headers=_CHALLENGE)
    if scheme.lower() != "bearer" or not token.strip():
        raise HTTPException(401, "Authorization must be: Bearer <key>", headers=_CHALLENGE)
    principal = await request.app.state.verified_keys.authenticate(session, token.strip())
    if principal is None:
        raise HTTPException(401, "invalid or revoked API key", headers=_CHALLENGE)
    request.app.state.key_usage.note(principal.key_id)
    structlog.contextvars.bind_contextvars(workspace_id=str(principal.workspace_id))
    return principal


def require(scope: Scope):  # noqa: ANN201 - a dependency factory
    async def check(principal: Annotated[Principal, Depends(get_principal)]) -> Principal:
        if not principal.scope.allows(scope):
            raise HTTPException(403, f"this API key has scope {principal.scope}; {scope} is required")
        return principal

    return check


Reader = Annotated[Principal, Depends(require(Scope.READ))]
Writer = Annotated[Principal, Depends(require(Scope.WRITE))]


async def require_json(request: Request) -> None:
    """Routes whose body FastAPI reads as JSON: another media type is a 415 saying what to send, not a 422
    about a dictionary (curl -d sends application/x-www-form-urlencoded unless told otherwise)."""
    essence = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if essence != "application/json" and not essence.endswith("+json"):
        got = f"Content-Type {essence!r}" if essence else "no Content-Type"
        raise UnsupportedMediaType(
            f"the body must be JSON, sent with Content-Type: application/json ({got})", field="Content-Type"
        )


# After the caller's dependency in a route's parameters: a stranger hears 401, not what the body should be.
JsonBody = Annotated[None, Depends(require_json)]
