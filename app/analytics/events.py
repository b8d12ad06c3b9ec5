"""Events of the analytics context."""

from __future__ import annotations

import uuid
from typing import ClassVar, Literal

from app.events import Event


class RollupRequested(Event):
    """v1: a client asked for a rollup now (POST /v1/analytics/rollup). Beat's periodic runs of the same
    task carry no event. The rollup is global: the workspace is who asked, for the logs."""

    task_name: ClassVar[str] = "analytics.rollup"

    version: Literal[1] = 1
    workspace_id: uuid.UUID
