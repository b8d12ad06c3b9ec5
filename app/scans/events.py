from __future__ import annotations

import uuid
from typing import ClassVar, Literal

from pydantic import Field

from app.kit.events import Event

# Bounds on what a client controls, so one spool line (and one batch message) stays small.
MAX_USER_AGENT = 512
MAX_REFERRER = 2048


class ScanRecorded(Event):
    """v1: a person's scan was answered with a redirect (occurred_at: when). Many travel in one message
    of the task `scans.record` on queue `scans` (app/scans/spool.py says why and how)."""

    task_name: ClassVar[str] = "scans.record"

    version: Literal[1] = 1
    slug: str
    link_id: uuid.UUID
    user_agent: str | None = Field(None, max_length=MAX_USER_AGENT)
    referrer: str | None = Field(None, max_length=MAX_REFERRER)
    # The client's address, as far as the gateway's trusted proxies say. It lives on the gateway's disk
    # and in the broker until a worker has hashed it; it is never stored (app/scans/ingest.py).
    ip: str | None = None
