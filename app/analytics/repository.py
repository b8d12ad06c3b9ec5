"""Queries of the analytics context, for the gateway's async sessions. Reads come from the buckets; the
raw scans table is read only to export it (scans.csv)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import date, datetime
from typing import Any

from sqlalchemy import ColumnElement, Row, and_, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.analytics.models import DailyBucket, HourlyBucket, RollupState
from app.analytics.rollup import STATE
from app.links.models import Link
from app.qrcodes.models import QRCode
from app.scans.models import Scan

# Whose buckets: one link, or every link of a workspace (a subquery, not a list of thousands of ids).
Scope = uuid.UUID | tuple[str, uuid.UUID]


def workspace_scope(workspace_id: uuid.UUID) -> Scope:
    return ("workspace", workspace_id)


def _of(table: type[HourlyBucket | DailyBucket], scope: Scope) -> ColumnElement[bool]:
    if isinstance(scope, uuid.UUID):
        return table.link_id == scope
    return table.link_id.in_(select(Link.id).where(Link.workspace_id == scope[1]))


class BucketRepository:
    """Daily buckets are read by range (their key is link first: a code's year is one index range); hourly
    buckets by the hours wanted (`start IN (...)`: their key is time first, so each hour is one seek).
    app/analytics/models.py says why the two differ."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def state(self) -> tuple[datetime | None, date | None]:
        """(as_of, closed_before): up to when scans are counted; the first day without daily buckets."""
        row = (await self.session.execute(
            select(RollupState.as_of, RollupState.closed_before).where(RollupState.name == STATE)
        )).first()
        return (row[0], row[1]) if row else (None, None)

    async def daily_sums(
        self, scope: Scope, start: datetime, end: datetime, dimensions: Sequence[str]
    ) -> Sequence[Row[Any]]:
        """(link_id, dimension, value, scans, bots, visitors) summed over the days in [start, end).

        Summing daily visitors over days is exact: a visitor hash belongs to one UTC day."""
        t = DailyBucket
        query = (
            select(t.link_id, t.dimension, t.value, func.sum(t.scans), func.sum(t.bots), func.sum(t.visitors))
            .where(_of(t, scope), t.dimension.in_(dimensions), t.start >= start, t.start < end)
            .group_by(t.link_id, t.dimension, t.value)
        )
        return (await self.session.execute(query)).all()

    async def daily(self, scope: Scope, start: datetime, end: datetime) -> Sequence[Row[Any]]:
        """(start, scans, bots, visitors) per day in [start, end), dimension all, summed over the scope's links."""
        t = DailyBucket
        query = (
            select(t.start, func.sum(t.scans), func.sum(t.bots), func.sum(t.visitors))
            .where(_of(t, scope), t.dimension == "all", t.start >= start, t.start < end)
            .group_by(t.start)
        )
        return (await self.session.execute(query)).all()

    async def hourly_series(self, scope: Scope, hours: Sequence[datetime]) -> Sequence[Row[Any]]:
        """(start, scans, bots, visitors, first_seen, last_seen) of the given hours, dimension all, summed over
        the scope's links (sums of first_seen and last_seen still give exact prefix and suffix counts: visitors
        are per link)."""
        t = HourlyBucket
        query = (
            select(t.start, func.sum(t.scans), func.sum(t.bots), func.sum(t.visitors), func.sum(t.first_seen),
                   func.sum(t.last_seen))
            .where(t.dimension == "all", t.start.in_(hours), _of(t, scope))
            .group_by(t.start)
        )
        return (await self.session.execute(query)).all() if hours else []

    async def hourly(self, scope: Scope, hours: Sequence[datetime], dimensions: Sequence[str]) -> Sequence[Row[Any]]:
        """Every hourly bucket of the given hours: (link_id, dimension, value, start, scans, bots, visitors,
        first_seen, last_seen)."""
        t = HourlyBucket
        query = select(
            t.link_id, t.dimension, t.value, t.start, t.scans, t.bots, t.visitors, t.first_seen, t.last_seen
        ).where(t.dimension.in_(dimensions), t.start.in_(hours), _of(t, scope))
        return (await self.session.execute(query)).all() if hours else []

    async def workspace_codes(self, workspace_id: uuid.UUID) -> dict[uuid.UUID, Row[Any]]:
        """link id → (code id, title, slug) of the workspace's dynamic codes that are not deleted."""
        query = (
            select(QRCode.link_id, QRCode.id, QRCode.title, Link.slug)
            .join(Link, Link.id == QRCode.link_id)
            .where(QRCode.workspace_id == workspace_id, QRCode.deleted_at.is_(None))
        )
        return {row[0]: row for row in (await self.session.execute(query)).all()}

    async def scans_page(
        self,
        link_id: uuid.UUID,
        start: datetime | None,
        end: datetime | None,
        after: tuple[datetime, int] | None,
        limit: int,
    ) -> list[Scan]:
        """A link's stored scans, oldest first, from `after` (scanned_at, id) on: one page of scans.csv.
        Keyset order along ix_scans_link_scanned (link_id, scanned_at, id)."""
        query = select(Scan).where(Scan.link_id == link_id)
        if start is not None:
            query = query.where(Scan.scanned_at >= start)
        if end is not None:
            query = query.where(Scan.scanned_at < end)
        if after is not None:
            query = query.where(
                or_(Scan.scanned_at > after[0], and_(Scan.scanned_at == after[0], Scan.id > after[1]))
            )
        return list(await self.session.scalars(query.order_by(Scan.scanned_at, Scan.id).limit(limit)))
