from __future__ import annotations

import uuid
from typing import ClassVar, Literal

from app.kit.events import Event


class RenderRequested(Event):
    """v1: a code's images should be rendered. Handled by the task `qrcodes.render` on queue `qr`."""

    task_name: ClassVar[str] = "qrcodes.render"

    version: Literal[1] = 1
    code_id: uuid.UUID


class ImagesDeleteRequested(Event):
    """v1: a deleted code's images are still in the image store, which was down when the code was deleted.
    Handled by the task `qrcodes.delete_images` on queue `default`, which waits the store out."""

    task_name: ClassVar[str] = "qrcodes.delete_images"

    version: Literal[1] = 1
    workspace_id: uuid.UUID
    code_id: uuid.UUID
