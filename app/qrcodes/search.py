"""The codes' search: a substring of the title, the content or the slug, in any case.

Without an index a rare word walks every code of the workspace (bench/dashboard.py: 0.3–0.5 s at 100,000
codes). So a search of three characters or more first asks a trigram index for the codes that may match —
an FTS5 `trigram` table on SQLite, pg_trgm GIN indexes on PostgreSQL (migration 0013) — and the exact
predicate then decides, so the answer is the same as without the index. Shorter searches have no trigram
to look up and keep the walk along (workspace, created), which stops as soon as a page is full; so do
searches with more than FEW candidates (counted across workspaces), which fill a page soon on that walk
(bench/dashboard.py's `common search`: as cheap as the unsearched page).
"""

from __future__ import annotations

import uuid

from sqlalchemy import ColumnElement, Uuid, column, func, literal_column, or_, select, table, union_all
from sqlalchemy.ext.asyncio import AsyncSession

from app.links.models import Link
from app.qrcodes.models import QRCode

# SQLite: the FTS5 table of (title, content, slug), and the map from its integer rowids to code ids (a
# table's implicit rowid may change on VACUUM; the map's INTEGER PRIMARY KEY does not).
SQLITE_TEXT = "qrcode_search_text"
SQLITE_MAP = "qrcode_search"
# PostgreSQL: GIN indexes on lower(column) with gin_trgm_ops.
POSTGRES_INDEXES = {
    "ix_qrcodes_title_trgm": ("qrcodes", "title"),
    "ix_qrcodes_content_trgm": ("qrcodes", "content"),
    "ix_links_slug_trgm": ("links", "slug"),
}
TRIGRAM = 3
FEW = 1000
_SEARCH_MAP = table(SQLITE_MAP, column("rowid"), column("code_id", Uuid))
_SEARCH_TEXT = table(SQLITE_TEXT, column("rowid"))


def is_search_index_name(type_: str, name: str | None) -> bool:
    """What migration 0013 adds outside the models (Alembic's autogenerate is told to leave it alone)."""
    if name is None:
        return False
    if type_ == "table":
        return name == SQLITE_MAP or name.startswith(SQLITE_TEXT)
    return type_ == "index" and name in POSTGRES_INDEXES


def matching(search: str) -> ColumnElement[bool]:
    """The exact predicate: `search` as a substring (no wildcards) of the lowered title, content or slug.
    Needs Link outer-joined on QRCode.link_id."""
    pattern = "%" + _escaped(search.lower()) + "%"
    return or_(
        func.lower(QRCode.title).like(pattern, escape="\\"),
        func.lower(QRCode.content).like(pattern, escape="\\"),
        func.lower(Link.slug).like(pattern, escape="\\"),
    )


async def narrowing(session: AsyncSession, search: str) -> list[uuid.UUID] | None:
    """Ids of the codes that may match `search` when the trigram index finds at most FEW of them; None
    otherwise (too short a search, or so common a one that the walk is quicker). A list rather than a
    subquery: given a subquery, SQLite still walks the codes in page order and looks each one up in it."""
    lowered = search.lower()
    if len(lowered) < TRIGRAM:
        return None
    if session.get_bind().dialect.name == "postgresql":
        pattern = "%" + _escaped(lowered) + "%"
        found = union_all(
            select(QRCode.id).where(func.lower(QRCode.title).like(pattern, escape="\\")),
            select(QRCode.id).where(func.lower(QRCode.content).like(pattern, escape="\\")),
            select(QRCode.id).join(Link, QRCode.link_id == Link.id)
            .where(func.lower(Link.slug).like(pattern, escape="\\")),
        ).limit(FEW + 1)
    else:
        # An FTS5 phrase of the search's trigrams: the rows holding it as a substring, case folded (a
        # superset of what the exact predicate keeps, which compares lower() forms).
        phrase = '"' + lowered.replace('"', '""') + '"'
        rows = select(_SEARCH_TEXT.c.rowid).where(literal_column(SQLITE_TEXT).op("MATCH")(phrase)).limit(FEW + 1)
        found = select(_SEARCH_MAP.c.code_id).where(_SEARCH_MAP.c.rowid.in_(rows))
    ids = list(await session.scalars(found))
    return ids if len(ids) <= FEW else None


def _escaped(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
