"""Use cases of the analytics context, as the gateway runs them (async sessions): answers from buckets.

How a range's numbers come out of the buckets. The range is cut at UTC midnights into day spans:
- a whole UTC day: its daily bucket;
- the hours [0, h) of a day: scans and bots summed over its hourly buckets; unique visitors are the sum of
  first_seen over those hours (whoever scanned in [0, h) had their first scan of the day there): exact;
- the hours [h, 24) of a day: the same with last_seen: exact;
- a single hour: its hourly bucket: exact;
- hours [a, b) inside one day, touching neither midnight (a range shorter than a day, or a sub-day range
  that is not an hour): unique is an upper bound, the smallest of the visitors of [0, b), of [a, 24) and
  the sum of its hours'; `unique_exact` says so.
Spans add up exactly, since a visitor hash belongs to one UTC day. So every series point is exact (an hour,
a UTC day, or a local day, which is the end of one UTC day and the start of the next), and so are the
totals and breakdowns of every range but the last kind.
"""

from __future__ import annotations

import csv
import io
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.analytics.models import BREAKDOWN_DIMENSIONS, DIMENSIONS
from app.analytics.repository import BucketRepository, Scope, workspace_scope
from app.analytics.schemas import (
    BreakdownEntry,
    Breakdowns,
    CodeAnalytics,
    SeriesPoint,
    TopCode,
    WorkspaceAnalytics,
    WorkspaceReport,
)
from app.analytics.window import DAY, HOUR, DaySpan, Window, day_spans, floor_day
from app.kit.errors import Invalid
from app.kit.spreadsheet import safe_cell
from app.qrcodes.service import get_code
from app.scans.schemas import ScanOut

BREAKDOWN_LIMIT = 25
SCANS_CSV_PAGE = 1000


@dataclass
class Tally:
    scans: int = 0
    bots: int = 0
    unique: int = 0

    def add(self, scans: int, bots: int, unique: int) -> None:
        self.scans += scans
        self.bots += bots
        self.unique += unique


# An hourly bucket's counters: (scans, bots, visitors, first_seen, last_seen), by hour of its UTC day.
Hours = dict[int, tuple[int, int, int, int, int]]


def span_counts(hours: Hours, span: DaySpan, day: tuple[int, int, int] | None = None) -> tuple[int, int, int]:
    """(scans, bots, unique) of the hours [span.first, span.stop) of one UTC day (see the module's doc).

    With the day's totals (`day`: scans, bots, visitors), a span that starts or ends at midnight is counted
    from its smaller side: the day's first 20 hours are the day less its last 4 (their scans, bots, and the
    visitors whose first scan fell in them). `hours` then needs only the hours of that side.
    """
    first, stop = span.first, span.stop
    if first == 0 and stop > 12 and day is not None:
        rest = [row for h, row in hours.items() if h >= stop]
        return day[0] - sum(r[0] for r in rest), day[1] - sum(r[1] for r in rest), day[2] - sum(r[3] for r in rest)
    if stop == 24 and first < 12 and day is not None:
        rest = [row for h, row in hours.items() if h < first]
        return day[0] - sum(r[0] for r in rest), day[1] - sum(r[1] for r in rest), day[2] - sum(r[4] for r in rest)
    covered = [row for h, row in hours.items() if first <= h < stop]
    scans = sum(row[0] for row in covered)
    bots = sum(row[1] for row in covered)
    if first == 0:
        unique = sum(row[3] for row in covered)
    elif stop == 24:
        unique = sum(row[4] for row in covered)
    elif stop - first == 1:
        unique = covered[0][2] if covered else 0
    else:
        to_stop = sum(row[3] for h, row in hours.items() if h < stop)
        from_first = sum(row[4] for h, row in hours.items() if h >= first)
        unique = min(to_stop, from_first, sum(row[2] for row in covered))
    return scans, bots, unique


def _smaller_side(span: DaySpan) -> range:
    """The hours span_counts reads of a day, given its totals."""
    if span.first == 0 and span.stop > 12:
        return range(span.stop, 24)
    if span.stop == 24 and span.first < 12:
        return range(span.first)
    return range(span.first, span.stop)


def exact(spans: Iterable[DaySpan]) -> bool:
    return all(s.first == 0 or s.stop == 24 or s.stop - s.first == 1 for s in spans)


def _by_day(rows: Iterable[Sequence[Any]]) -> dict[tuple, Hours]:
    """Hourly rows → {(link_id, dimension, value, UTC day): {hour: counters}}."""
    grouped: dict[tuple, Hours] = defaultdict(dict)
    for link_id, dimension, value, start, *counters in rows:
        start = start.astimezone(UTC)
        grouped[(link_id, dimension, value, floor_day(start))][start.hour] = tuple(counters)  # type: ignore[assignment]
    return grouped


def _closed(closed_before: date | None) -> Callable[[datetime], bool]:
    """Whether a UTC day has its daily buckets (app/analytics/rollup.py close_days); other days are read
    from their hourly buckets, whose first_seen add up to the day's visitors."""
    if closed_before is None:
        return lambda day: False
    first_open = datetime.combine(closed_before, time(), UTC)
    return lambda day: day < first_open


def _daily_only(span: DaySpan, closed: Callable[[datetime], bool]) -> bool:
    """Whether a span is counted from its day's daily buckets alone: the whole of a closed day."""
    return span.whole and closed(span.day)


async def _tallies(
    repo: BucketRepository, scope: Scope, window: Window, dimensions: Sequence[str], closed: Callable[[datetime], bool]
) -> dict[tuple[uuid.UUID, str, str], Tally]:
    """(link_id, dimension, value) → its counts over the whole window."""
    spans = day_spans(window.start, window.end)
    # Closed whole days are consecutive (closed days come first, whole days are all but the ends): one range.
    whole = [s for s in spans if _daily_only(s, closed)]
    partial = {s.day: s for s in spans if not _daily_only(s, closed)}
    tallies: dict[tuple[uuid.UUID, str, str], Tally] = defaultdict(Tally)
    if whole:
        for link_id, dimension, value, scans, bots, visitors in await repo.daily_sums(
            scope, whole[0].day, whole[-1].day + DAY, dimensions
        ):
            tallies[(link_id, dimension, value)].add(scans, bots, visitors)
    if partial:
        # Whole days of hourly buckets: a span inside a day is bounded with the hours around it.
        rows = await repo.hourly(scope, [day + HOUR * h for day in partial for h in range(24)], dimensions)
        for (link_id, dimension, value, day), hours in _by_day(rows).items():
            tallies[(link_id, dimension, value)].add(*span_counts(hours, partial[day]))
    return tallies


async def _series(
    repo: BucketRepository, scope: Scope, window: Window, closed: Callable[[datetime], bool]
) -> list[SeriesPoint]:
    spans = [day_spans(p.start, p.end) for p in window.points]
    days: dict[datetime, tuple[int, int, int]] = {}
    hours: list[datetime] = []
    if window.interval == "hour":
        hours = [p.start for p in window.points]
    else:
        # Closed days from their daily buckets; a local day's part of one is the day less the few hours on
        # its other side. Open days (today) from all their hours.
        closed_days = sorted({span.day for point in spans for span in point if closed(span.day)})
        if closed_days:
            days = {start.astimezone(UTC): (scans, bots, visitors) for start, scans, bots, visitors
                    in await repo.daily(scope, closed_days[0], closed_days[-1] + DAY)}
        hours = sorted({
            span.day + HOUR * h
            for point in spans for span in point if not _daily_only(span, closed)
            for h in (_smaller_side(span) if closed(span.day) else range(24))
        })
    hours_by_day: dict[datetime, Hours] = defaultdict(dict)
    for start, *counters in await repo.hourly_series(scope, hours):
        start = start.astimezone(UTC)
        hours_by_day[floor_day(start)][start.hour] = tuple(counters)  # type: ignore[assignment]
    series = []
    for point, point_spans in zip(window.points, spans, strict=True):
        tally = Tally()
        for span in point_spans:
            day = days.get(span.day)  # None: an open day, no scans that day, or interval=hour
            if _daily_only(span, closed):
                if day:
                    tally.add(*day)
            elif (day_hours := hours_by_day.get(span.day, {})) or day:
                tally.add(*span_counts(day_hours, span, day))
        series.append(SeriesPoint(ts=point.label, scans=tally.scans, unique=tally.unique, bots=tally.bots))
    return series


def _breakdowns(tallies: dict[tuple[uuid.UUID, str, str], Tally]) -> Breakdowns:
    per_dimension: dict[str, dict[str, Tally]] = {d: defaultdict(Tally) for d in BREAKDOWN_DIMENSIONS}
    for (_, dimension, value), tally in tallies.items():
        if dimension in per_dimension:
            per_dimension[dimension][value].add(tally.scans, tally.bots, tally.unique)
    return Breakdowns(**{
        dimension: [
            BreakdownEntry(value=value or None, scans=t.scans, unique=t.unique, bots=t.bots)
            for value, t in sorted(values.items(), key=lambda item: (-item[1].scans, -item[1].bots, item[0]))[
                :BREAKDOWN_LIMIT
            ]
            if t.scans or t.bots
        ]
        for dimension, values in per_dimension.items()
    })


def _total(tallies: dict[tuple[uuid.UUID, str, str], Tally]) -> Tally:
    total = Tally()
    for (_, dimension, _), tally in tallies.items():
        if dimension == "all":
            total.add(tally.scans, tally.bots, tally.unique)
    return total


async def code_analytics(
    session: AsyncSession, workspace_id: uuid.UUID, code_id: uuid.UUID, window: Window
) -> CodeAnalytics:
    """A code's analytics over the window. A static code has none: scanning it never reaches this server."""
    code = await get_code(session, workspace_id, code_id)
    repo = BucketRepository(session)
    # Read first: a day closed after this still has its hourly buckets, so either way the numbers hold.
    as_of, closed_before = await repo.state()
    if code.link_id is not None:
        closed = _closed(closed_before)
        tallies = await _tallies(repo, code.link_id, window, DIMENSIONS, closed)
        series = await _series(repo, code.link_id, window, closed)
    else:
        tallies, series = {}, [SeriesPoint(ts=p.label, scans=0, unique=0, bots=0) for p in window.points]
    total = _total(tallies)
    return CodeAnalytics(
        code_id=code.id, from_=window.start, to=window.end, interval=window.interval, tz=window.tz,
        as_of=as_of, total=total.scans, unique=total.unique, bots=total.bots,
        unique_exact=exact(day_spans(window.start, window.end)), series=series, breakdowns=_breakdowns(tallies),
    )


async def workspace_analytics(
    session: AsyncSession, workspace_id: uuid.UUID, window: Window, top: int
) -> WorkspaceAnalytics:
    return (await _workspace_analytics(session, workspace_id, window, top, ["all"]))[0]


async def workspace_report(
    session: AsyncSession, workspace_id: uuid.UUID, window: Window, top: int
) -> WorkspaceReport:
    """workspace_analytics with the workspace's series (hour or day) and breakdowns: the dashboard's page."""
    repo = BucketRepository(session)
    summary, tallies = await _workspace_analytics(session, workspace_id, window, top, DIMENSIONS)
    _, closed_before = await repo.state()
    series = await _series(repo, workspace_scope(workspace_id), window, _closed(closed_before))
    return WorkspaceReport(
        **summary.model_dump(), interval=window.interval, series=series, breakdowns=_breakdowns(tallies)
    )


async def _workspace_analytics(
    session: AsyncSession, workspace_id: uuid.UUID, window: Window, top: int, dimensions: Sequence[str]
) -> tuple[WorkspaceAnalytics, dict[tuple[uuid.UUID, str, str], Tally]]:
    repo = BucketRepository(session)
    as_of, closed_before = await repo.state()
    tallies = await _tallies(repo, workspace_scope(workspace_id), window, dimensions, _closed(closed_before))
    codes = await repo.workspace_codes(workspace_id)
    total = _total(tallies)
    ranked = sorted(
        (
            (codes[link_id], tally)
            for (link_id, dimension, _), tally in tallies.items()
            if link_id in codes and dimension == "all"
        ),
        key=lambda item: (-item[1].scans, -item[1].unique, -item[1].bots, str(item[0][1])),
    )
    summary = WorkspaceAnalytics(
        from_=window.start, to=window.end, tz=window.tz, as_of=as_of,
        total=total.scans, unique=total.unique, bots=total.bots,
        unique_exact=exact(day_spans(window.start, window.end)),
        top_codes=[
            TopCode(id=code[1], title=code[2], slug=code[3], scans=t.scans, unique=t.unique, bots=t.bots)
            for code, t in ranked[:top]
            if t.scans or t.bots
        ],
    )
    return summary, tallies


# --- CSV exports ------------------------------------------------------------------------------------------


def _csv_line(values: Iterable[object]) -> str:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\r\n").writerow([safe_cell(v) for v in values])
    return buffer.getvalue()


def series_csv(analytics: CodeAnalytics | WorkspaceReport) -> Iterable[str]:
    yield _csv_line(("ts", "scans", "unique", "bots"))
    for point in analytics.series:
        yield _csv_line((point.ts.isoformat(), point.scans, point.unique, point.bots))


SCAN_COLUMNS = tuple(ScanOut.model_fields)


async def scans_csv_link(session: AsyncSession, workspace_id: uuid.UUID, code_id: uuid.UUID) -> uuid.UUID | None:
    """The link whose scans a code's scans.csv lists (None for a static code); NotFound as for the code."""
    return (await get_code(session, workspace_id, code_id)).link_id


def check_range(start: datetime | None, end: datetime | None) -> tuple[datetime | None, datetime | None]:
    """scans.csv's from/to: instants, UTC when they carry no offset."""
    def utc(value: datetime | None, field: str) -> datetime | None:
        if value is None:
            return None
        try:
            return (value if value.tzinfo else value.replace(tzinfo=UTC)).astimezone(UTC)
        except (OverflowError, ValueError):
            raise Invalid(f"{field} is out of range", field=field) from None

    start, end = utc(start, "from"), utc(end, "to")
    if start is not None and end is not None and end <= start:
        raise Invalid("to must be after from", field="to")
    return start, end


async def scans_csv(
    sessions: async_sessionmaker[AsyncSession],
    link_id: uuid.UUID | None,
    start: datetime | None,
    end: datetime | None,
) -> AsyncIterator[str]:
    """A link's scans as CSV lines, oldest first, a page at a time. Each page takes a database connection
    only while it is read, so a slow download never holds one (the gateway's SQLite engine has one)."""
    yield _csv_line(SCAN_COLUMNS)
    if link_id is None:
        return
    after = None
    while True:
        async with sessions() as session:
            page = await BucketRepository(session).scans_page(link_id, start, end, after, SCANS_CSV_PAGE)
        for scan in page:
            row = ScanOut.from_scan(scan).model_dump(mode="json")
            yield _csv_line(row[name] for name in SCAN_COLUMNS)
        if len(page) < SCANS_CSV_PAGE:
            return
        after = (page[-1].scanned_at, page[-1].id)
