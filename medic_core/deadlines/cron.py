"""Cron fire times in an IANA time zone, correct across daylight-saving changes.

``cronsim`` parses cron expressions and walks the calendar; this module decides which UTC
instants those wall-clock times are. We only ever hand cronsim *naive* wall-clock datetimes,
where its arithmetic is plain calendar arithmetic, and map wall time to instants ourselves,
because cronsim's own time-zone-aware mode gets DST changes wrong in two ways:

* When an expression has a wildcard minute or hour (``*/5 3 * * *``) it rounds down to the top
  of the hour with ``datetime.replace``; if that wall time lies in a gap that ends mid-hour
  (Australia/Lord_Howe springs 02:00 -> 02:30, Pacific/Chatham 02:45 -> 03:45) the rounded
  time is read with the pre-gap offset and the walk skips fire times -- in Chatham
  ``*/5 4 * * *`` from 03:50 misses all of 04:00-04:55 and returns the next day.
* For wall-time jobs (``30 1 * * *``) it returns the *first* occurrence of an ambiguous wall
  time even when the start was in the second one, i.e. a fire time before the start.

The semantics we keep are Debian cron's, which cronsim also aims for:

* **Wall-time jobs** -- 5-field expressions whose minute and hour fields do not start with
  ``*``. They run once per matching wall-clock time: a time repeated by a backward change runs
  at its first occurrence only; a time skipped by a forward change runs at the first instant
  after the gap.
* **Wildcard jobs** -- everything else. They run at every real instant whose local wall clock
  matches the fields: twice in a repeated hour, never inside a gap.

Only 5-field expressions are accepted (no seconds field, no ``@daily`` macros): that is what
people write in crontabs, and it keeps every fire time on a whole minute.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo, available_timezones

from cronsim import CronSim, CronSimError

from medic_core.clock import to_utc
from medic_core.errors import ValidationError
from medic_core.validation import quote

MAX_EXPRESSION_LENGTH = 200
MAX_ZONE_NAME_LENGTH = 64
CRON_FIELDS = ("minute", "hour", "day-of-month", "month", "day-of-week")
_FIELD_HELP = (
    ("minute", "0-59"),
    ("hour", "0-23"),
    ("day-of-month", "1-31, L or LW"),
    ("month", "1-12 or JAN-DEC"),
    ("day-of-week", "0-7 or SUN-SAT, with optional L or #n"),
)

# Offsets are probed this far apart when looking for a DST change. A change could only hide
# between two probes if the offset changed and changed back within the step; since 1970 no
# zone has changed its offset twice within a week, so a day leaves a wide margin.
_PROBE_STEP = timedelta(days=1)
# Time-zone gaps are at most a day long (Pacific/Apia skipped 2011-12-30); bound the walk out of
# one so corrupt zone data cannot spin forever.
_MAX_GAP_MINUTES = 2 * 24 * 60
# The "does it ever fire" check starts here; any fixed instant works, the calendar repeats.
_NEVER_FIRES_PROBE_START = datetime(2000, 1, 1)


def load_zone(name: object, *, field: str) -> ZoneInfo:
    """The IANA time zone called ``name``, or a ValidationError naming ``field``."""
    if not isinstance(name, str) or not name:
        raise ValidationError(
            f"{field} must be an IANA time zone name such as 'Europe/Paris' or 'UTC'",
            field=field,
        )
    zone = _find_zone(name) if len(name) <= MAX_ZONE_NAME_LENGTH else None
    if zone is not None:
        return zone
    example = _closest_zone(name) or "Europe/Paris"
    raise ValidationError(
        f"unknown time zone {quote(name)}: use an IANA name such as {quote(example)}", field=field
    )


def _find_zone(name: str) -> ZoneInfo | None:
    try:
        return ZoneInfo(name)
    except (ValueError, OSError, LookupError):
        # ZoneInfoNotFoundError is a KeyError; path-like or malformed keys raise ValueError;
        # directory names such as 'America' raise IsADirectoryError.
        return None


def _closest_zone(name: str) -> str | None:
    # Only on the error path: listing the zone database reads the disk.
    matches = difflib.get_close_matches(name, sorted(available_timezones()), n=1, cutoff=0.8)
    return matches[0] if matches else None


def validate_cron(expression: object, *, field: str) -> str:
    """Check a 5-field cron expression; return it with whitespace normalised to single spaces."""
    if not isinstance(expression, str):
        raise ValidationError(
            f"{field} must be a cron expression string such as '0 3 * * *'", field=field
        )
    if len(expression) > MAX_EXPRESSION_LENGTH:
        raise ValidationError(
            f"cron expression is too long ({len(expression)} characters, at most "
            f"{MAX_EXPRESSION_LENGTH})",
            field=field,
        )
    parts = expression.split()
    normalised = " ".join(parts)
    if len(parts) != len(CRON_FIELDS):
        raise ValidationError(
            f"cron expression {quote(normalised)} is invalid: it needs 5 fields "
            f"({' '.join(CRON_FIELDS)}), got {len(parts)}",
            field=field,
        )
    try:
        # A naive start keeps cronsim in plain calendar arithmetic; see the module docstring.
        first = next(CronSim(normalised, _NEVER_FIRES_PROBE_START), None)
    except CronSimError as error:
        raise ValidationError(_explain_cron_error(normalised, parts, error), field=field) from None
    if first is None:
        # cronsim gives up after 50 years without a match.
        raise ValidationError(
            f"cron expression {quote(normalised)} never fires: no date matches its day and "
            "month fields",
            field=field,
        )
    return normalised


def _explain_cron_error(expression: str, parts: list[str], error: CronSimError) -> str:
    reason = str(error)
    if reason == "Bad day-of-month":
        # cronsim reports "the 30th of February" as a bad day-of-month even though each field
        # is fine on its own; say what is really wrong.
        with_any_month = " ".join([*parts[:3], "*", parts[4]])
        try:
            CronSim(with_any_month, _NEVER_FIRES_PROBE_START)
        except CronSimError:
            pass
        else:
            return (
                f"cron expression {quote(expression)} never fires: day-of-month {quote(parts[2])} "
                f"does not exist in month {quote(parts[3])}"
            )
    for name, allowed in _FIELD_HELP:
        if reason == f"Bad {name}":
            return (
                f"cron expression {quote(expression)} is invalid: bad {name} field "
                f"(use {allowed}, '*', lists a,b, ranges a-b and steps */n)"
            )
    return f"cron expression {quote(expression)} is invalid: {reason}"


def is_wall_time_job(expression: str) -> bool:
    """True when the expression pins minute and hour (Debian cron's once-per-wall-time rule).

    Mirrors the test cronsim itself uses to pick its DST handling, so both agree on which
    expressions are "run at 01:30 local" and which are "run every so often".
    """
    minute, hour = expression.split()[:2]
    return not minute.startswith("*") and not hour.startswith("*")


def fire_times(expression: str, zone: ZoneInfo, after: datetime) -> Iterator[datetime]:
    """Fire times strictly after ``after``, ascending, as aware UTC datetimes.

    ``expression`` must have passed :func:`validate_cron`. The iterator ends only if cronsim
    finds no fire time within 50 years, which validated expressions never do.
    """
    after = to_utc(after)
    if is_wall_time_job(expression):
        return _wall_time_fires(expression, zone, after)
    return _wildcard_fires(expression, zone, after)


def next_fire(expression: str, zone: ZoneInfo, after: datetime) -> datetime:
    """The first fire time strictly after ``after``."""
    instant = next(fire_times(expression, zone, after), None)
    if instant is None:
        raise ValueError(f"cron expression {quote(expression)} has no fire time after {after}")
    return instant


def _wall_time_fires(expression: str, zone: ZoneInfo, after: datetime) -> Iterator[datetime]:
    # Wall time -> instant (first occurrence, or the end of a gap) never decreases as wall time
    # grows, so walking wall times from after's wall clock and dropping instants <= the previous
    # one yields exactly the instants in order. Drops happen when `after` sits in the second pass
    # of a repeated hour, and when several wall times fall in one gap (they run once, together).
    previous = after
    for wall in CronSim(expression, _wall_clock(after, zone)):
        instant = _first_instant_at_or_after(wall, zone)
        if instant > previous:
            previous = instant
            yield instant


def _wildcard_fires(expression: str, zone: ZoneInfo, after: datetime) -> Iterator[datetime]:
    # Between two offset changes wall time is UTC plus a constant, so cronsim on naive wall
    # times is exact there. A candidate beyond the next offset change is discarded and the walk
    # restarts at the change with the new offset -- including the change instant itself.
    segment_start = after
    offset = _utc_offset(zone, after)
    include_start = False
    while True:
        wall = (segment_start + offset).replace(tzinfo=None)
        if include_start:
            # cronsim returns times strictly after its start (whole seconds).
            wall -= timedelta(microseconds=1)
        previous = segment_start
        for fire_wall in CronSim(expression, wall):
            candidate = (fire_wall - offset).replace(tzinfo=UTC)
            change = _first_offset_change(zone, previous, candidate, offset)
            if change is not None:
                segment_start, offset, include_start = change, _utc_offset(zone, change), True
                break
            yield candidate
            previous = candidate
        else:
            return


def _first_offset_change(
    zone: ZoneInfo, start: datetime, end: datetime, offset: timedelta
) -> datetime | None:
    """The first instant in (start, end] whose UTC offset is not ``offset``, or None.

    ``offset`` is the offset at ``start``.
    """
    low = start
    while low < end:
        high = min(low + _PROBE_STEP, end)
        if _utc_offset(zone, high) != offset:
            # Offsets change on whole seconds; narrowing to a microsecond lands on the change.
            while high - low > timedelta(microseconds=1):
                middle = low + (high - low) / 2
                if _utc_offset(zone, middle) != offset:
                    high = middle
                else:
                    low = middle
            return high
        low = high
    return None


def _first_instant_at_or_after(wall: datetime, zone: ZoneInfo) -> datetime:
    """The instant a wall-time job due at naive ``wall`` runs.

    An ambiguous wall time runs at its first occurrence (fold=0). A wall time skipped by a
    forward change moves forward minute by minute to the first real one, as cron does.
    """
    candidate = wall
    for _ in range(_MAX_GAP_MINUTES):
        instant = candidate.replace(tzinfo=zone).astimezone(UTC)
        if _wall_clock(instant, zone) == candidate:
            return instant
        candidate += timedelta(minutes=1)
    raise ValueError(f"{wall} in {zone.key} is inside a time-zone gap longer than two days")


def _wall_clock(instant: datetime, zone: ZoneInfo) -> datetime:
    return instant.astimezone(zone).replace(tzinfo=None, fold=0)


def _utc_offset(zone: ZoneInfo, instant: datetime) -> timedelta:
    offset = instant.astimezone(zone).utcoffset()
    if offset is None:  # pragma: no cover - ZoneInfo always knows its offset
        raise ValueError(f"time zone {zone.key} has no UTC offset at {instant}")
    return offset
