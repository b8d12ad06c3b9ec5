"""Use cases of webhook endpoints, as the gateway runs them (async sessions)."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

import anyio
from sqlalchemy.ext.asyncio import AsyncSession

from app.kit.db import utcnow
from app.kit.errors import Conflict, NotFound
from app.kit.messaging import EventPublisher
from app.kit.settings import Settings
from app.webhooks.addresses import check_url, resolve
from app.webhooks.events import DeliveriesRequested, Ping
from app.webhooks.models import DeliveryStatus, WebhookDelivery, WebhookEndpoint
from app.webhooks.outbox import AsyncOutbox
from app.webhooks.repository import WebhookRepository
from app.webhooks.schemas import CreateEndpoint, UpdateEndpoint
from app.webhooks.secrets import new_secret, secret_box

ROTATION_OVERLAP = timedelta(hours=24)


async def check_destination(url: str, settings: Settings) -> None:
    """Refused (422 naming `url`) unless the URL is allowed and every address its host has is too."""
    _, host, port = check_url(url, production=settings.environment == "production")
    # getaddrinfo blocks: a thread, never the event loop.
    await anyio.to_thread.run_sync(lambda: resolve(host, port, allow_private=settings.webhook_allow_private))


async def create_endpoint(
    session: AsyncSession, settings: Settings, workspace_id: uuid.UUID, request: CreateEndpoint
) -> tuple[WebhookEndpoint, str]:
    box = secret_box(settings)
    await check_destination(request.url, settings)
    secret = new_secret()
    endpoint = WebhookEndpoint(
        workspace_id=workspace_id,
        url=request.url,
        events=request.events,
        code_ids=None if request.code_ids is None else [str(code_id) for code_id in request.code_ids],
        tags=request.tags,
        description=request.description,
        enabled=request.enabled,
        secret=box.seal(secret),
    )
    session.add(endpoint)
    await session.commit()
    return endpoint, secret


async def get_endpoint(session: AsyncSession, workspace_id: uuid.UUID, endpoint_id: uuid.UUID) -> WebhookEndpoint:
    endpoint = await WebhookRepository(session).endpoint(workspace_id, endpoint_id)
    if endpoint is None:
        # Another workspace's endpoint too: 404, not 403.
        raise NotFound(f"no webhook endpoint with id {endpoint_id}", field="id")
    return endpoint


async def list_endpoints(session: AsyncSession, workspace_id: uuid.UUID) -> list[WebhookEndpoint]:
    return await WebhookRepository(session).endpoints(workspace_id)


async def update_endpoint(
    session: AsyncSession, settings: Settings, workspace_id: uuid.UUID, endpoint_id: uuid.UUID, changes: UpdateEndpoint
) -> WebhookEndpoint:
    endpoint = await get_endpoint(session, workspace_id, endpoint_id)
    given = changes.model_fields_set
    if "url" in given and changes.url is not None:
        await check_destination(changes.url, settings)
        endpoint.url = changes.url
    if "events" in given and changes.events is not None:
        endpoint.events = changes.events
    if "code_ids" in given:
        endpoint.code_ids = None if changes.code_ids is None else [str(code_id) for code_id in changes.code_ids]
    if "tags" in given:
        endpoint.tags = changes.tags
    if "description" in given:
        endpoint.description = changes.description
    if "enabled" in given and changes.enabled is not None:
        endpoint.enabled = changes.enabled
        if changes.enabled:  # enabled again by its owner: the failure streak starts over
            endpoint.disabled_reason, endpoint.failing_since = None, None
    endpoint.updated_at = utcnow()
    await session.commit()
    return endpoint


async def delete_endpoint(session: AsyncSession, workspace_id: uuid.UUID, endpoint_id: uuid.UUID) -> None:
    endpoint = await get_endpoint(session, workspace_id, endpoint_id)
    await session.delete(endpoint)
    await session.commit()


async def rotate_secret(
    session: AsyncSession, settings: Settings, workspace_id: uuid.UUID, endpoint_id: uuid.UUID
) -> tuple[WebhookEndpoint, str]:
    """A new secret signs from now on; the current one signs too (both signatures sent) for 24 hours."""
    box = secret_box(settings)
    endpoint = await get_endpoint(session, workspace_id, endpoint_id)
    secret = new_secret()
    endpoint.previous_secret, endpoint.secret = endpoint.secret, box.seal(secret)
    endpoint.previous_secret_until = utcnow() + ROTATION_OVERLAP
    endpoint.updated_at = utcnow()
    await session.commit()
    return endpoint, secret


async def send_ping(
    session: AsyncSession, publisher: EventPublisher, workspace_id: uuid.UUID, endpoint_id: uuid.UUID
) -> uuid.UUID:
    endpoint = await get_endpoint(session, workspace_id, endpoint_id)
    if not endpoint.enabled:
        raise Conflict("the endpoint is disabled: enable it first (PATCH enabled=true)", field="enabled")
    outbox = await AsyncOutbox.load(session, workspace_id, publisher)
    event_id = await outbox.record(workspace_id, Ping(endpoint_id=endpoint.id), only_endpoint=endpoint.id)
    await session.commit()
    assert event_id is not None  # an enabled endpoint always takes its own ping
    return event_id


async def list_deliveries(
    session: AsyncSession, workspace_id: uuid.UUID, endpoint_id: uuid.UUID, status: DeliveryStatus | None, limit: int
) -> list:
    await get_endpoint(session, workspace_id, endpoint_id)
    return await WebhookRepository(session).deliveries(endpoint_id, status, limit)


async def retry_delivery(
    session: AsyncSession, publisher: EventPublisher, workspace_id: uuid.UUID, endpoint_id: uuid.UUID,
    delivery_id: uuid.UUID,
) -> WebhookDelivery:
    await get_endpoint(session, workspace_id, endpoint_id)
    delivery = await WebhookRepository(session).delivery(endpoint_id, delivery_id)
    if delivery is None:
        raise NotFound(f"no delivery with id {delivery_id} for this endpoint", field="delivery_id")
    if delivery.status == DeliveryStatus.DELIVERED:
        raise Conflict("this delivery was delivered; replaying it would send a duplicate", field="delivery_id")
    delivery.status, delivery.failures = DeliveryStatus.PENDING, 0
    delivery.next_attempt_at, delivery.lease_until = utcnow(), None
    await session.commit()
    publisher.publish_later(DeliveriesRequested(endpoint_id=endpoint_id, delivery_ids=[delivery.id]))
    return delivery


async def replay(
    session: AsyncSession, publisher: EventPublisher, workspace_id: uuid.UUID, endpoint_id: uuid.UUID,
    since: datetime | None,
) -> int:
    await get_endpoint(session, workspace_id, endpoint_id)
    ids = await WebhookRepository(session).restart_dead(endpoint_id, since)
    await session.commit()
    if ids:
        for requested in DeliveriesRequested.for_endpoint(endpoint_id, ids):
            publisher.publish_later(requested)
    return len(ids)
