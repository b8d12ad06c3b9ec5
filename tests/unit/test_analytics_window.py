"""The time window of an analytics request: points, local days, and the limits on what may be asked."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from app.analytics.window import HOUR, MAX_POINTS, DaySpan, day_spans, resolve
from app.kit.errors import Invalid

NOW = datetime(2026, 5, 17, 13, 45, tzinfo=UTC)


def test_defaults_are_the_last_30_days_in_whole_utc_days():
    window = resolve(None, None, "day", None, NOW)
    assert window.start == datetime(2026, 4, 17, tzinfo=UTC)
    assert window.end == datetime(2026, 5, 18, tzinfo=UTC)
    assert len(window.points) == 31 and window.tz == "UTC"


def test_local_days_follow_daylight_saving_time():
    paris = ZoneInfo("Europe/Paris")
    window = resolve(datetime(2026, 3, 28), datetime(2026, 3, 31), "day", "Europe/Paris", NOW)
    assert [p.end - p.start for p in window.points] == [timedelta(hours=24), timedelta(hours=23), timedelta(hours=24)]
    assert [p.label for p in window.points] == [datetime(2026, 3, d, tzinfo=paris) for d in (28, 29, 30)]
    autumn = resolve(datetime(2026, 10, 25), datetime(2026, 10, 26), "day", "Europe/Paris", NOW)
    assert [p.end - p.start for p in autumn.points] == [timedelta(hours=25)]


def test_a_half_hour_zone_s_days_start_in_the_utc_hour_of_local_midnight():
    window = resolve(datetime(2026, 1, 10), datetime(2026, 1, 11), "day", "Asia/Kolkata", NOW)
    [point] = window.points
    assert point.label == datetime(2026, 1, 10, tzinfo=ZoneInfo("Asia/Kolkata"))
    assert (point.start, point.end) == (datetime(2026, 1, 9, 18, tzinfo=UTC), datetime(2026, 1, 10, 18, tzinfo=UTC))
    # Dates are chosen as asked: 23:45 on the 10th is the 10th, though its UTC hour (18:00) starts the 11th.
    late = resolve(datetime(2026, 1, 10, 23, 45), datetime(2026, 1, 11, 1), "day", "Asia/Kolkata", NOW)
    assert [p.label.day for p in late.points] == [10, 11]


def test_hours_are_utc_hours_shown_in_the_zone():
    window = resolve(datetime(2026, 1, 10, 10, 30, tzinfo=UTC), datetime(2026, 1, 10, 12, 1, tzinfo=UTC), "hour",
                     "Asia/Kolkata", NOW)
    assert [p.label.isoformat() for p in window.points] == [
        "2026-01-10T15:30:00+05:30", "2026-01-10T16:30:00+05:30", "2026-01-10T17:30:00+05:30"]


@pytest.mark.parametrize(("from_", "to", "interval", "tz", "field"), [
    (None, None, "day", "Nowhere/Atlantis", "tz"),
    (None, None, "day", "Europe", "tz"),  # a directory of the tz database, not a zone
    (datetime(2026, 1, 2), datetime(2026, 1, 1), "day", None, "to"),
    (datetime(2026, 1, 1), datetime(2026, 1, 1), "hour", None, "to"),
    (datetime(2026, 1, 1), datetime(2026, 1, 1) + HOUR * (MAX_POINTS + 1), "hour", None, "from"),
    (datetime(1, 1, 1), datetime(9999, 12, 31), "day", None, "from"),
    (datetime(1, 1, 1, tzinfo=UTC), datetime(1, 1, 2, tzinfo=UTC), "day", "Pacific/Kiritimati", "from"),
    (None, datetime(1, 1, 5, tzinfo=UTC), "day", None, "from"),
])
def test_what_cannot_be_answered_is_refused_naming_the_field(from_, to, interval, tz, field):
    with pytest.raises(Invalid) as refused:
        resolve(from_, to, interval, tz, NOW)
    assert refused.value.field == field


instants = st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2040, 1, 1), timezones=st.just(UTC))


@given(start=instants, length=st.integers(1, 400 * 24 * 60), interval=st.sampled_from(["hour", "day"]),
       tz=st.sampled_from(["UTC", "Europe/Paris", "America/St_Johns", "Asia/Kathmandu", "Australia/Lord_Howe"]))
def test_points_are_contiguous_whole_hours_covering_the_range(start, length, interval, tz):
    end = start + timedelta(minutes=length)
    try:
        window = resolve(start, end, interval, tz, NOW)
    except Invalid as refused:
        assert refused.field == "from"  # too many points, and only then
        return
    assert all(p.start.minute == 0 and p.start < p.end for p in window.points)
    assert all(a.end == b.start for a, b in zip(window.points, window.points[1:], strict=False))
    assert window.start <= start
    if interval == "hour":
        assert window.points[0].start <= start < window.points[0].end and end <= window.end
        return
    zone = ZoneInfo(tz)
    assert window.points[0].label.date() == start.astimezone(zone).date()
    # The dates asked for, and the one whose bucket holds `start` (in a half-hour zone, the next day's from
    # the whole UTC hour before local midnight).
    last = max((end - timedelta(microseconds=1)).astimezone(zone).date(), _day_of(start, zone))
    assert window.points[-1].label.date() == last
    assert all(p.label.timetz().replace(tzinfo=None).isoformat() == "00:00:00" for p in window.points)
    # Each day's bounds are its local midnights, floored to whole UTC hours (exactly them in whole-hour zones).
    assert all(timedelta(0) <= p.label - p.start < HOUR for p in window.points)


def _day_of(instant: datetime, zone: ZoneInfo) -> date:
    """The day whose bucket holds an instant: its local date, except between the whole UTC hour before a
    local midnight and that midnight (half-hour zones), which is the next day's."""
    day = instant.astimezone(zone).date()
    next_midnight = datetime.combine(day + timedelta(days=1), time(), zone).astimezone(UTC)
    return day + timedelta(days=1) if next_midnight.replace(minute=0, second=0, microsecond=0) <= instant else day


def test_day_spans_cut_a_range_at_utc_midnights():
    spans = day_spans(datetime(2026, 1, 1, 22, tzinfo=UTC), datetime(2026, 1, 3, 2, tzinfo=UTC))
    assert spans == [DaySpan(datetime(2026, 1, 1, tzinfo=UTC), 22, 24),
                     DaySpan(datetime(2026, 1, 2, tzinfo=UTC), 0, 24),
                     DaySpan(datetime(2026, 1, 3, tzinfo=UTC), 0, 2)]
    assert [s.whole for s in spans] == [False, True, False]


def test_a_range_inside_the_minutes_before_a_half_hour_zones_midnight_is_covered():
    """Found by the property test: 18:29–18:30 UTC is 23:59 in Kolkata, yet in the bucket of the next
    local day, whose midnight (18:30 UTC) is floored to 18:00 UTC. The window must still hold the range."""
    start = datetime(2026, 3, 26, 18, 29, tzinfo=UTC)
    window = resolve(start, datetime(2026, 3, 26, 18, 30, tzinfo=UTC), "day", "Asia/Kolkata", start)
    assert window.start <= start < window.end
