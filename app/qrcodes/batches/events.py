from __future__ import annotations

import uuid
from typing import ClassVar, Literal

from pydantic import Field

from app.kit.events import Event

# One message carries this many codes at most (QRFLOW_BATCH_CHUNK_SIZE is bounded by it).
MAX_CHUNK = 1000


class BatchChunkRequested(Event):
    """v1: these codes of a batch should be rendered, each as `qrcodes.render` would. Handled by the task
    `qrcodes.render_batch` on queue `qr_batch`. A few messages per batch instead of one per code: one Celery
    message costs the worker's main process about as much as drawing a small code."""

    task_name: ClassVar[str] = "qrcodes.render_batch"

    version: Literal[1] = 1
    batch_id: uuid.UUID
    code_ids: list[uuid.UUID] = Field(min_length=1, max_length=MAX_CHUNK)
