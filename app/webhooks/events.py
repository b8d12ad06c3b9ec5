"""What receivers get: one envelope for every event, and a versioned data model per type.

`{"id", "type", "created_at", "workspace_id", "data"}`; `data` is the model of `type`, and carries its
own `version` so a receiver can tell a changed shape from the old one. The internal event that asks a
worker to send deliveries (DeliveriesRequested) is one of the platform's own (app/kit/events.py).
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict

from app.kit.events import Event


class EventData(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    type: ClassVar[str]
    version: Literal[1] = 1


class CodeData(EventData):
    """v1: a code as it is after the change."""

    code_id: uuid.UUID
    kind: str
    title: str | None
    tags: list[str]
    status: str
    slug: str | None  # a dynamic code's short link
    error: str | None = None  # why rendering failed (qrcode.failed)


class QRCodeCreated(CodeData):
    type: ClassVar[str] = "qrcode.created"


class QRCodeReady(CodeData):
    type: ClassVar[str] = "qrcode.ready"


class QRCodeFailed(CodeData):
    type: ClassVar[str] = "qrcode.failed"


class QRCodeUpdated(CodeData):
    type: ClassVar[str] = "qrcode.updated"


class QRCodeDeleted(CodeData):
    type: ClassVar[str] = "qrcode.deleted"


class BatchCompleted(EventData):
    """v1: the batch's last code left `pending`."""

    type: ClassVar[str] = "batch.completed"

    batch_id: uuid.UUID
    total: int
    ready: int
    failed: int
    rejected_rows: int


class LinkScanned(EventData):
    """v1: one stored human scan. Never an IP: `visitor` is the day's salted hash (docs/analytics)."""

    type: ClassVar[str] = "link.scanned"

    code_id: uuid.UUID
    slug: str
    scanned_at: datetime
    device: str
    os: str | None
    browser: str | None
    country: str | None
    referrer_host: str | None
    visitor: str


class LinkExhausted(EventData):
    """v1: a link's stored scans reached its max_scans."""

    type: ClassVar[str] = "link.exhausted"

    code_id: uuid.UUID
    slug: str
    max_scans: int
    scans_total: int


class Ping(EventData):
    """v1: POST /v1/webhooks/{id}/test."""

    type: ClassVar[str] = "ping"

    endpoint_id: uuid.UUID


EVENT_TYPES: dict[str, type[EventData]] = {
    model.type: model
    for model in (
        QRCodeCreated, QRCodeReady, QRCodeFailed, QRCodeUpdated, QRCodeDeleted,
        BatchCompleted, LinkScanned, LinkExhausted, Ping,
    )
}
SUBSCRIBABLE = sorted(name for name in EVENT_TYPES if name != "ping")


class Envelope(BaseModel):
    """What every delivery's body is."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: uuid.UUID
    type: str
    created_at: datetime
    workspace_id: uuid.UUID
    data: dict[str, Any]


def envelope_schemas() -> dict[str, Any]:
    """A JSON schema per event type: the envelope with that type's data (docs/webhooks.md, OpenAPI)."""
    schemas = {}
    for name, model in EVENT_TYPES.items():
        data = model.model_json_schema()
        schemas[name] = {
            "title": f"{name} event",
            "type": "object",
            "required": ["id", "type", "created_at", "workspace_id", "data"],
            "properties": {
                "id": {"type": "string", "format": "uuid", "description": "Same on every attempt: deduplicate by it"},
                "type": {"const": name},
                "created_at": {"type": "string", "format": "date-time"},
                "workspace_id": {"type": "string", "format": "uuid"},
                "data": data,
            },
        }
    return schemas


class DeliveriesRequested(Event):
    """v2: deliveries to one endpoint, to be sent (v1 named no endpoint and was fanned out into one message
    per delivery). Handled by `webhooks.deliveries_requested` on queue `webhooks`: one attempt each that
    is due, sent in order on one of the endpoint's concurrency slots; claimed together and recorded
    together, so a message costs two write transactions however many deliveries it carries."""

    task_name: ClassVar[str] = "webhooks.deliveries_requested"

    version: Literal[2] = 2
    endpoint_id: uuid.UUID
    delivery_ids: list[uuid.UUID]

    # Deliveries per message: a busy endpoint's backlog is spread over its slots (4 by default) in
    # messages small enough that one worker thread sends each within the time budget (delivery.py).
    AT_MOST: ClassVar[int] = 100

    @classmethod
    def for_endpoint(cls, endpoint_id: uuid.UUID, delivery_ids: list[uuid.UUID]) -> list[DeliveriesRequested]:
        return [
            cls(endpoint_id=endpoint_id, delivery_ids=delivery_ids[start:start + cls.AT_MOST])
            for start in range(0, len(delivery_ids), cls.AT_MOST)
        ]
