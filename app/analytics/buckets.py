"""How a batch of new scans changes the buckets: pure functions, no database.

The buckets always count exactly the scans with id <= the watermark. Folding the scans with ids in
(lo, hi] adds to them:
- scans and bots: +1 per new scan, in its hour and its day, for each dimension value it has;
- visitors, first_seen, last_seen: from the new scans *and the same visitors' earlier scans of the same
  link and UTC day* (ids <= lo). A visitor already seen in a bucket adds nothing to it; a new scan before
  a visitor's first one of the day moves their first_seen to its hour, and so on.
Those earlier scans are few (the visitor hash is salted per UTC day: they are one person's scans of one
day), so a fold costs in proportion to the new scans, however many the link already has that day. Nothing
is recounted from the raw table: unique counts stay exact with additive upserts. If earlier scans are no
longer there (retention deleted them), a returning visitor looks new and counts again: only then are
unique counts approximate (docs/api.md, Analytics).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import NamedTuple


class ScanFacts(NamedTuple):
    """The columns of a stored scan that the buckets count (the rollup selects exactly these)."""

    link_id: uuid.UUID
    scanned_at: datetime
    device: str
    os: str | None
    browser: str | None
    country: str | None
    referrer_host: str | None
    is_bot: bool  # not a person's scan (a bot's or an unknown agent's): counted under bots, never as a scan
    visitor: str
    agent_class: str = "person"  # person, bot or unknown (app/scans/agents.py): the `class` dimension


DIMENSION_NAMES = ("all", "device", "os", "browser", "country", "referrer", "class")

# Keys are kept small for speed (a rollup hashes a dozen per scan): a link as its UUID's int, a dimension as
# its index in DIMENSION_NAMES, an hour as hours since the epoch, a day as days since the epoch.
# (link, dimension index, value, hour or day number)
BucketKey = tuple[int, int, str, int]


EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
HOUR = timedelta(hours=1)


def hour_number(at: datetime) -> int:
    return (at - EPOCH) // HOUR  # integer arithmetic: exact at every hour's edge


def dimension_values(scan: ScanFacts) -> tuple[str, ...]:
    """The scan's value for each dimension of DIMENSION_NAMES; '' is unknown."""
    return ("", scan.device or "", scan.os or "", scan.browser or "", scan.country or "", scan.referrer_host or "",
            scan.agent_class)


@dataclass
class Deltas:
    """What to add to each bucket. hourly: [scans, bots, visitors, first_seen, last_seen]; daily: [scans,
    bots, visitors]. first_seen and last_seen may be negative (a visitor's first scan moved earlier)."""

    hourly: dict[BucketKey, list[int]] = field(default_factory=dict)
    daily: dict[BucketKey, list[int]] = field(default_factory=dict)
    links: dict[int, uuid.UUID] = field(default_factory=dict)


# (link, day number, visitor) → [(hour number, dimension values)] of that visitor's non-bot scans that day.
_Visits = dict[tuple[int, int, str], list[tuple[int, tuple[str, ...]]]]


def _visits(scans: Iterable[ScanFacts], only: _Visits | None = None) -> _Visits:
    visits: _Visits = {}
    for scan in scans:
        if scan.is_bot:
            continue
        hour = hour_number(scan.scanned_at)
        key = (scan.link_id.int, hour // 24, scan.visitor)
        if only is not None and key not in only:
            continue
        entry = visits.get(key)
        if entry is None:
            visits[key] = [(hour, dimension_values(scan))]
        else:
            entry.append((hour, dimension_values(scan)))
    return visits


def fold(new: list[ScanFacts], earlier: Iterable[ScanFacts]) -> Deltas:
    """The deltas of adding `new` to buckets that hold `earlier` (and maybe more, of other visitors).

    `earlier` must hold every non-bot scan with an id below the batch's of each (link, UTC day, visitor)
    in `new` that is still stored; other rows in it are ignored.
    """
    deltas = Deltas()
    hourly, daily = deltas.hourly, deltas.daily
    new_visits = _visits(new)
    old_visits = _visits(earlier, only=new_visits)
    for scan in new:
        link = scan.link_id.int
        deltas.links.setdefault(link, scan.link_id)
        hour = hour_number(scan.scanned_at)
        day = hour // 24
        values = dimension_values(scan)
        # The common case, a visitor's one scan of the day so far, in the same pass: a new visitor of each of
        # its buckets, first and last of the day in its hour.
        alone = not scan.is_bot and (key := (link, day, scan.visitor)) not in old_visits and len(new_visits[key]) == 1
        column = 1 if scan.is_bot else 0
        for dimension in range(len(DIMENSION_NAMES)):
            value = values[dimension]
            entry = hourly.get((link, dimension, value, hour))
            if entry is None:
                entry = hourly[(link, dimension, value, hour)] = [0, 0, 0, 0, 0]
            entry[column] += 1
            day_entry = daily.get((link, dimension, value, day))
            if day_entry is None:
                day_entry = daily[(link, dimension, value, day)] = [0, 0, 0]
            day_entry[column] += 1
            if alone:
                entry[2] += 1
                entry[3] += 1
                entry[4] += 1
                day_entry[2] += 1

    for (link, day, visitor), visits in new_visits.items():
        before = old_visits.get((link, day, visitor))
        if before is None and len(visits) == 1:
            continue  # counted above
        for dimension in range(len(DIMENSION_NAMES)):
            new_hours = _hours_by_value(visits, dimension)
            old_hours = _hours_by_value(before, dimension) if before else {}
            for value, hours in new_hours.items():
                _visitor_deltas(deltas, (link, dimension, value), day, hours, old_hours.get(value))
    return deltas


def _hours_by_value(visits: list[tuple[int, tuple[str, ...]]], dimension: int) -> dict[str, set[int]]:
    by_value: dict[str, set[int]] = {}
    for hour, values in visits:
        by_value.setdefault(values[dimension], set()).add(hour)
    return by_value


def _hour(deltas: Deltas, bucket: tuple[int, int, str], hour: int) -> list[int]:
    key = (*bucket, hour)
    entry = deltas.hourly.get(key)
    if entry is None:
        entry = deltas.hourly[key] = [0, 0, 0, 0, 0]
    return entry


def _visitor_deltas(
    deltas: Deltas, bucket: tuple[int, int, str], day: int, hours: set[int], before: set[int] | None
) -> None:
    """One visitor, one bucket (link, dimension, value): the hours of their new scans, and of their earlier
    ones that day (None: none)."""
    first, last = min(hours), max(hours)
    if not before:
        deltas.daily[(*bucket, day)][2] += 1
        for hour in hours:
            _hour(deltas, bucket, hour)[2] += 1
        _hour(deltas, bucket, first)[3] += 1
        _hour(deltas, bucket, last)[4] += 1
        return
    for hour in hours - before:
        _hour(deltas, bucket, hour)[2] += 1
    old_first, old_last = min(before), max(before)
    if first < old_first:
        _hour(deltas, bucket, old_first)[3] -= 1
        _hour(deltas, bucket, first)[3] += 1
    if last > old_last:
        _hour(deltas, bucket, old_last)[4] -= 1
        _hour(deltas, bucket, last)[4] += 1
