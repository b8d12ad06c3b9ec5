from __future__ import annotations

import uuid
from typing import ClassVar, Literal

from app.kit.events import Event


class RenderRequested(Event):
    """v1: a code's images should be rendered. Handled by the task `qrcodes.render` on queue `qr`."""

    task_name: ClassVar[str] = "qrcodes.render"

    version: Literal[1] = 1
    code_id: uuid.UUID
