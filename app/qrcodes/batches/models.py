from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, ForeignKey, String, Uuid
from sqlalchemy.orm import Mapped, mapped_column

from app.kit.db import Base, UTCDateTime, new_id, utcnow


class Batch(Base):
    """Codes created by one request. Its progress is not stored: it is counted from its codes' statuses,
    so it cannot drift from them, whatever was redelivered or deleted."""

    __tablename__ = "batches"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=new_id)
    workspace_id: Mapped[uuid.UUID] = mapped_column(Uuid, ForeignKey("workspaces.id", ondelete="CASCADE"), index=True)
    source: Mapped[str] = mapped_column(String(8))  # "json" or "csv": what row numbers count
    # Image formats the archive holds (every format is rendered; these are the ones the client asked for).
    formats: Mapped[list[str]] = mapped_column(JSON)
    total: Mapped[int]  # codes created
    # Rows refused at creation (?partial=true): [{row, field, type, message}], in row order.
    rejected: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    rejected_rows: Mapped[int] = mapped_column(default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class BatchItem(Base):
    """A batch's code and the row it came from (the row number the client sees, for errors and the
    manifest). A table of its own so that codes made one by one carry nothing for batches."""

    __tablename__ = "batch_items"

    batch_id: Mapped[uuid.UUID] = mapped_column(Uuid, ForeignKey("batches.id", ondelete="CASCADE"), primary_key=True)
    row: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    # Unique: a code is in one batch at most; the index also serves "is this code in a batch?".
    code_id: Mapped[uuid.UUID] = mapped_column(Uuid, ForeignKey("qrcodes.id", ondelete="CASCADE"), unique=True)
