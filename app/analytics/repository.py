"""Queries of the analytics context, for the gateway's async sessions. Reads come from the buckets; the
raw scans table is read only to export it (scans.csv)."""

from __future__ import annotations

import uuid
from collections.abc import Collection, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Integer, Row, and_, cast, extract, func, or_, select
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
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def as_of(self) -> datetime | None:
        return await self.session.scalar(select(RollupState.as_of).where(RollupState.name == STATE))

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

    async def hourly_series(
        self, scope: Scope, start: datetime, end: datetime, hours_of_day: Collection[int] | None = None
    ) -> Sequence[Row[Any]]:
        """(start, scans, bots, visitors, first_seen, last_seen) per hour in [start, end), dimension all,
        summed over the scope's links (sums of first_seen and last_seen still give exact prefix and suffix
        counts: visitors are per link); only the given UTC hours of each day, if given."""
        t = HourlyBucket
        query = (
            select(t.start, func.sum(t.scans), func.sum(t.bots), func.sum(t.visitors), func.sum(t.first_seen),
                   func.sum(t.last_seen))
            .where(_of(t, scope), t.dimension == "all", t.start >= start, t.start < end)
            .group_by(t.start)
        )
        if hours_of_day is not None:
            query = query.where(self._hour_of_day(t.start).in_(sorted(hours_of_day)))
        return (await self.session.execute(query)).all()

    def _hour_of_day(self, column: Any) -> ColumnElement[int]:
        if self.session.bind.dialect.name == "postgresql":
            return cast(extract("hour", func.timezone("UTC", column)), Integer)
        # SQLite keeps the UTC instant as text: 'YYYY-MM-DD HH:MM:SS.ffffff'.
        return cast(func.substr(column, 12, 2), Integer)

    async def hourly(
        self, scope: Scope, ranges: Sequence[tuple[datetime, datetime]], dimensions: Sequence[str]
    ) -> Sequence[Row[Any]]:
        """Every hourly bucket in the given time ranges: (link_id, dimension, value, start, scans, bots,
        visitors, first_seen, last_seen)."""
        if not ranges:
            return []
        t = HourlyBucket
        query = select(
            t.link_id, t.dimension, t.value, t.start, t.scans, t.bots, t.visitors, t.first_seen, t.last_seen
        ).where(
            _of(t, scope),
            t.dimension.in_(dimensions),
            or_(*(and_(t.start >= low, t.start < high) for low, high in ranges)),
        )
        return (await self.session.execute(query)).all()

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
