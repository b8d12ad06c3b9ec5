"""Queries of stored scans, for the gateway's async sessions."""

from __future__ import annotations

import uuid

from sqlalchemy import and_, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.qrcodes.repository import Cursor
from app.scans.models import Scan


class ScanRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def page(self, link_id: uuid.UUID, *, limit: int, after: Cursor | None = None) -> list[Scan]:
        """A link's scans, newest first; ties broken by event id.

        The cursor holds (scanned_at, event_id), not the row id: the row id counts every scan stored on
        this server, in every workspace, which is not a client's business.
        """
        query = select(Scan).where(Scan.link_id == link_id)
        if after is not None:
            query = query.where(
                or_(
                    Scan.scanned_at < after.created_at,  # the cursor's time, here when the scan happened
                    and_(Scan.scanned_at == after.created_at, Scan.event_id < after.id),
                )
            )
        query = query.order_by(Scan.scanned_at.desc(), Scan.event_id.desc()).limit(limit)
        return list(await self.session.scalars(query))
