"""The time a request asks about: from/to/interval/tz → whole-hour UTC instants, the series' points, and
how the range splits into UTC days (which decides how exact unique visitors are: app/analytics/service.py).

- `from`/`to` are ISO-8601 instants; one without an offset (or a bare date) is read in `tz` (UTC by default).
  Defaults: `to` now, `from` 30 days before `to`.
- interval=hour: points are UTC hours (shown in `tz`); the range is widened to whole hours.
- interval=day: points are the dates in `tz` from `from`'s to `to`'s, local midnight to local midnight
  (23 or 25 hours across a DST change). Buckets are whole UTC hours, so in a zone whose offset is not whole
  hours (Asia/Kolkata, +05:30) a day runs from the UTC hour in which its local midnight falls: up to 45
  minutes early.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from typing import Literal
from zoneinfo import ZoneInfo, available_timezones

from app.kit.errors import Invalid

Interval = Literal["hour", "day"]
HOUR = timedelta(hours=1)
DAY = timedelta(days=1)
DEFAULT_RANGE = timedelta(days=30)
# Points per series: ~5 years of days or ~83 days of hours. A bound on the work one request can ask for.
MAX_POINTS = 2000
# A window must keep a day clear of the ends of datetime's range: the queries step past it by whole UTC days.
_FIRST = datetime(1, 1, 2, tzinfo=UTC)
_LAST = datetime(9999, 12, 30, tzinfo=UTC)


@dataclass(frozen=True)
class Point:
    label: datetime  # the point's start, in the request's time zone
    start: datetime  # UTC, a whole hour
    end: datetime


@dataclass(frozen=True)
class Window:
    start: datetime  # UTC, a whole hour: the first point's start
    end: datetime  # the last point's end
    interval: Interval
    tz: str
    points: tuple[Point, ...]


@dataclass(frozen=True)
class DaySpan:
    """Hours [first, stop) of one UTC day."""

    day: datetime  # UTC midnight
    first: int
    stop: int

    @property
    def whole(self) -> bool:
        return self.first == 0 and self.stop == 24


def floor_hour(at: datetime) -> datetime:
    return at.replace(minute=0, second=0, microsecond=0)


def floor_day(at: datetime) -> datetime:
    return at.replace(hour=0, minute=0, second=0, microsecond=0)


@lru_cache(maxsize=1)
def _zone_names() -> frozenset[str]:
    # Checked against the list rather than handed to ZoneInfo: a key is a path under the tz database, and
    # ZoneInfo would try to open whatever it is given (directories, tzdata's own non-zone files).
    return frozenset(available_timezones())


def zone(name: str | None) -> ZoneInfo:
    if name is None or name == "UTC":
        return ZoneInfo("UTC")
    if name not in _zone_names():
        raise Invalid(f"unknown time zone {name!r}; expected an IANA name such as Europe/Paris", field="tz")
    return ZoneInfo(name)


def _instant(value: datetime, tz: ZoneInfo, field: str) -> datetime:
    try:
        return (value if value.tzinfo else value.replace(tzinfo=tz)).astimezone(UTC)
    except (OverflowError, ValueError):
        raise Invalid(f"{field} is out of range", field=field) from None


def resolve(
    from_: datetime | None, to: datetime | None, interval: Interval, tz_name: str | None, now: datetime
) -> Window:
    tz = zone(tz_name)
    end = _instant(to, tz, "to") if to is not None else now
    try:
        start = _instant(from_, tz, "from") if from_ is not None else end - DEFAULT_RANGE
    except OverflowError:
        raise Invalid("to is too early for the default 30-day range; give from", field="from") from None
    if end <= start:
        raise Invalid("to must be after from", field="to")
    # Checked before any point is built: a range of centuries must not cost anything.
    step = HOUR if interval == "hour" else DAY
    if (end - start) / step > MAX_POINTS:
        raise _too_many(interval)
    try:
        points = _hours(start, end, tz) if interval == "hour" else _days(start, end, tz)
    except (OverflowError, ValueError):
        # Widening to whole hours or days went past the first or last representable instant.
        raise Invalid("from and to must be between years 1 and 9999 once widened to whole days", field="from") from None
    if len(points) > MAX_POINTS:
        raise _too_many(interval)
    if points[0].start < _FIRST or points[-1].end > _LAST:
        raise Invalid(f"from and to must be between {_FIRST.date()} and {_LAST.date()} (UTC)", field="from")
    return Window(points[0].start, points[-1].end, interval, tz.key, tuple(points))


def _too_many(interval: Interval) -> Invalid:
    hint = "narrow the range or ask for interval=day" if interval == "hour" else "narrow the range"
    return Invalid(f"the range between `from` and `to` holds more than {MAX_POINTS} {interval}s; {hint}", field="from")


def _hours(start: datetime, end: datetime, tz: ZoneInfo) -> list[Point]:
    at = floor_hour(start)
    points = []
    while at < end:
        points.append(Point(at.astimezone(tz), at, at + HOUR))
        at += HOUR
    return points


def _local_midnight(day: date, tz: ZoneInfo) -> tuple[datetime, datetime]:
    """(local midnight starting `day` in tz, the whole UTC hour it falls in)."""
    midnight = datetime.combine(day, time(), tzinfo=tz)
    return midnight, floor_hour(midnight.astimezone(UTC))


def _days(start: datetime, end: datetime, tz: ZoneInfo) -> list[Point]:
    """The local dates from `start`'s to the one just before `end`, each from its midnight (floored to the
    whole UTC hour) to the next day's."""
    day = start.astimezone(tz).date()
    # Dates are taken as asked, but the window must hold `start` itself, whose bucket may be the next day's.
    last = max((end - timedelta(microseconds=1)).astimezone(tz).date(), _day_holding(start, tz))
    label, at = _local_midnight(day, tz)
    points = []
    while day <= last:
        next_label, next_at = _local_midnight(day + DAY, tz)
        points.append(Point(label, at, next_at))
        day, label, at = day + DAY, next_label, next_at
    return points


def _day_holding(instant: datetime, tz: ZoneInfo) -> date:
    """The day whose bucket, [floored midnight, next floored midnight), holds `instant`: its local date, or
    the next one in the minutes between a midnight floored to the whole UTC hour and the midnight itself
    (zones whose offset is not whole hours: 23:59 in Kolkata is already in the next day's bucket)."""
    day = instant.astimezone(tz).date()
    return day + DAY if instant >= _local_midnight(day + DAY, tz)[1] else day


def day_spans(start: datetime, end: datetime) -> list[DaySpan]:
    """[start, end) (whole UTC hours) cut at UTC midnights."""
    spans = []
    day = floor_day(start)
    while day < end:
        first = max(start, day)
        stop = min(end, day + DAY)
        spans.append(DaySpan(day, (first - day) // HOUR, (stop - day) // HOUR))
        day += DAY
    return spans
