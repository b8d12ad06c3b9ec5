"""/v1/webhooks: a thin adapter from HTTP to the webhooks service. Managing endpoints needs an admin key,
reading them a read key; another workspace's endpoint is 404."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, Query, status

from app.gateway.deps import PublisherDep, Reader, SessionDep, SettingsDep, require
from app.gateway.errors import error_responses
from app.identity.models import Scope
from app.identity.service import Principal
from app.webhooks import service
from app.webhooks.events import envelope_schemas
from app.webhooks.models import DeliveryStatus, WebhookEndpoint
from app.webhooks.schemas import (
    AttemptOut,
    CreateEndpoint,
    DeliveryOut,
    DeliveryPage,
    EndpointList,
    EndpointOut,
    Replayed,
    UpdateEndpoint,
)

router = APIRouter(prefix="/v1/webhooks", tags=["webhooks"])
Admin = Annotated[Principal, Depends(require(Scope.ADMIN))]

_READ = (401, 422, 429)
_ADMIN = (401, 403, 422, 429)
_EVENTS = "Event types and each one's JSON schema: docs/webhooks.md, and GET /v1/webhooks/event-types."


def _out(endpoint: WebhookEndpoint, secret: str | None = None) -> EndpointOut:
    return EndpointOut(
        id=endpoint.id, url=endpoint.url, events=endpoint.events, code_ids=endpoint.code_ids, tags=endpoint.tags,
        description=endpoint.description, enabled=endpoint.enabled, disabled_reason=endpoint.disabled_reason,
        created_at=endpoint.created_at, updated_at=endpoint.updated_at, secret=secret,
        previous_secret_until=endpoint.previous_secret_until if secret else None,
    )


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=EndpointOut,
    responses=error_responses(
        *_ADMIN, 413, 503, _422="Invalid input, or a url that is refused (`webhook_url_refused`)"
    ),
    summary="Subscribe a URL to events; the signing secret is in this answer only",
    description=_EVENTS,
)
async def create_endpoint(
    request: CreateEndpoint, principal: Admin, session: SessionDep, settings: SettingsDep
) -> EndpointOut:
    endpoint, secret = await service.create_endpoint(session, settings, principal.workspace_id, request)
    return _out(endpoint, secret)


@router.get("", response_model=EndpointList, responses=error_responses(*_READ), summary="List endpoints")
async def list_endpoints(principal: Reader, session: SessionDep) -> EndpointList:
    return EndpointList(items=[_out(e) for e in await service.list_endpoints(session, principal.workspace_id)])


@router.get(
    "/event-types", responses=error_responses(*_READ),
    summary="Each event type's JSON schema (the envelope with its data)",
)
async def event_types(principal: Reader) -> dict:
    return envelope_schemas()


@router.get("/{endpoint_id}", response_model=EndpointOut, responses=error_responses(*_READ, 404), summary="An endpoint")
async def get_endpoint(endpoint_id: uuid.UUID, principal: Reader, session: SessionDep) -> EndpointOut:
    return _out(await service.get_endpoint(session, principal.workspace_id, endpoint_id))


@router.patch(
    "/{endpoint_id}", response_model=EndpointOut, responses=error_responses(*_ADMIN, 404, 413),
    summary="Change an endpoint",
)
async def update_endpoint(
    endpoint_id: uuid.UUID, changes: UpdateEndpoint, principal: Admin, session: SessionDep, settings: SettingsDep
) -> EndpointOut:
    return _out(await service.update_endpoint(session, settings, principal.workspace_id, endpoint_id, changes))


@router.delete(
    "/{endpoint_id}", status_code=status.HTTP_204_NO_CONTENT, responses=error_responses(*_ADMIN, 404),
    summary="Delete an endpoint and its deliveries",
)
async def delete_endpoint(endpoint_id: uuid.UUID, principal: Admin, session: SessionDep) -> None:
    await service.delete_endpoint(session, principal.workspace_id, endpoint_id)


@router.post(
    "/{endpoint_id}/rotate-secret", response_model=EndpointOut, responses=error_responses(*_ADMIN, 404, 503),
    summary="A new signing secret; the old one keeps signing too (both signatures) for 24 hours",
)
async def rotate_secret(
    endpoint_id: uuid.UUID, principal: Admin, session: SessionDep, settings: SettingsDep
) -> EndpointOut:
    endpoint, secret = await service.rotate_secret(session, settings, principal.workspace_id, endpoint_id)
    return _out(endpoint, secret)


@router.post(
    "/{endpoint_id}/test", status_code=status.HTTP_202_ACCEPTED, responses=error_responses(*_ADMIN, 404, 409),
    summary="Send a `ping` event to the endpoint",
)
async def test_endpoint(
    endpoint_id: uuid.UUID, principal: Admin, session: SessionDep, publisher: PublisherDep
) -> dict[str, uuid.UUID]:
    return {"event_id": await service.send_ping(session, publisher, principal.workspace_id, endpoint_id)}


@router.get(
    "/{endpoint_id}/deliveries", response_model=DeliveryPage, responses=error_responses(*_READ, 404),
    summary="The endpoint's deliveries, newest first, each with its attempts",
)
async def list_deliveries(
    endpoint_id: uuid.UUID,
    principal: Reader,
    session: SessionDep,
    status: Annotated[DeliveryStatus | None, Query(description="pending, delivered or dead")] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> DeliveryPage:
    rows = await service.list_deliveries(session, principal.workspace_id, endpoint_id, status, limit)
    return DeliveryPage(items=[
        DeliveryOut(
            id=delivery.id, event_id=delivery.event_id, event_type=event_type, status=delivery.status,
            next_attempt_at=delivery.next_attempt_at if delivery.status == DeliveryStatus.PENDING else None,
            created_at=delivery.created_at, delivered_at=delivery.delivered_at, last_error=delivery.last_error,
            attempts=[
                AttemptOut(attempt=a.number, attempted_at=a.attempted_at, status_code=a.status_code,
                           duration_ms=a.duration_ms, response=a.response, error=a.error)
                for a in attempts
            ],
        )
        for delivery, event_type, attempts in rows
    ])


@router.post(
    "/{endpoint_id}/deliveries/{delivery_id}/retry", status_code=status.HTTP_202_ACCEPTED,
    responses=error_responses(*_ADMIN, 404, 409), summary="Send a failed or dead delivery again, now",
)
async def retry_delivery(
    endpoint_id: uuid.UUID, delivery_id: uuid.UUID, principal: Admin, session: SessionDep, publisher: PublisherDep
) -> dict[str, str]:
    await service.retry_delivery(session, publisher, principal.workspace_id, endpoint_id, delivery_id)
    return {"status": "pending"}


@router.post(
    "/{endpoint_id}/replay", status_code=status.HTTP_202_ACCEPTED, response_model=Replayed,
    responses=error_responses(*_ADMIN, 404), summary="Send the endpoint's dead deliveries again",
)
async def replay(
    endpoint_id: uuid.UUID,
    principal: Admin,
    session: SessionDep,
    publisher: PublisherDep,
    since: Annotated[datetime | None, Query(description="Only deliveries created since then")] = None,
) -> Replayed:
    return Replayed(deliveries=await service.replay(session, publisher, principal.workspace_id, endpoint_id, since))


def install(app: FastAPI) -> None:
    """Include the routes, and put each event type's schema in the OpenAPI document (as
    `WebhookEvent.{type}`): receivers generate their models from it."""
    app.include_router(router)
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            document = build()
            schemas = document.setdefault("components", {}).setdefault("schemas", {})
            for name, schema in envelope_schemas().items():
                schemas[f"WebhookEvent.{name}"] = schema
        return app.openapi_schema  # type: ignore[return-value]

    app.openapi = openapi  # type: ignore[method-assign]
