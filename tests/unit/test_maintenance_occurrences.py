"""Maintenance windows: parsing, and window membership checked against brute force.

The brute force enumerates every occurrence of a schedule from its start and unions them; the
functions under test only look near the instant asked about.
"""

from __future__ import annotations

import functools
import time
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from medic_core.deadlines import CronExpectation, expected_at
from medic_core.errors import ValidationError
from medic_core.maintenance.occurrences import (
    MaintenanceSchedule,
    next_change,
    occurrence_at,
    parse_maintenance_schedule,
)

MICROSECOND = timedelta(microseconds=1)
ZONES = ("Europe/London", "America/New_York", "Australia/Lord_Howe", "Pacific/Chatham", "UTC")
RECURRENCES = (
    "0 2 * * *",
    "30 1 * * *",
    "45 2 * * *",
    "0 */6 * * *",
    "*/30 * * * *",
    "15 3 * * SUN",
    "30 2 * * 1-5",
    "0 0 * * *",
)

# No example database: these tests must not write into the repository.
examples = settings(max_examples=80, deadline=None, database=None)


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).astimezone(UTC)


# --- helpers -------------------------------------------------------------------------------


@functools.cache
def dst_transitions(zone: str) -> tuple[datetime, ...]:
    """The UTC hours in 2024-2026 at which the zone's offset changed (hour precision)."""
    tz = ZoneInfo(zone)
    found = []
    instant = datetime(2024, 1, 1, tzinfo=UTC)
    offset = instant.astimezone(tz).utcoffset()
    while instant.year < 2027:
        instant += timedelta(hours=1)
        now = instant.astimezone(tz).utcoffset()
        if now != offset:
            found.append(instant)
            offset = now
    return tuple(found)


def all_occurrences(s: MaintenanceSchedule) -> list[tuple[datetime, datetime]]:
    """Every occurrence, enumerated from starts_at (cron fire times checked elsewhere)."""
    if s.recurrence is None or s.duration is None:
        return [(s.starts_at, s.ends_at)]
    cron = CronExpectation(s.recurrence, s.timezone)
    found = []
    fire = expected_at(cron, last=s.starts_at - MICROSECOND, recent=[])
    while fire < s.ends_at:
        found.append((fire, min(fire + timedelta(seconds=s.duration), s.ends_at)))
        fire = expected_at(cron, last=fire, recent=[])
    return found


def merged(occurrences: list[tuple[datetime, datetime]]) -> list[tuple[datetime, datetime]]:
    """The union of the occurrences as disjoint, non-touching windows."""
    windows: list[tuple[datetime, datetime]] = []
    for start, end in sorted(occurrences):
        if windows and start <= windows[-1][1]:
            windows[-1] = (windows[-1][0], max(windows[-1][1], end))
        else:
            windows.append((start, end))
    return windows


def brute_force_occurrence_at(
    occurrences: list[tuple[datetime, datetime]], instant: datetime
) -> tuple[datetime, datetime] | None:
    containing = [o for o in occurrences if o[0] <= instant < o[1]]
    if not containing:
        return None
    window_end = next(e for s, e in merged(occurrences) if s <= instant < e)
    return min(s for s, _ in containing), window_end


def brute_force_next_change(
    occurrences: list[tuple[datetime, datetime]], instant: datetime
) -> datetime | None:
    edges = sorted(edge for window in merged(occurrences) for edge in window)
    return next((edge for edge in edges if edge > instant), None)


def inside(s: MaintenanceSchedule, instant: datetime) -> bool:
    return occurrence_at(s, instant) is not None


@st.composite
def recurring_schedules(draw: st.DrawFn) -> MaintenanceSchedule:
    """A recurring schedule a few days long, often spanning a DST change; occurrences may
    overlap (built directly, bypassing the parser's overlap check)."""
    zone = draw(st.sampled_from(ZONES))
    transitions = dst_transitions(zone)
    near_a_change = draw(st.booleans())
    if transitions and near_a_change:
        starts_at = draw(st.sampled_from(transitions)) - timedelta(hours=draw(st.integers(0, 72)))
    else:
        starts_at = datetime(2024, 1, 1, tzinfo=UTC) + timedelta(hours=draw(st.integers(0, 26_000)))
    starts_at += timedelta(seconds=draw(st.sampled_from([0, 0, 1, 1800, 3599])))
    recurrence = draw(st.sampled_from(RECURRENCES))
    span = timedelta(hours=draw(st.integers(1, 4 * 24 if "*/30" in recurrence else 10 * 24)))
    duration = draw(st.sampled_from([60, 1800, 3600, 5400, 6 * 3600, 25 * 3600]))
    return MaintenanceSchedule(
        starts_at=starts_at,
        ends_at=starts_at + span,
        timezone=zone,
        recurrence=recurrence,
        duration=duration,
    )


def probe_instants(
    data: st.DataObject, s: MaintenanceSchedule, occurrences: list[tuple[datetime, datetime]]
) -> list[datetime]:
    """Instants around the schedule, many exactly on (or next to) a window edge."""
    edges = [s.starts_at, s.ends_at, *(edge for o in occurrences for edge in o)]
    span = int((s.ends_at - s.starts_at).total_seconds())
    probes = []
    for _ in range(12):
        if data.draw(st.booleans()):
            edge = data.draw(st.sampled_from(edges))
            probes.append(
                edge + data.draw(st.sampled_from([-MICROSECOND, timedelta(0), MICROSECOND]))
            )
        else:
            offset = data.draw(st.integers(-86_400, span + 86_400))
            probes.append(s.starts_at + timedelta(seconds=offset))
    return probes


# --- parsing -------------------------------------------------------------------------------


def test_parse_accepts_iso_strings_and_aware_datetimes_and_normalises_to_utc() -> None:
    s = parse_maintenance_schedule(
        "2026-03-01T02:00:00+01:00", datetime(2026, 3, 1, 4, tzinfo=UTC), None, None, None
    )
    assert s == MaintenanceSchedule(at("2026-03-01T01:00:00Z"), at("2026-03-01T04:00:00Z"))
    assert s.starts_at.tzinfo is UTC and s.timezone == "UTC"

    recurring = parse_maintenance_schedule(
        "2026-03-01T00:00:00Z", "2026-06-01T00:00:00Z", "Europe/Paris", " 0  2 * * SUN ", 7200
    )
    assert recurring.recurrence == "0 2 * * SUN"
    assert recurring.duration == 7200
    assert recurring.timezone == "Europe/Paris"


@pytest.mark.parametrize(
    ("args", "field", "message"),
    [
        (
            ("tomorrow", "2026-03-02T00:00:00Z", "UTC", None, None),
            "starts_at",
            "starts_at must be an ISO 8601 instant such as '2026-03-01T02:00:00Z'",
        ),
        (
            ("2026-03-01T00:00:00Z", 1772409600, "UTC", None, None),
            "ends_at",
            "ends_at must be an ISO 8601 instant such as '2026-03-01T02:00:00Z'",
        ),
        (
            ("2026-03-01T00:00:00", "2026-03-02T00:00:00Z", "UTC", None, None),
            "starts_at",
            "starts_at must include a UTC offset or 'Z', e.g. '2026-03-01T02:00:00Z'",
        ),
        (
            (datetime(2026, 3, 1), "2026-03-02T00:00:00Z", "UTC", None, None),
            "starts_at",
            "starts_at must include a UTC offset or 'Z', e.g. '2026-03-01T02:00:00Z'",
        ),
        (
            ("2026-03-02T00:00:00Z", "2026-03-01T00:00:00Z", "UTC", None, None),
            "ends_at",
            "ends_at (2026-03-01T00:00:00Z) must be after starts_at (2026-03-02T00:00:00Z)",
        ),
        (
            ("2026-03-01T00:00:00Z", "2026-03-01T00:00:00Z", "UTC", None, None),
            "ends_at",
            "ends_at (2026-03-01T00:00:00Z) must be after starts_at (2026-03-01T00:00:00Z)",
        ),
        (
            ("2026-03-01T00:00:00Z", "2026-03-02T00:00:00Z", "Europe/Pariss", None, None),
            "timezone",
            "unknown time zone 'Europe/Pariss': use an IANA name such as 'Europe/Paris'",
        ),
        (
            ("2026-03-01T00:00:00Z", "2026-03-02T00:00:00Z", "UTC", None, 3600),
            "duration",
            "duration only applies to a recurring window: set recurrence, or drop duration "
            "for a single window from starts_at to ends_at",
        ),
        (
            ("2026-03-01T00:00:00Z", "2026-04-01T00:00:00Z", "UTC", "0 2 * * *", None),
            "duration",
            "duration is required with recurrence: how many seconds each occurrence lasts",
        ),
        (
            ("2026-03-01T00:00:00Z", "2026-04-01T00:00:00Z", "UTC", "0 2 * * *", 0),
            "duration",
            "duration must be between 1 and 31536000 seconds (365 days), got 0",
        ),
        (
            ("2026-03-01T00:00:00Z", "2026-04-01T00:00:00Z", "UTC", "0 2 * * *", True),
            "duration",
            "duration must be a whole number of seconds between 1 and 31536000, not a boolean",
        ),
        (
            ("2026-03-01T00:00:00Z", "2026-04-01T00:00:00Z", "UTC", "0 25 * * *", 60),
            "recurrence",
            "cron expression '0 25 * * *' is invalid: bad hour field "
            "(use 0-23, '*', lists a,b, ranges a-b and steps */n)",
        ),
        (
            ("2026-03-01T00:00:00Z", "2026-04-01T00:00:00Z", "UTC", "  ", 60),
            "recurrence",
            "recurrence must be a cron expression such as '0 2 * * SUN', or null for a single "
            "window",
        ),
        (
            ("2026-03-01T04:00:00Z", "2026-03-01T05:00:00Z", "UTC", "0 3 * * *", 60),
            "recurrence",
            "recurrence '0 3 * * *' never fires between starts_at (2026-03-01T04:00:00Z) and "
            "ends_at (2026-03-01T05:00:00Z) in UTC",
        ),
        (
            ("2026-03-01T00:00:00Z", "2026-04-01T00:00:00Z", "UTC", "0 * * * *", 3600),
            "duration",
            "duration 3600 s must be shorter than the 3600 s between the occurrences starting "
            "at 2026-03-01T00:00:00Z and 2026-03-01T01:00:00Z: occurrences must not touch or "
            "overlap (for one continuous window, drop recurrence and duration)",
        ),
        (
            # Daily at 02:00 New York is 24 h apart, except that 02:00 does not exist on
            # 10 March and runs at 03:00 EDT, 23 h before 02:00 EDT on 11 March.
            (
                "2024-03-01T00:00:00Z",
                "2024-04-01T00:00:00Z",
                "America/New_York",
                "0 2 * * *",
                84_600,
            ),
            "duration",
            "duration 84600 s must be shorter than the 82800 s between the occurrences starting "
            "at 2024-03-10T07:00:00Z and 2024-03-11T06:00:00Z: occurrences must not touch or "
            "overlap (for one continuous window, drop recurrence and duration)",
        ),
    ],
)
def test_parse_maintenance_schedule_explains_each_problem(
    args: tuple[object, ...], field: str, message: str
) -> None:
    with pytest.raises(ValidationError) as caught:
        parse_maintenance_schedule(*args)
    assert caught.value.field == field
    assert caught.value.message == message


def test_schedule_rejects_naive_datetimes_when_built_directly() -> None:
    with pytest.raises(ValueError, match="naive"):
        MaintenanceSchedule(datetime(2026, 1, 1), datetime(2026, 1, 2, tzinfo=UTC))


# --- single window -------------------------------------------------------------------------


def test_single_window_contains_its_start_but_not_its_end() -> None:
    s = MaintenanceSchedule(at("2026-03-01T02:00:00Z"), at("2026-03-01T04:00:00Z"))
    window = (s.starts_at, s.ends_at)
    assert occurrence_at(s, s.starts_at - MICROSECOND) is None
    assert occurrence_at(s, s.starts_at) == window
    assert occurrence_at(s, at("2026-03-01T03:00:00+00:00")) == window
    assert occurrence_at(s, s.ends_at - MICROSECOND) == window
    assert occurrence_at(s, s.ends_at) is None


def test_single_window_changes_at_its_start_then_its_end_then_never() -> None:
    s = MaintenanceSchedule(at("2026-03-01T02:00:00Z"), at("2026-03-01T04:00:00Z"))
    assert next_change(s, at("2026-01-01T00:00:00Z")) == s.starts_at
    assert next_change(s, s.starts_at) == s.ends_at
    assert next_change(s, s.ends_at - MICROSECOND) == s.ends_at
    assert next_change(s, s.ends_at) is None


# --- recurrence: examples ------------------------------------------------------------------


def test_weekly_window_opens_on_each_fire_and_lasts_duration() -> None:
    # Sundays 02:00-04:00 Paris time during March 2026 (DST starts Sunday 29 March at 02:00).
    s = parse_maintenance_schedule(
        "2026-03-01T00:00:00Z", "2026-04-01T00:00:00Z", "Europe/Paris", "0 2 * * SUN", 7200
    )
    first = (at("2026-03-01T02:00:00+01:00"), at("2026-03-01T04:00:00+01:00"))
    assert occurrence_at(s, at("2026-03-01T02:30:00+01:00")) == first
    assert occurrence_at(s, at("2026-03-02T02:30:00+01:00")) is None
    assert next_change(s, at("2026-03-02T00:00:00Z")) == at("2026-03-08T02:00:00+01:00")
    # 02:00 does not exist on 29 March; the occurrence opens when the clock jumps to 03:00.
    assert occurrence_at(s, at("2026-03-29T03:30:00+02:00")) == (
        at("2026-03-29T03:00:00+02:00"),
        at("2026-03-29T05:00:00+02:00"),
    )
    assert next_change(s, at("2026-03-29T05:00:00+02:00")) is None


def test_occurrences_are_clipped_to_ends_at_and_none_start_before_starts_at() -> None:
    s = MaintenanceSchedule(
        at("2026-03-01T02:30:00Z"),
        at("2026-03-03T03:00:00Z"),
        recurrence="0 2 * * *",
        duration=7200,
    )
    # The 1 March fire (02:00) is before starts_at: no occurrence, even though it would run
    # until 04:00.
    assert occurrence_at(s, at("2026-03-01T03:00:00Z")) is None
    assert next_change(s, at("2026-03-01T03:00:00Z")) == at("2026-03-02T02:00:00Z")
    assert occurrence_at(s, at("2026-03-03T02:59:59Z")) == (
        at("2026-03-03T02:00:00Z"),
        at("2026-03-03T03:00:00Z"),
    )
    assert next_change(s, at("2026-03-03T02:00:00Z")) == at("2026-03-03T03:00:00Z")
    assert next_change(s, at("2026-03-03T03:00:00Z")) is None


def test_overlapping_occurrences_built_directly_count_as_one_window() -> None:
    s = MaintenanceSchedule(
        at("2026-03-01T00:00:00Z"),
        at("2026-03-01T06:00:00Z"),
        recurrence="0 * * * *",
        duration=5400,
    )
    # 00:00-01:30, 01:00-02:30, ... 05:00-06:00: one window from 00:00 to 06:00.
    assert occurrence_at(s, at("2026-03-01T01:15:00Z")) == (
        at("2026-03-01T00:00:00Z"),
        at("2026-03-01T06:00:00Z"),
    )
    assert next_change(s, at("2026-03-01T00:00:00Z")) == at("2026-03-01T06:00:00Z")


def test_lookups_in_a_decades_long_every_minute_recurrence_stay_fast() -> None:
    # Walking from starts_at would take ~15 million cron steps; the functions look only near
    # the instant asked about.
    s = MaintenanceSchedule(
        at("2000-01-01T00:00:00Z"),
        at("2040-01-01T00:00:00Z"),
        timezone="Europe/London",
        recurrence="* * * * *",
        duration=30,
    )
    began = time.perf_counter()
    assert occurrence_at(s, at("2031-07-01T12:00:10Z")) == (
        at("2031-07-01T12:00:00Z"),
        at("2031-07-01T12:00:30Z"),
    )
    assert occurrence_at(s, at("2031-07-01T12:00:40Z")) is None
    assert next_change(s, at("2031-07-01T12:00:40Z")) == at("2031-07-01T12:01:00Z")
    assert time.perf_counter() - began < 0.5


# --- recurrence: properties against brute force --------------------------------------------


@examples
@given(st.data(), recurring_schedules())
def test_occurrence_at_agrees_with_brute_force_enumeration(
    data: st.DataObject, s: MaintenanceSchedule
) -> None:
    occurrences = all_occurrences(s)
    for instant in probe_instants(data, s, occurrences):
        assert occurrence_at(s, instant) == brute_force_occurrence_at(occurrences, instant), instant


@examples
@given(st.data(), recurring_schedules())
def test_next_change_agrees_with_brute_force_enumeration(
    data: st.DataObject, s: MaintenanceSchedule
) -> None:
    occurrences = all_occurrences(s)
    for instant in probe_instants(data, s, occurrences):
        assert next_change(s, instant) == brute_force_next_change(occurrences, instant), instant


@examples
@given(st.data(), recurring_schedules())
def test_next_change_is_where_occurrence_at_flips(
    data: st.DataObject, s: MaintenanceSchedule
) -> None:
    """Between ``after`` and ``next_change(after)`` membership is constant, and it differs at
    the change; with no next change, ``after`` is followed by nothing but outside."""
    occurrences = all_occurrences(s)
    for after in probe_instants(data, s, occurrences):
        change = next_change(s, after)
        if change is None:
            assert not inside(s, after + MICROSECOND)
            assert not inside(s, s.ends_at)
            continue
        assert change > after
        state = inside(s, change - MICROSECOND)
        assert inside(s, change) != state
        if change - after > 2 * MICROSECOND:
            assert inside(s, after + MICROSECOND) == state
            assert inside(s, after + (change - after) / 2) == state
        window = occurrence_at(s, after)
        if window is not None:
            assert window[0] <= after < window[1] == change
