"""The HTTP shapes of batches."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from app.qrcodes.batches.intake import DEFAULT_FORMATS, MAX_ITEMS, MAX_LISTED_ERRORS
from app.qrcodes.schemas import CreateCode, ImageFormat

BatchStatus = Literal["pending", "running", "done", "failed"]


class CreateBatch(BaseModel):
    """The JSON body. (The gateway reads it itself, item by item, so that every bad row is reported.)"""

    model_config = ConfigDict(extra="forbid")

    items: list[CreateCode] = Field(
        min_length=1, max_length=MAX_ITEMS, description="Each one what POST /v1/qrcodes takes; row n is items[n-1]."
    )
    formats: list[ImageFormat] = Field(
        list(DEFAULT_FORMATS),
        min_length=1,
        description="The image formats of the archive (every code is rendered in all).",
    )


class BatchError(BaseModel):
    row: int = Field(description="JSON: the item's position from 1. CSV: the record's line, the header being line 1.")
    field: str = Field(description="The field at fault: a dotted path for JSON, the column for CSV.")
    type: str = Field(description="Machine-readable: `missing`, `value_error`, `slug_taken`, `render_failed`, …")
    message: str


class BatchOut(BaseModel):
    id: uuid.UUID
    status: BatchStatus = Field(
        description="`pending` until a first code is rendered, `running`, then `done`, or `failed` when "
        "some codes could not be rendered (`failed`, `errors`; the archive holds the others)."
    )
    total: int = Field(description="Codes created.")
    pending: int
    done: int = Field(description="Codes rendered.")
    failed: int = Field(description="Codes whose rendering failed.")
    deleted: int = Field(description="Codes deleted since (DELETE /v1/qrcodes/{id}); not in the archive.")
    rejected: int = Field(description="Rows refused at creation (?partial=true); not created.")
    errors: list[BatchError] = Field(
        description=f"Rejected rows' errors and rendering failures, by row; the first {MAX_LISTED_ERRORS} "
        "(manifest.csv in the archive lists every row)."
    )
    errors_total: int
    formats: list[str]
    source: Literal["json", "csv"]
    created_at: datetime
    finished_at: datetime | None = Field(None, description="When the last code was rendered; null until then.")
    archive: str = Field(description="URL of the zip of every image and manifest.csv (409 until finished).")


class BatchPage(BaseModel):
    items: list[BatchOut]
    next_cursor: str | None = Field(None, description="Pass as ?cursor= for the next page; null at the end.")
