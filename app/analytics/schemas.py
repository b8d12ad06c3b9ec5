"""The HTTP shapes of the analytics context."""

from __future__ import annotations

import uuid
from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from app.analytics.window import Interval

_UNIQUE = (
    "Distinct visitors: a visitor is a person (address and user agent) on one UTC day, so over several days "
    "this counts visitor-days."
)
_AS_OF = "Every scan stored before this moment is counted (null: no rollup has run yet)."
_EXACT = (
    "False when the range lies inside one UTC day without touching either of its midnights (and spans more "
    "than an hour): `unique` is then an upper bound. Series points are always exact."
)


class _Range(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    from_: datetime = Field(alias="from", description="Start of the first point (widened to a whole hour or day).")
    to: datetime = Field(description="End of the last point.")
    tz: str = Field(description="The time zone points are shown in (and days are cut in).")
    as_of: datetime | None = Field(description=_AS_OF)


class SeriesPoint(BaseModel):
    ts: datetime = Field(description="The point's start, in `tz`.")
    scans: int = Field(description="Scans by people (bots are not scans).")
    unique: int = Field(description="Distinct visitors in this hour or day.")
    bots: int = Field(description="Scans not counted: bots' and unknown agents' (breakdowns.class splits them).")


class BreakdownEntry(BaseModel):
    value: str | None = Field(description="null: unknown (no referrer, an unrecognised OS, …).")
    scans: int
    unique: int = Field(description=_UNIQUE)
    bots: int


class Breakdowns(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    device: list[BreakdownEntry] = Field(description="`mobile`, `tablet`, `desktop`, `other`.")
    os: list[BreakdownEntry]
    browser: list[BreakdownEntry]
    country: list[BreakdownEntry] = Field(description="ISO 3166-1 alpha-2 codes.")
    referrer: list[BreakdownEntry] = Field(description="Referrer host names.")
    class_: list[BreakdownEntry] = Field(
        alias="class",
        description="Who scanned: `person` (counted in scans), `bot` (crawlers, link previews, HTTP tools) and "
        "`unknown` (a user agent naming no browser, OS, device or crawler); the last two are under `bots`.",
    )


class CodeAnalytics(_Range):
    code_id: uuid.UUID
    interval: Interval
    total: int = Field(description="Scans by people in the range.")
    unique: int = Field(description=_UNIQUE)
    bots: int
    unique_exact: bool = Field(description=_EXACT)
    series: list[SeriesPoint] = Field(description="One point per hour or day of the range, zeros included.")
    breakdowns: Breakdowns = Field(description="Per dimension, the most scanned values first (at most 25).")


class TopCode(BaseModel):
    id: uuid.UUID
    title: str | None
    slug: str
    scans: int
    unique: int = Field(description=_UNIQUE)
    bots: int


class WorkspaceAnalytics(_Range):
    total: int = Field(description="Scans by people of every code of the workspace, deleted ones included.")
    unique: int = Field(description=_UNIQUE + " Summed over codes: someone who scanned two codes counts twice.")
    bots: int
    unique_exact: bool = Field(description=_EXACT)
    top_codes: list[TopCode] = Field(description="The most scanned codes of the range (deleted ones left out).")


class WorkspaceReport(WorkspaceAnalytics):
    """The dashboard's workspace analytics: the totals and top codes of GET /v1/analytics, with the workspace's
    series and breakdowns (summed over its codes, as `unique` is)."""

    interval: Interval
    series: list[SeriesPoint]
    breakdowns: Breakdowns
