"""Heartbeat expectations: parsing, and the deadline math checked against brute force.

Cron fire times are checked against a minute-by-minute scan of the zone's wall clock, which
knows nothing of cronsim, around real DST changes in zones with one-hour, half-hour and
45-minute-offset changes.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from datetime import UTC, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from cronsim import CronSim
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from medic_core.deadlines import (
    CronExpectation,
    Expectation,
    IntervalExpectation,
    QuorumExpectation,
    expectation_to_dict,
    expected_at,
    next_due,
    parse_expectation,
    quorum_memory,
    remember,
    validate_grace,
)
from medic_core.errors import ValidationError

MAX_SECONDS = 31_536_000
MINUTE = timedelta(minutes=1)
MICROSECOND = timedelta(microseconds=1)
ZONES = (
    "Europe/London",
    "America/New_York",
    "Australia/Lord_Howe",  # 30-minute DST change
    "Asia/Kolkata",  # no DST, +05:30
    "Pacific/Chatham",  # +12:45 / +13:45, changes at 02:45 local
    "UTC",
)
NO_DST_ZONES = ("Asia/Kolkata", "UTC")

# No example database: these tests must not write into the repository.
examples = settings(max_examples=150, deadline=None, database=None)
few_examples = settings(max_examples=60, deadline=None, database=None)


# --- helpers -------------------------------------------------------------------------------


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).astimezone(UTC)


def local(
    zone: str, year: int, month: int, day: int, hour: int, minute: int, *, fold: int = 0
) -> datetime:
    """The UTC instant of a local wall-clock time (``fold=1``: its second occurrence)."""
    return datetime(year, month, day, hour, minute, tzinfo=ZoneInfo(zone), fold=fold).astimezone(
        UTC
    )


def wall(instant: datetime, zone: str) -> datetime:
    return instant.astimezone(ZoneInfo(zone)).replace(tzinfo=None, fold=0)


def cron_after(expression: str, zone: str, last: datetime) -> datetime:
    return expected_at(CronExpectation(expression, zone), last=last, recent=[last])


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


@st.composite
def zone_and_instant(draw: st.DrawFn, zones: tuple[str, ...] = ZONES) -> tuple[str, datetime]:
    """A zone, and an instant usually within hours of one of its DST changes.

    Instants are mostly whole minutes, so they often land exactly on fire times.
    """
    zone = draw(st.sampled_from(zones))
    transitions = dst_transitions(zone)
    near_a_change = draw(st.integers(0, 4)) > 0
    if transitions and near_a_change:
        base = draw(st.sampled_from(transitions))
        # Mostly within three hours of the change, where the gaps and repeated hours are.
        near = st.integers(-3 * 60, 3 * 60) | st.integers(-36 * 60, 36 * 60)
        base += timedelta(minutes=draw(near))
    else:
        base = datetime(2024, 1, 1, tzinfo=UTC)
        base += timedelta(minutes=draw(st.integers(0, 3 * 365 * 24 * 60)))
    base += draw(st.sampled_from([timedelta(0), timedelta(0), timedelta(seconds=30)]))
    base += timedelta(microseconds=draw(st.sampled_from([0, 0, 1, 999_999])))
    return zone, base


def brute_force_wall_time_fire(minute: int, hour: int, zone: str, last: datetime) -> datetime:
    """First instant after ``last`` at which cron runs a job pinned to local ``hour:minute``.

    Scans UTC minute by minute: the job runs the first time the wall clock reaches
    ``hour:minute`` on each local date (so a time skipped by a gap runs when the clock jumps
    past it, and a repeated time runs on its first pass only). The scan starts a few hours
    early so a time first reached before ``last`` is known when a repeated hour comes back.
    """
    instant = last.replace(second=0, microsecond=0) - timedelta(hours=3)
    previous_wall = wall(instant, zone)
    reached: set[datetime] = set()
    while True:
        instant += MINUTE
        current_wall = wall(instant, zone)
        for day in {previous_wall.date(), current_wall.date()}:
            target = datetime.combine(day, time(hour, minute))
            if previous_wall < target <= current_wall and target not in reached:
                reached.add(target)
                if instant > last:
                    return instant
        previous_wall = current_wall


def brute_force_wildcard_fire(
    minutes: Iterable[int], hours: Iterable[int], zone: str, last: datetime
) -> datetime:
    """First whole UTC minute after ``last`` whose local wall clock matches minute and hour."""
    minute_set, hour_set = set(minutes), set(hours)
    instant = last.replace(second=0, microsecond=0)
    while True:
        instant += MINUTE
        current_wall = wall(instant, zone)
        if current_wall.minute in minute_set and current_wall.hour in hour_set:
            return instant


# --- parsing -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ({"kind": "interval", "period": 60}, IntervalExpectation(period=60)),
        (
            {"kind": "cron", "expression": "0 3 * * *", "timezone": "Europe/Paris"},
            CronExpectation(expression="0 3 * * *", timezone="Europe/Paris"),
        ),
        ({"kind": "cron", "expression": "0 3 * * *"}, CronExpectation("0 3 * * *", "UTC")),
        (
            {"kind": "cron", "expression": "*/5 * * * *", "timezone": None},
            CronExpectation("*/5 * * * *"),
        ),
        ({"kind": "quorum", "min_count": 3, "window": 3600}, QuorumExpectation(3, 3600)),
        ({"kind": "interval", "period": MAX_SECONDS}, IntervalExpectation(MAX_SECONDS)),
        ({"kind": "quorum", "min_count": 1000, "window": 1}, QuorumExpectation(1000, 1)),
    ],
)
def test_parse_expectation_accepts_the_wire_forms(
    data: dict[str, Any], expected: Expectation
) -> None:
    assert parse_expectation(data) == expected


def test_cron_expression_whitespace_is_normalised() -> None:
    parsed = parse_expectation({"kind": "cron", "expression": "  0\t3 *  * *\n"})
    assert parsed == CronExpectation("0 3 * * *")
    assert expectation_to_dict(parsed)["expression"] == "0 3 * * *"


@pytest.mark.parametrize(
    ("data", "field", "message"),
    [
        (
            [("kind", "interval")],
            "expectation",
            'expectation must be an object such as {"kind": "interval", "period": 60}',
        ),
        (
            {"period": 60},
            "expectation.kind",
            "expectation.kind is required: use one of 'interval', 'cron', 'quorum'",
        ),
        (
            {"kind": "weekly"},
            "expectation.kind",
            "unknown expectation kind 'weekly': use one of 'interval', 'cron', 'quorum'",
        ),
        (
            {"kind": 3},
            "expectation.kind",
            "unknown expectation kind 3: use one of 'interval', 'cron', 'quorum'",
        ),
        (
            {"kind": "interval", "period": 60, "grace": 5, "foo": 1},
            "expectation.foo",
            "unknown fields 'foo', 'grace' in an interval expectation: "
            "allowed fields are 'kind', 'period'",
        ),
        (
            {"kind": "cron", "expression": "0 3 * * *", "tz": "UTC"},
            "expectation.tz",
            "unknown field 'tz' in a cron expectation: "
            "allowed fields are 'kind', 'expression', 'timezone'",
        ),
        (
            {"kind": "interval"},
            "expectation.period",
            "expectation.period is required for an interval expectation: "
            "the most seconds allowed between heartbeats, 1 to 31536000",
        ),
        (
            {"kind": "interval", "period": True},
            "expectation.period",
            "expectation.period must be a whole number of seconds between 1 and 31536000, "
            "not a boolean",
        ),
        (
            {"kind": "interval", "period": "60"},
            "expectation.period",
            "expectation.period must be a whole number of seconds between 1 and 31536000, not '60'",
        ),
        (
            {"kind": "interval", "period": 60.0},
            "expectation.period",
            "expectation.period must be a whole number of seconds between 1 and 31536000, not 60.0",
        ),
        (
            {"kind": "interval", "period": 0},
            "expectation.period",
            "expectation.period must be between 1 and 31536000 seconds (365 days), got 0",
        ),
        (
            {"kind": "interval", "period": MAX_SECONDS + 1},
            "expectation.period",
            "expectation.period must be between 1 and 31536000 seconds (365 days), got 31536001",
        ),
        (
            {"kind": "cron", "expression": "0 3 * * *", "timezone": "Europe/Pariss"},
            "expectation.timezone",
            "unknown time zone 'Europe/Pariss': use an IANA name such as 'Europe/Paris'",
        ),
        (
            {"kind": "cron", "expression": "0 3 * * *", "timezone": "Mars/Olympus_Mons"},
            "expectation.timezone",
            "unknown time zone 'Mars/Olympus_Mons': use an IANA name such as 'Europe/Paris'",
        ),
        (
            {"kind": "cron", "expression": "0 3 * * *", "timezone": "America"},
            "expectation.timezone",
            "unknown time zone 'America': use an IANA name such as 'Europe/Paris'",
        ),
        (
            {"kind": "cron", "expression": "0 3 * * *", "timezone": "../../etc/passwd"},
            "expectation.timezone",
            "unknown time zone '../../etc/passwd': use an IANA name such as 'Europe/Paris'",
        ),
        (
            {"kind": "cron", "expression": "0 3 * * *", "timezone": 1},
            "expectation.timezone",
            "expectation.timezone must be an IANA time zone name such as 'Europe/Paris' or 'UTC'",
        ),
        (
            {"kind": "cron", "expression": "61 * * * *"},
            "expectation.expression",
            "cron expression '61 * * * *' is invalid: bad minute field "
            "(use 0-59, '*', lists a,b, ranges a-b and steps */n)",
        ),
        (
            {"kind": "cron", "expression": "0 24 * * *"},
            "expectation.expression",
            "cron expression '0 24 * * *' is invalid: bad hour field "
            "(use 0-23, '*', lists a,b, ranges a-b and steps */n)",
        ),
        (
            {"kind": "cron", "expression": "0 3 * 13 *"},
            "expectation.expression",
            "cron expression '0 3 * 13 *' is invalid: bad month field "
            "(use 1-12 or JAN-DEC, '*', lists a,b, ranges a-b and steps */n)",
        ),
        (
            {"kind": "cron", "expression": "0 3 * * FUNDAY"},
            "expectation.expression",
            "cron expression '0 3 * * FUNDAY' is invalid: bad day-of-week field "
            "(use 0-7 or SUN-SAT, with optional L or #n, '*', lists a,b, ranges a-b and "
            "steps */n)",
        ),
        (
            {"kind": "cron", "expression": "0 3 * *"},
            "expectation.expression",
            "cron expression '0 3 * *' is invalid: it needs 5 fields "
            "(minute hour day-of-month month day-of-week), got 4",
        ),
        (
            {"kind": "cron", "expression": "0 0 3 * * *"},
            "expectation.expression",
            "cron expression '0 0 3 * * *' is invalid: it needs 5 fields "
            "(minute hour day-of-month month day-of-week), got 6",
        ),
        (
            {"kind": "cron", "expression": "@daily"},
            "expectation.expression",
            "cron expression '@daily' is invalid: it needs 5 fields "
            "(minute hour day-of-month month day-of-week), got 1",
        ),
        (
            {"kind": "cron", "expression": "0 0 30 2 *"},
            "expectation.expression",
            "cron expression '0 0 30 2 *' never fires: day-of-month '30' does not exist in "
            "month '2'",
        ),
        (
            {"kind": "cron", "expression": "0 0 31 4,6,9,11 *"},
            "expectation.expression",
            "cron expression '0 0 31 4,6,9,11 *' never fires: day-of-month '31' does not exist "
            "in month '4,6,9,11'",
        ),
        (
            {"kind": "cron", "expression": "0 0 32 * *"},
            "expectation.expression",
            "cron expression '0 0 32 * *' is invalid: bad day-of-month field "
            "(use 1-31, L or LW, '*', lists a,b, ranges a-b and steps */n)",
        ),
        (
            {"kind": "cron", "expression": 5},
            "expectation.expression",
            "expectation.expression must be a cron expression string such as '0 3 * * *'",
        ),
        (
            {"kind": "cron", "expression": "0 " * 120},
            "expectation.expression",
            "cron expression is too long (240 characters, at most 200)",
        ),
        (
            {"kind": "cron"},
            "expectation.expression",
            "expectation.expression is required for a cron expectation: "
            "a 5-field cron expression such as '0 3 * * *'",
        ),
        (
            {"kind": "quorum", "min_count": 3},
            "expectation.window",
            "expectation.window is required for a quorum expectation: "
            "the length of the sliding window in seconds, 1 to 31536000",
        ),
        (
            {"kind": "quorum", "min_count": 0, "window": 60},
            "expectation.min_count",
            "expectation.min_count must be between 1 and 1000 heartbeats, got 0",
        ),
        (
            {"kind": "quorum", "min_count": 1001, "window": 60},
            "expectation.min_count",
            "expectation.min_count must be between 1 and 1000 heartbeats, got 1001",
        ),
        (
            {"kind": "quorum", "min_count": False, "window": 60},
            "expectation.min_count",
            "expectation.min_count must be a whole number of heartbeats between 1 and 1000, "
            "not a boolean",
        ),
        (
            {"kind": "quorum", "min_count": 3, "window": -5},
            "expectation.window",
            "expectation.window must be between 1 and 31536000 seconds (365 days), got -5",
        ),
    ],
)
def test_parse_expectation_explains_each_problem(data: Any, field: str, message: str) -> None:
    with pytest.raises(ValidationError) as caught:
        parse_expectation(data)
    assert caught.value.field == field
    assert caught.value.message == message


def test_constructing_an_invalid_expectation_directly_is_refused() -> None:
    with pytest.raises(ValidationError, match=r"expectation\.period"):
        IntervalExpectation(period=0)
    with pytest.raises(ValidationError, match="unknown time zone"):
        CronExpectation("0 3 * * *", "Nowhere/Special")
    with pytest.raises(ValidationError, match="never fires"):
        CronExpectation("0 0 30 2 *")


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (-1, "grace must be between 0 and 31536000 seconds (365 days), got -1"),
        (MAX_SECONDS + 1, "grace must be between 0 and 31536000 seconds (365 days), got 31536001"),
        (True, "grace must be a whole number of seconds between 0 and 31536000, not a boolean"),
        (1.5, "grace must be a whole number of seconds between 0 and 31536000, not 1.5"),
        (None, "grace must be a whole number of seconds between 0 and 31536000, not None"),
    ],
)
def test_validate_grace_rejects_anything_but_whole_seconds_in_range(
    value: object, message: str
) -> None:
    with pytest.raises(ValidationError) as caught:
        validate_grace(value)
    assert caught.value.field == "grace"
    assert caught.value.message == message


@pytest.mark.parametrize("value", [0, 1, 300, MAX_SECONDS])
def test_validate_grace_accepts_whole_seconds_in_range(value: int) -> None:
    assert validate_grace(value) == value


simple_cron = st.builds(
    lambda minute, hour, dom, month, dow: f"{minute} {hour} {dom} {month} {dow}",
    st.sampled_from(["*", "*/7", "0", "5", "30", "0,30", "10-20", "15-45/10", "59"]),
    st.sampled_from(["*", "*/3", "0", "1", "2", "3", "1-3", "22,23", "0-23/6"]),
    st.sampled_from(["*", "1", "15", "L", "LW", "1-7", "*/10", "29", "31"]),
    st.sampled_from(["*", "1", "2", "3,10", "*/4", "JAN-MAR", "11"]),
    st.sampled_from(["*", "0", "1-5", "MON", "5L", "1#2", "SAT,SUN", "7"]),
)


def _valid_cron(expression: str, zone: str) -> CronExpectation:
    try:
        return CronExpectation(expression, zone)
    except ValidationError:
        assume(False)
        raise


expectations_strategy = st.one_of(
    st.builds(IntervalExpectation, period=st.integers(1, MAX_SECONDS)),
    st.builds(_valid_cron, simple_cron, st.sampled_from([*ZONES, "Europe/Paris"])),
    st.builds(
        QuorumExpectation, min_count=st.integers(1, 1000), window=st.integers(1, MAX_SECONDS)
    ),
)


@examples
@given(expectations_strategy)
def test_expectation_to_dict_round_trips_through_parse(e: Expectation) -> None:
    wire = expectation_to_dict(e)
    assert parse_expectation(wire) == e
    assert expectation_to_dict(parse_expectation(wire)) == wire
    assert wire["kind"] == e.kind


json_values = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-10, 10**8),
    st.floats(-10.0, 10.0),
    st.text(max_size=8),
    st.text(alphabet="0123456789*/,-LW#MONSUNJAN ", max_size=24),
    st.sampled_from(["UTC", "Europe/London", "Europe/Pariss", "0 3 * * *", "60"]),
)
WIRE_FIELDS = {
    "interval": ("period",),
    "cron": ("expression", "timezone"),
    "quorum": ("min_count", "window"),
    "weekly": ("period",),
}


@st.composite
def wire_expectations(draw: st.DrawFn) -> dict[str, Any]:
    """Wire-form objects that are mostly the right shape, with arbitrary values."""
    kind = draw(st.sampled_from(sorted(WIRE_FIELDS)))
    data: dict[str, Any] = {"kind": kind}
    for name in WIRE_FIELDS[kind]:
        if draw(st.integers(0, 9)) > 0:
            data[name] = draw(json_values)
    if draw(st.integers(0, 9)) == 0:
        data["extra"] = draw(json_values)
    return data


@examples
@given(wire_expectations())
def test_parse_expectation_raises_only_validation_errors_on_arbitrary_input(
    data: dict[str, Any],
) -> None:
    try:
        e = parse_expectation(data)
    except ValidationError as error:
        assert error.field is not None and error.field.startswith("expectation")
        assert error.message
    else:
        assert parse_expectation(expectation_to_dict(e)) == e


# --- quorum memory -------------------------------------------------------------------------


def test_quorum_memory_is_min_count_for_quorum_and_zero_otherwise() -> None:
    assert quorum_memory(QuorumExpectation(min_count=7, window=60)) == 7
    assert quorum_memory(IntervalExpectation(period=60)) == 0
    assert quorum_memory(CronExpectation("0 3 * * *")) == 0


instants = st.datetimes(
    min_value=datetime(2020, 1, 1), max_value=datetime(2030, 1, 1), timezones=st.just(UTC)
)


@examples
@given(st.lists(instants, max_size=12), instants, st.integers(0, 15))
def test_remember_keeps_the_latest_instants_in_ascending_order(
    recent: list[datetime], new: datetime, keep: int
) -> None:
    kept = remember(recent, new, keep)
    assert kept == (sorted([*recent, new])[-keep:] if keep else [])
    assert kept == sorted(kept)
    assert len(kept) == min(keep, len(recent) + 1)


def test_remember_converts_to_utc_and_rejects_naive_instants() -> None:
    paris = datetime(2026, 1, 1, 12, tzinfo=ZoneInfo("Europe/Paris"))
    assert remember([], paris, 1)[0].tzinfo is UTC
    with pytest.raises(ValueError, match="naive"):
        remember([], datetime(2026, 1, 1), 1)
    with pytest.raises(ValueError, match="negative"):
        remember([], paris, -1)


# --- interval and grace --------------------------------------------------------------------


@examples
@given(instants, st.integers(1, MAX_SECONDS), st.integers(0, MAX_SECONDS))
def test_interval_next_due_is_last_plus_period_plus_grace(
    last: datetime, period: int, grace: int
) -> None:
    e = IntervalExpectation(period)
    assert expected_at(e, last=last, recent=[last]) - last == timedelta(seconds=period)
    assert next_due(e, grace=grace, last=last, recent=[last]) - last == timedelta(
        seconds=period + grace
    )


@examples
@given(expectations_strategy, instants, st.integers(0, MAX_SECONDS))
def test_grace_is_added_exactly_to_every_kind_of_deadline(
    e: Expectation, last: datetime, grace: int
) -> None:
    expected = expected_at(e, last=last, recent=[last])
    due = next_due(e, grace=grace, last=last, recent=[last])
    assert due - expected == timedelta(seconds=grace)


def test_deadlines_reject_naive_instants_and_bad_grace() -> None:
    e = IntervalExpectation(60)
    with pytest.raises(ValueError, match="naive"):
        expected_at(e, last=datetime(2026, 1, 1), recent=[])
    with pytest.raises(ValidationError, match="grace"):
        next_due(e, grace=-1, last=at("2026-01-01T00:00:00Z"), recent=[])


def test_deadlines_come_back_in_utc_whatever_zone_last_is_in() -> None:
    last = datetime(2026, 6, 1, 12, tzinfo=ZoneInfo("America/New_York"))
    for e in (IntervalExpectation(60), CronExpectation("0 3 * * *", "Europe/Paris")):
        assert expected_at(e, last=last, recent=[last]).tzinfo is UTC
    assert expected_at(IntervalExpectation(60), last=last, recent=[]) == at("2026-06-01T16:01:00Z")


# --- quorum --------------------------------------------------------------------------------


def test_quorum_deadline_is_when_the_oldest_needed_heartbeat_leaves_the_window() -> None:
    e = QuorumExpectation(min_count=3, window=3600)
    beats = [at("2026-01-01T10:00:00Z"), at("2026-01-01T10:20:00Z"), at("2026-01-01T10:40:00Z")]
    assert expected_at(e, last=beats[-1], recent=beats) == at("2026-01-01T11:00:00Z")
    # A fourth heartbeat pushes the deadline to one window after the second.
    beats.append(at("2026-01-01T10:50:00Z"))
    recent = remember(beats[:3], beats[3], quorum_memory(e))
    assert expected_at(e, last=beats[3], recent=recent) == at("2026-01-01T11:20:00Z")


def test_quorum_with_too_few_heartbeats_allows_one_window_from_the_first() -> None:
    e = QuorumExpectation(min_count=3, window=3600)
    beats = [at("2026-01-01T10:00:00Z"), at("2026-01-01T10:30:00Z")]
    assert expected_at(e, last=beats[-1], recent=beats) == at("2026-01-01T11:00:00Z")
    # No memory yet (e.g. the service just switched to quorum): start from the last heartbeat.
    assert expected_at(e, last=beats[-1], recent=[]) == at("2026-01-01T11:30:00Z")


def test_quorum_counts_last_once_even_when_recent_is_stale_or_unsorted() -> None:
    e = QuorumExpectation(min_count=2, window=60)
    a, b = at("2026-01-01T10:00:00Z"), at("2026-01-01T10:00:30Z")
    # Remembered list missing the latest heartbeat (e.g. written before a switch to quorum).
    assert expected_at(e, last=b, recent=[a]) == a + timedelta(seconds=60)
    # Out of order, and already holding last: last is not counted twice.
    assert expected_at(e, last=b, recent=[b, a]) == a + timedelta(seconds=60)
    assert expected_at(e, last=b, recent=[b]) == b + timedelta(seconds=60)


def _in_window(history: list[datetime], t: datetime, window: int) -> int:
    """Heartbeats received by ``t`` within the sliding window ``(t - window, t]``."""
    return sum(1 for r in history if t - timedelta(seconds=window) < r <= t)


@examples
@given(
    min_count=st.integers(1, 6),
    window=st.integers(1, 7200),
    start=instants,
    gaps=st.lists(st.integers(0, 4000), min_size=0, max_size=12),
    probes=st.lists(st.integers(0, 15_000), max_size=5),
)
def test_quorum_deadline_is_exactly_when_the_window_count_drops_below_min_count(
    min_count: int, window: int, start: datetime, gaps: list[int], probes: list[int]
) -> None:
    """Fed heartbeats one by one through ``remember``, the deadline d satisfies: for every
    instant t from the last heartbeat on (no more heartbeats arriving), the full history has
    at least min_count heartbeats in (t - window, t] exactly when t < d."""
    e = QuorumExpectation(min_count, window)
    history = [start]
    for gap in gaps:
        history.append(history[-1] + timedelta(seconds=gap))
    recent: list[datetime] = []
    for beat in history:
        recent = remember(recent, beat, quorum_memory(e))
    last = history[-1]
    deadline = expected_at(e, last=last, recent=recent)

    if len(history) < min_count:
        assert deadline == history[0] + timedelta(seconds=window)
        return
    candidates = [last, deadline - MICROSECOND, deadline, deadline + MICROSECOND]
    candidates += [last + timedelta(seconds=p) for p in probes]
    for t in (c for c in candidates if c >= last):
        assert (_in_window(history, t, window) >= min_count) == (t < deadline), t
    if deadline > last:
        assert _in_window(history, deadline - MICROSECOND, window) >= min_count
        assert _in_window(history, deadline, window) < min_count


# --- cron: examples of the DST behaviour ---------------------------------------------------


def test_cron_never_returns_a_fire_time_equal_to_last() -> None:
    last = at("2026-01-05T03:00:00Z")
    assert cron_after("0 3 * * *", "UTC", last) == at("2026-01-06T03:00:00Z")
    assert cron_after("0 3 * * *", "UTC", last - MICROSECOND) == last
    assert cron_after("*/15 * * * *", "UTC", last) == at("2026-01-05T03:15:00Z")


def test_cron_wall_time_job_skipped_by_spring_forward_runs_when_the_clock_jumps() -> None:
    # London, 2024-03-31: 01:00 GMT jumps to 02:00 BST; 01:30 never happens.
    last = local("Europe/London", 2024, 3, 31, 0, 50)
    assert cron_after("30 1 * * *", "Europe/London", last) == local(
        "Europe/London", 2024, 3, 31, 2, 0
    )
    # New York, 2024-03-10: 02:00 EST jumps to 03:00 EDT.
    last = local("America/New_York", 2024, 3, 9, 12, 0)
    assert cron_after("30 2 * * *", "America/New_York", last) == at("2024-03-10T07:00:00Z")


def test_cron_wall_time_job_in_a_repeated_hour_runs_once_on_the_first_pass() -> None:
    # London, 2024-10-27: 01:00-01:59 happens twice (BST, then GMT).
    first_pass = local("Europe/London", 2024, 10, 27, 1, 30, fold=0)
    assert cron_after("30 1 * * *", "Europe/London", first_pass - MINUTE) == first_pass
    # From inside the second pass, the next run is tomorrow -- not 00:30 UTC, which is in the
    # past (cronsim alone returns that).
    second_pass_0115 = local("Europe/London", 2024, 10, 27, 1, 15, fold=1)
    assert cron_after("30 1 * * *", "Europe/London", second_pass_0115) == local(
        "Europe/London", 2024, 10, 28, 1, 30
    )


def test_cron_wildcard_job_runs_in_both_passes_of_a_repeated_hour() -> None:
    zone = "Europe/London"
    fires = [local(zone, 2024, 10, 27, 0, 50)]
    for _ in range(5):
        fires.append(cron_after("*/30 * * * *", zone, fires[-1]))
    assert fires[1:] == [
        at("2024-10-27T01:00:00+01:00"),
        at("2024-10-27T01:30:00+01:00"),
        at("2024-10-27T01:00:00+00:00"),
        at("2024-10-27T01:30:00+00:00"),
        at("2024-10-27T02:00:00+00:00"),
    ]


def test_cron_wildcard_minute_job_is_not_skipped_after_lord_howe_half_hour_gap() -> None:
    # Lord Howe, 2024-10-06: 02:00 (+10:30) jumps to 02:30 (+11:00). cronsim's own zone handling
    # returns 03:30 here, skipping 03:00-03:25.
    zone = "Australia/Lord_Howe"
    last = local(zone, 2024, 10, 6, 1, 40)
    assert cron_after("*/5 3 * * *", zone, last) == at("2024-10-06T03:00:00+11:00")


def test_cron_hour_after_chatham_gap_is_not_skipped() -> None:
    # Chatham, 2024-09-29: 02:45 (+12:45) jumps to 03:45 (+13:45). cronsim's own zone handling
    # returns 04:00 the next day here.
    zone = "Pacific/Chatham"
    last = at("2024-09-29T03:50:00+13:45")
    assert cron_after("*/5 4 * * *", zone, last) == at("2024-09-29T04:00:00+13:45")
    # Hourly: 03:00 does not exist that night; 02:00 is followed by 04:00.
    assert cron_after("0 * * * *", zone, at("2024-09-29T02:00:00+12:45")) == at(
        "2024-09-29T04:00:00+13:45"
    )
    # The jump lands on :45, which a quarter-hourly job matches.
    assert cron_after("*/15 * * * *", zone, at("2024-09-29T02:30:00+12:45")) == at(
        "2024-09-29T03:45:00+13:45"
    )


def test_cron_far_apart_fire_times_are_found_across_many_dst_changes() -> None:
    # The next 29 February after 2097 is in 2104 (2100 is not a leap year).
    last = at("2097-03-01T00:00:00Z")
    assert cron_after("* * 29 2 *", "Europe/London", last) == at("2104-02-29T00:00:00Z")
    assert cron_after("0 12 29 2 *", "America/New_York", last) == at("2104-02-29T17:00:00Z")


# --- cron: properties against brute force --------------------------------------------------


@examples
@given(
    zone_and_instant(),
    st.sampled_from([0, 1, 15, 30, 45, 59]),
    st.sampled_from([0, 1, 2, 3, 23]),
)
def test_cron_wall_time_job_matches_minute_by_minute_scan_across_dst(
    zone_last: tuple[str, datetime], minute: int, hour: int
) -> None:
    """For ``M H * * *`` the deadline is strictly after last, is a time the wall clock
    reaches H:M (or first passes it, when a gap skips H:M), and no such time lies between."""
    zone, last = zone_last
    got = cron_after(f"{minute} {hour} * * *", zone, last)
    first_fire_after_last = brute_force_wall_time_fire(minute, hour, zone, last)
    assert got > last
    assert got == first_fire_after_last
    local_wall = wall(got, zone)
    target = datetime.combine(local_wall.date(), time(hour, minute))
    if local_wall != target:  # moved by a gap: the clock jumped over the target here
        assert wall(got - MINUTE, zone) < target < local_wall


WILDCARD_CASES = [
    ("*/15 * * * *", range(0, 60, 15), range(24)),
    ("*/5 3 * * *", range(0, 60, 5), [3]),
    ("*/5 4 * * *", range(0, 60, 5), [4]),
    ("*/10 2 * * *", range(0, 60, 10), [2]),
    ("* 2 * * *", range(60), [2]),
    ("0 * * * *", [0], range(24)),
    ("30 * * * *", [30], range(24)),
    ("45 */2 * * *", [45], range(0, 24, 2)),
]


@examples
@given(zone_and_instant(), st.sampled_from(WILDCARD_CASES))
def test_cron_wildcard_job_matches_minute_by_minute_scan_across_dst(
    zone_last: tuple[str, datetime], case: tuple[str, Iterable[int], Iterable[int]]
) -> None:
    """For wildcard expressions the deadline is the first real instant after last whose
    local wall clock matches the minute and hour fields: strictly after last, a real match,
    and no match in between."""
    zone, last = zone_last
    expression, minutes, hours = case
    got = cron_after(expression, zone, last)
    assert got > last
    assert got == brute_force_wildcard_fire(minutes, hours, zone, last)
    assert wall(got, zone).minute in minutes
    assert wall(got, zone).hour in hours


def _cronsim_next_after(expression: str, zone: str, last: datetime) -> datetime:
    for fire in CronSim(expression, last.astimezone(ZoneInfo(zone))):
        instant = fire.astimezone(UTC)
        if instant > last:
            return instant
    raise AssertionError("cronsim found no fire time")


@examples
@given(zone_and_instant(NO_DST_ZONES), simple_cron)
def test_cron_agrees_with_cronsim_where_there_is_no_dst(
    zone_last: tuple[str, datetime], expression: str
) -> None:
    zone, last = zone_last
    e = _valid_cron(expression, zone)
    assert expected_at(e, last=last, recent=[]) == _cronsim_next_after(expression, zone, last)


@examples
@given(zone_and_instant(), simple_cron)
def test_cron_wall_time_jobs_agree_with_cronsim_once_past_fire_times_are_dropped(
    zone_last: tuple[str, datetime], expression: str
) -> None:
    """cronsim's DST handling for wall-time jobs is right apart from sometimes returning a
    fire time before its start; ours must equal its first fire time after last."""
    zone, last = zone_last
    minute, hour = expression.split()[:2]
    assume(not minute.startswith("*") and not hour.startswith("*"))
    e = _valid_cron(expression, zone)
    assert expected_at(e, last=last, recent=[]) == _cronsim_next_after(expression, zone, last)


@few_examples
@given(zone_and_instant(), simple_cron)
def test_cron_successive_deadlines_strictly_increase(
    zone_last: tuple[str, datetime], expression: str
) -> None:
    zone, last = zone_last
    e = _valid_cron(expression, zone)
    for _ in range(5):
        following = expected_at(e, last=last, recent=[])
        assert following > last
        assert following.tzinfo is UTC
        last = following
