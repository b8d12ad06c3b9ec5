"""Typed, versioned events. Each is published as a Celery task named for it (see celeryconfig routing).

An event travels as the task's single keyword argument `event`, JSON-serialised. Its `version` lets a
worker tell an old message from a new one during a rolling deploy: a handler accepts every version it
knows and refuses others loudly.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import ClassVar

from pydantic import BaseModel, ConfigDict, Field

from app.kit.db import new_id, utcnow


class Event(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    task_name: ClassVar[str]

    event_id: uuid.UUID = Field(default_factory=new_id)
    occurred_at: datetime = Field(default_factory=utcnow)
    version: int = 1

    def to_message(self) -> dict:
        return self.model_dump(mode="json")
