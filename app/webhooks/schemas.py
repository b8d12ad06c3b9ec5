"""The API's shapes for /v1/webhooks."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from app.webhooks.events import SUBSCRIBABLE

# PostgreSQL's text and JSON cannot hold U+0000: refused in every string, on every backend alike.
_NO_NUL = r"^[^\x00]*$"
EventName = Annotated[str, Field(max_length=40, pattern=_NO_NUL)]
Tag = Annotated[str, Field(max_length=64, pattern=_NO_NUL)]


def _check_events(events: list[str]) -> list[str]:
    unknown = [name for name in events if name != "*" and name not in SUBSCRIBABLE]
    if unknown:
        raise ValueError(f"unknown event types {unknown}; known: {', '.join(SUBSCRIBABLE)} or '*'")
    return list(dict.fromkeys(events))


class CreateEndpoint(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: str = Field(max_length=2000, pattern=_NO_NUL, examples=["https://example.com/qrflow-events"])
    events: list[EventName] = Field(min_length=1, max_length=20, description="Event types, or ['*'] for all")
    code_ids: list[uuid.UUID] | None = Field(None, max_length=1000, description="Only events about these codes")
    tags: list[Tag] | None = Field(
        None, max_length=50, description="Only events about codes with any of these tags"
    )
    description: str | None = Field(None, max_length=500, pattern=_NO_NUL)
    enabled: bool = True

    _events = field_validator("events")(_check_events)


class UpdateEndpoint(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: str | None = Field(None, max_length=2000, pattern=_NO_NUL)
    events: list[EventName] | None = Field(None, min_length=1, max_length=20)
    code_ids: list[uuid.UUID] | None = Field(None, max_length=1000)
    tags: list[Tag] | None = Field(None, max_length=50)
    description: str | None = Field(None, max_length=500, pattern=_NO_NUL)
    enabled: bool | None = None

    @field_validator("events")
    @classmethod
    def _known(cls, events: list[str] | None) -> list[str] | None:
        return None if events is None else _check_events(events)


class EndpointOut(BaseModel):
    id: uuid.UUID
    url: str
    events: list[str]
    code_ids: list[uuid.UUID] | None
    tags: list[str] | None
    description: str | None
    enabled: bool
    disabled_reason: str | None
    created_at: datetime
    updated_at: datetime
    # Only in the answers to create and rotate-secret: it is never shown again.
    secret: str | None = Field(None, description="whsec_…: shown once, on create and rotate-secret")
    previous_secret_until: datetime | None = None


class EndpointList(BaseModel):
    items: list[EndpointOut]


class AttemptOut(BaseModel):
    attempt: int
    attempted_at: datetime
    status_code: int | None
    duration_ms: int
    response: str | None = Field(description="The first 4 KiB of the response body")
    error: str | None


class DeliveryOut(BaseModel):
    id: uuid.UUID
    event_id: uuid.UUID
    event_type: str
    status: Literal["pending", "delivered", "dead"]
    next_attempt_at: datetime | None
    created_at: datetime
    delivered_at: datetime | None
    last_error: str | None
    attempts: list[AttemptOut]


class DeliveryPage(BaseModel):
    items: list[DeliveryOut]


class Replayed(BaseModel):
    deliveries: int = Field(description="Dead deliveries sent again")
