"""Events of the analytics context."""

from __future__ import annotations

import uuid
from datetime import date
from typing import ClassVar, Literal

from app.kit.events import Event


class RollupRequested(Event):
    """v1: a client asked for a rollup now (POST /v1/analytics/rollup). Beat's periodic runs of the same
    task carry no event. The rollup is global: the workspace is who asked, for the logs."""

    task_name: ClassVar[str] = "analytics.rollup"

    version: Literal[1] = 1
    workspace_id: uuid.UUID


class ReclassifyRequested(Event):
    """v1: an admin asked to judge stored scans again (POST /v1/admin/reclassify): those scanned since UTC
    day `since`, or all. Global, like a rollup: the workspace is who asked, for the logs and the task's owner."""

    task_name: ClassVar[str] = "analytics.reclassify_scans"

    version: Literal[1] = 1
    workspace_id: uuid.UUID
    since: date | None = None
