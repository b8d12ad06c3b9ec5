"""Queries of the qrcodes context, for the gateway's async sessions. Deleted codes are invisible here."""

from __future__ import annotations

import base64
import json
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import Select, and_, or_, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import joinedload

from app.kit.errors import Invalid
from app.links.models import Link
from app.qrcodes import search as search_index
from app.qrcodes.models import QRCode, QRCodeTag


@dataclass(frozen=True)
class Cursor:
    """Position after the last item of a page: newest first, ties broken by id."""

    created_at: datetime
    id: uuid.UUID

    def encode(self) -> str:
        raw = json.dumps([self.created_at.isoformat(), str(self.id)]).encode()
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")

    @classmethod
    def decode(cls, token: str) -> Cursor:
        try:
            raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
            created_at, id_ = json.loads(raw)
            at = datetime.fromisoformat(created_at)
            if at.tzinfo is None:  # ours always carry UTC; a forged one might not
                raise ValueError("no offset")
            # In UTC here, as the database compares it: 9999-12-31T23:59:59-14:00 has no UTC instant.
            cursor = cls(at.astimezone(UTC), uuid.UUID(id_))
        except (ValueError, TypeError, OverflowError) as exc:
            raise Invalid("cursor is not one this API returned", field="cursor") from exc
        return cursor


class QRCodeRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    def add(self, code: QRCode) -> None:
        self.session.add(code)

    async def get(self, workspace_id: uuid.UUID, code_id: uuid.UUID) -> QRCode | None:
        # The tags joined into the same statement rather than selected after it: one statement fewer is
        # four fewer trips to the database's thread, each of which waits its turn on a flooded event loop.
        query = self._visible(workspace_id).where(QRCode.id == code_id).options(joinedload(QRCode.tag_rows))
        return (await self.session.scalars(query)).unique().one_or_none()

    async def page(
        self,
        workspace_id: uuid.UUID,
        *,
        limit: int,
        after: Cursor | None = None,
        tag: str | None = None,
        kind: str | None = None,
        status: str | None = None,
        search: str | None = None,
        oldest_first: bool = False,
    ) -> list[QRCode]:
        query = self._visible(workspace_id)
        if after is not None:
            before = or_(
                QRCode.created_at < after.created_at,
                and_(QRCode.created_at == after.created_at, QRCode.id < after.id),
            )
            since = or_(
                QRCode.created_at > after.created_at,
                and_(QRCode.created_at == after.created_at, QRCode.id > after.id),
            )
            query = query.where(since if oldest_first else before)
        if tag is not None:
            query = query.where(
                QRCode.id.in_(select(QRCodeTag.code_id).where(QRCodeTag.tag == tag))
            )
        if kind is not None:
            query = query.where(QRCode.kind == kind)
        if status is not None:
            query = query.where(QRCode.status == status)
        if search:
            query = query.outerjoin(Link, QRCode.link_id == Link.id).where(search_index.matching(search))
            found = await search_index.narrowing(self.session, search)
            if found is not None:
                query = query.where(QRCode.id.in_(found))
        if oldest_first:
            query = query.order_by(QRCode.created_at.asc(), QRCode.id.asc())
        else:
            query = query.order_by(QRCode.created_at.desc(), QRCode.id.desc())
        query = query.limit(limit)
        return list(await self.session.scalars(query))

    @staticmethod
    def _visible(workspace_id: uuid.UUID) -> Select[tuple[QRCode]]:
        return select(QRCode).where(QRCode.workspace_id == workspace_id, QRCode.deleted_at.is_(None))
