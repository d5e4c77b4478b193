"""Weekly schedules (``medic_core.notify.weekly``) checked against a brute-force oracle.

The oracle knows nothing of ``WeeklyRange``: it lists, for each range and each listed day, every
wall-clock minute the range covers as a "minute of the week" (Monday 00:00 is 0; a range that
runs past midnight spills into the next day, Sunday into Monday). An instant is inside the
schedule when its local wall-clock minute is in that set. The tests sweep every minute of weeks
in which the zone changes its offset, so gaps (the skipped hour never occurs) and folds (the
repeated hour counts twice) are exercised by construction.
"""

from __future__ import annotations

import functools
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from medic_core.errors import ValidationError
from medic_core.notify.weekly import DAYS, describe, parse_weekly, within

MINUTES_PER_DAY = 24 * 60
MINUTES_PER_WEEK = 7 * MINUTES_PER_DAY

# (zone, the Monday, in local time, starting a week whose Sunday changes the offset).
DST_WEEKS = (
    ("America/New_York", "2026-03-02"),  # Sun 8 Mar 02:00 -> 03:00
    ("America/New_York", "2026-10-26"),  # Sun 1 Nov 02:00 -> 01:00
    ("Europe/Berlin", "2026-03-23"),  # Sun 29 Mar 02:00 -> 03:00
    ("Europe/Berlin", "2026-10-19"),  # Sun 25 Oct 03:00 -> 02:00
    ("Australia/Lord_Howe", "2026-03-30"),  # Sun 5 Apr 02:00 -> 01:30 (a half-hour change)
    ("Australia/Lord_Howe", "2026-09-28"),  # Sun 4 Oct 02:00 -> 02:30
    ("UTC", "2026-06-01"),
)

# No example database: these tests must not write into the repository.
examples = settings(max_examples=60, deadline=None, database=None)


# --- the oracle ------------------------------------------------------------------------------


def hhmm(minutes: int) -> str:
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


def covered(weekly: list[dict[str, Any]]) -> frozenset[int]:
    """Every minute of the week the wire-form ranges cover, enumerated one by one."""
    minutes: set[int] = set()
    for item in weekly:
        start_h, start_m = map(int, item["start"].split(":"))
        end_h, end_m = map(int, item["end"].split(":"))
        start, end = start_h * 60 + start_m, end_h * 60 + end_m
        length = end - start if end > start else end - start + MINUTES_PER_DAY
        for day in item["days"]:
            first = DAYS.index(day) * MINUTES_PER_DAY + start
            minutes.update((first + k) % MINUTES_PER_WEEK for k in range(length))
    return frozenset(minutes)


def minute_of_week(local: datetime) -> int:
    return local.weekday() * MINUTES_PER_DAY + local.hour * 60 + local.minute


@functools.cache
def sweep(zone: str, monday: str) -> tuple[tuple[datetime, int], ...]:
    """Every UTC minute from local Monday 00:00 for 8 days, with its local minute of the week.

    Eight days, so the following Monday morning (a range spilling past Sunday midnight) is in.
    """
    tz = ZoneInfo(zone)
    start = datetime.fromisoformat(monday).replace(tzinfo=tz).astimezone(UTC)
    points = []
    for step in range(8 * MINUTES_PER_DAY):
        instant = start + timedelta(minutes=step)
        points.append((instant, minute_of_week(instant.astimezone(tz))))
    return tuple(points)


def mismatches(weekly: list[dict[str, Any]], zone: str, monday: str) -> list[str]:
    ranges = parse_weekly(weekly)
    expected = covered(weekly)
    tz = ZoneInfo(zone)
    return [
        f"{instant.isoformat()} ({instant.astimezone(tz).isoformat()}): expected {key in expected}"
        for instant, key in sweep(zone, monday)
        if within(ranges, tz, instant) != (key in expected)
    ]


# --- strategies ------------------------------------------------------------------------------

# Times near the edges and the DST change hours are drawn often; any minute may be drawn.
EDGES = (0, 1, 60, 89, 90, 119, 120, 121, 150, 179, 180, 181, 1380, 1439)
starts = st.one_of(st.sampled_from(EDGES), st.integers(0, MINUTES_PER_DAY - 1))
ends = st.one_of(st.sampled_from((*EDGES, MINUTES_PER_DAY)), st.integers(0, MINUTES_PER_DAY))
wire_range = st.builds(
    lambda days, start, end: {"days": days, "start": hhmm(start), "end": hhmm(end)},
    st.lists(st.sampled_from(DAYS), min_size=1, max_size=7),
    starts,
    ends,
)
schedules = st.lists(wire_range, min_size=1, max_size=4)


# --- within agrees with the oracle -------------------------------------------------------------


@pytest.mark.parametrize(("zone", "monday"), DST_WEEKS)
@examples
@given(weekly=schedules)
@example(weekly=[{"days": ["sun"], "start": "22:00", "end": "06:00"}])  # Sunday into Monday
@example(weekly=[{"days": ["sun"], "start": "02:00", "end": "03:00"}])  # the changing hour
@example(weekly=[{"days": ["sun"], "start": "01:30", "end": "02:30"}])
@example(weekly=[{"days": ["wed"], "start": "09:00", "end": "09:00"}])  # a whole day
@example(weekly=[{"days": ["sat", "sun"], "start": "00:00", "end": "24:00"}])
@example(weekly=[{"days": ["mon", "tue", "wed", "thu", "fri"], "start": "09:00", "end": "17:30"}])
def test_within_agrees_with_brute_force_every_minute_of_a_dst_week(
    zone: str, monday: str, weekly: list[dict[str, Any]]
) -> None:
    wrong = mismatches(weekly, zone, monday)
    assert wrong == [], f"{len(wrong)} wrong minutes, first: {wrong[:3]}"


@examples
@given(
    weekly=schedules,
    zone=st.sampled_from(sorted({z for z, _ in DST_WEEKS} | {"Pacific/Chatham", "Asia/Kolkata"})),
    at=st.datetimes(
        min_value=datetime(2024, 1, 1), max_value=datetime(2028, 12, 31), timezones=st.just(UTC)
    ),
)
def test_within_agrees_with_brute_force_at_any_instant(
    weekly: list[dict[str, Any]], zone: str, at: datetime
) -> None:
    """Seconds and microseconds do not matter: the wall-clock minute decides."""
    tz = ZoneInfo(zone)
    expected = minute_of_week(at.astimezone(tz)) in covered(weekly)
    assert within(parse_weekly(weekly), tz, at) is expected


# --- the documented cases, spelled out ---------------------------------------------------------


def inside(weekly: list[dict[str, Any]], zone: str, local: str) -> bool:
    """Whether the schedule covers the (unambiguous) local wall time ``local`` in ``zone``."""
    tz = ZoneInfo(zone)
    return within(parse_weekly(weekly), tz, datetime.fromisoformat(local).replace(tzinfo=tz))


def covered_real_minutes(weekly: list[dict[str, Any]], zone: str, monday: str) -> int:
    ranges, tz = parse_weekly(weekly), ZoneInfo(zone)
    return sum(within(ranges, tz, instant) for instant, _ in sweep(zone, monday))


def test_a_range_past_midnight_covers_the_evening_and_the_next_morning() -> None:
    friday_night = [{"days": ["fri"], "start": "22:00", "end": "06:00"}]
    # 2026-03-06 is a Friday.
    assert not inside(friday_night, "UTC", "2026-03-06T21:59")
    assert inside(friday_night, "UTC", "2026-03-06T22:00")
    assert inside(friday_night, "UTC", "2026-03-07T05:59")
    assert not inside(friday_night, "UTC", "2026-03-07T06:00")
    assert not inside(friday_night, "UTC", "2026-03-05T23:00")  # Thursday night is not listed


def test_a_sunday_night_range_runs_into_monday_morning() -> None:
    sunday_night = [{"days": ["sun"], "start": "23:00", "end": "02:00"}]
    assert inside(sunday_night, "Europe/Berlin", "2026-03-08T23:30")  # Sunday
    assert inside(sunday_night, "Europe/Berlin", "2026-03-09T01:59")  # Monday
    assert not inside(sunday_night, "Europe/Berlin", "2026-03-09T02:00")
    assert not inside(sunday_night, "Europe/Berlin", "2026-03-10T01:00")  # Tuesday


def test_start_equal_to_end_is_a_whole_day_from_start() -> None:
    day = [{"days": ["wed"], "start": "09:00", "end": "09:00"}]
    # 2026-03-04 is a Wednesday.
    assert not inside(day, "UTC", "2026-03-04T08:59")
    assert inside(day, "UTC", "2026-03-04T09:00")
    assert inside(day, "UTC", "2026-03-05T08:59")
    assert not inside(day, "UTC", "2026-03-05T09:00")
    assert covered_real_minutes(day, "UTC", "2026-06-01") == MINUTES_PER_DAY
    midnight = parse_weekly([{"days": ["wed"], "start": "00:00", "end": "00:00"}])
    whole = parse_weekly([{"days": ["wed"], "start": "00:00", "end": "24:00"}])
    utc = ZoneInfo("UTC")
    points = [instant for instant, _ in sweep("UTC", "2026-06-01")]
    assert [within(midnight, utc, t) for t in points] == [within(whole, utc, t) for t in points]


def test_24_00_ends_a_range_at_midnight_without_spilling_into_the_next_day() -> None:
    evening = [{"days": ["sat"], "start": "18:00", "end": "24:00"}]
    assert inside(evening, "UTC", "2026-03-07T23:59")
    assert not inside(evening, "UTC", "2026-03-08T00:00")
    assert covered_real_minutes(evening, "UTC", "2026-06-01") == 6 * 60
    assert describe(parse_weekly(evening)) == evening


def test_wall_clock_hours_hold_across_dst_so_real_durations_change() -> None:
    sunday_night = [{"days": ["sun"], "start": "00:00", "end": "06:00"}]
    # Spring forward: 02:00-03:00 does not occur, so six wall-clock hours are five real ones.
    assert covered_real_minutes(sunday_night, "America/New_York", "2026-03-02") == 5 * 60
    # Fall back: 01:00-02:00 occurs twice, so the same range is seven real hours.
    assert covered_real_minutes(sunday_night, "America/New_York", "2026-10-26") == 7 * 60
    # Lord Howe moves by half an hour.
    assert covered_real_minutes(sunday_night, "Australia/Lord_Howe", "2026-09-28") == 330
    assert covered_real_minutes(sunday_night, "Australia/Lord_Howe", "2026-03-30") == 390
    # A range lying wholly in the skipped hour covers nothing that day.
    skipped = [{"days": ["sun"], "start": "02:00", "end": "03:00"}]
    assert covered_real_minutes(skipped, "Europe/Berlin", "2026-03-23") == 0
    # Both occurrences of a repeated wall time are inside (2026-11-01 01:30 EDT and EST).
    repeated = [{"days": ["sun"], "start": "01:00", "end": "02:00"}]
    tz = ZoneInfo("America/New_York")
    first = datetime(2026, 11, 1, 1, 30, tzinfo=tz)
    second = datetime(2026, 11, 1, 1, 30, fold=1, tzinfo=tz)
    assert first.astimezone(UTC) != second.astimezone(UTC)
    assert within(parse_weekly(repeated), tz, first)
    assert within(parse_weekly(repeated), tz, second)


@examples
@given(weekly=schedules)
def test_describe_is_canonical_and_round_trips(weekly: list[dict[str, Any]]) -> None:
    canonical = describe(parse_weekly(weekly))
    assert describe(parse_weekly(canonical)) == canonical
    assert covered(canonical) == covered(weekly)
    for item in canonical:
        assert item["days"] == sorted(set(item["days"]), key=DAYS.index)


# --- validation ------------------------------------------------------------------------------


def refused(value: object, field: str = "weekly") -> ValidationError:
    with pytest.raises(ValidationError) as caught:
        parse_weekly(value, field)
    return caught.value


OK_RANGE = {"days": ["mon"], "start": "09:00", "end": "17:00"}
LIST_RULE = (
    "weekly must be a list of 1 to 50 ranges such as "
    '{"days": ["mon", "fri"], "start": "09:00", "end": "17:00"}'
)
DAYS_RULE = "must be a non-empty list of mon, tue, wed, thu, fri, sat, sun"


@pytest.mark.parametrize(
    ("value", "field", "message"),
    [
        (None, "weekly", LIST_RULE),
        ({"days": ["mon"]}, "weekly", LIST_RULE),
        ([], "weekly", LIST_RULE),
        ([OK_RANGE] * 51, "weekly", LIST_RULE),
        (
            ["09:00-17:00"],
            "weekly[0]",
            "weekly[0] must be an object with exactly days, start and end",
        ),
        (
            [OK_RANGE, {"days": ["mon"], "start": "09:00"}],
            "weekly[1]",
            "weekly[1] must be an object with exactly days, start and end",
        ),
        (
            [{**OK_RANGE, "zone": "UTC"}],
            "weekly[0]",
            "weekly[0] must be an object with exactly days, start and end",
        ),
        ([{**OK_RANGE, "days": []}], "weekly[0].days", f"weekly[0].days {DAYS_RULE}"),
        ([{**OK_RANGE, "days": "mon"}], "weekly[0].days", f"weekly[0].days {DAYS_RULE}"),
        ([{**OK_RANGE, "days": ["Monday"]}], "weekly[0].days", f"weekly[0].days {DAYS_RULE}"),
        (
            [{**OK_RANGE, "start": "9:00"}],
            "weekly[0].start",
            "weekly[0].start must be a time HH:MM (00:00 to 24:00)",
        ),
        (
            [{**OK_RANGE, "end": "24:01"}],
            "weekly[0].end",
            "weekly[0].end must be a time HH:MM (00:00 to 24:00)",
        ),
        (
            [{**OK_RANGE, "end": 1700}],
            "weekly[0].end",
            "weekly[0].end must be a time HH:MM (00:00 to 24:00)",
        ),
        ([{**OK_RANGE, "start": "24:00"}], "weekly[0].start", "weekly[0].start cannot be 24:00"),
    ],
)
def test_invalid_schedules_are_refused_naming_the_part(
    value: object, field: str, message: str
) -> None:
    error = refused(value)
    assert error.field == field
    assert error.message == message


def test_errors_use_the_callers_field_name() -> None:
    error = refused([{**OK_RANGE, "start": "25:00"}], "hours")
    assert (error.field, error.message) == (
        "hours[0].start",
        "hours[0].start must be a time HH:MM (00:00 to 24:00)",
    )


VALID_TIMES = frozenset(hhmm(m) for m in range(MINUTES_PER_DAY + 1))


# Newlines are in the alphabet on purpose: "09:00\n" must be refused (a `$`-anchored match
# would accept it).
@examples
@given(
    text=st.one_of(
        st.sampled_from(sorted(VALID_TIMES)),
        st.text(alphabet="0123456789:24 \t\n", max_size=6),
        st.text(max_size=6),
        st.sampled_from(["09:00\n", "24:00\n"]),
    )
)
def test_a_time_is_accepted_exactly_when_it_is_hh_mm_up_to_24_00(text: str) -> None:
    value = [{"days": ["tue"], "start": "10:00", "end": text}]
    if text in VALID_TIMES:
        assert describe(parse_weekly(value))[0]["end"] == text
    else:
        assert refused(value).field == "weekly[0].end"
