"""When a maintenance window is open.

A schedule is either one window ``[starts_at, ends_at)`` or, with a ``recurrence``, a series of
occurrences: every fire time ``f`` of the cron expression (evaluated in ``timezone``, DST
included, see ``medic_core.deadlines.cron``) with ``starts_at <= f < ends_at`` opens an
occurrence ``[f, f + duration)``, clipped to ``ends_at``.

The two questions the alert pipeline asks are "is this instant inside a window, and until
when?" (``occurrence_at``) and "when does that answer next change?" (``next_change``, so a
background loop can sleep until then). Both look only at the few fire times near the instant
asked about, so a recurrence running for years costs the same as one that started yesterday.

``parse_maintenance_schedule`` rejects recurrences whose occurrences would touch or overlap
(``duration`` not shorter than the gap between two fire times) -- that is a single long window
and should be written as one. The functions still give the union's answer if such a schedule
is built directly: touching or overlapping occurrences count as one window.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from itertools import islice, pairwise, takewhile
from zoneinfo import ZoneInfo

from medic_core.clock import isoformat, to_utc
from medic_core.deadlines.cron import fire_times, load_zone, validate_cron
from medic_core.deadlines.expectations import MAX_SECONDS, check_whole_number
from medic_core.errors import ValidationError
from medic_core.validation import instant, quote

# fire_times() is strictly-after; searching from one microsecond earlier makes it inclusive.
_JUST_BEFORE = timedelta(microseconds=1)
# How many occurrences parse_maintenance_schedule inspects for overlaps. Enough to cover a few
# years of daily or weekly recurrences (and so their DST changes) while keeping parsing fast.
_OVERLAP_CHECK_FIRES = 1000


@dataclass(frozen=True, slots=True)
class MaintenanceSchedule:
    """A one-off window, or a cron recurrence of ``duration``-second occurrences within it."""

    starts_at: datetime
    ends_at: datetime
    timezone: str = "UTC"
    recurrence: str | None = None
    duration: int | None = None

    def __post_init__(self) -> None:
        # Naive datetimes raise ValueError here: a programming error, not user input.
        object.__setattr__(self, "starts_at", to_utc(self.starts_at))
        object.__setattr__(self, "ends_at", to_utc(self.ends_at))
        if self.ends_at <= self.starts_at:
            raise ValidationError(
                f"ends_at ({isoformat(self.ends_at)}) must be after starts_at "
                f"({isoformat(self.starts_at)})",
                field="ends_at",
            )
        load_zone(self.timezone, field="timezone")
        if self.recurrence is None:
            if self.duration is not None:
                raise ValidationError(
                    "duration only applies to a recurring window: set recurrence, or drop "
                    "duration for a single window from starts_at to ends_at",
                    field="duration",
                )
            return
        object.__setattr__(self, "recurrence", validate_cron(self.recurrence, field="recurrence"))
        if self.duration is None:
            raise ValidationError(
                "duration is required with recurrence: how many seconds each occurrence lasts",
                field="duration",
            )
        check_whole_number(self.duration, field="duration", minimum=1, maximum=MAX_SECONDS)


def parse_maintenance_schedule(
    starts_at: object,
    ends_at: object,
    timezone: object,
    recurrence: object,
    duration: object,
) -> MaintenanceSchedule:
    """Build a schedule from wire values (ISO 8601 strings or aware datetimes).

    ``timezone`` None means UTC; ``recurrence`` None means a single window. Problems raise
    ValidationError naming the field.
    """
    if isinstance(recurrence, str) and not recurrence.strip():
        raise ValidationError(
            "recurrence must be a cron expression such as '0 2 * * SUN', or null for a "
            "single window",
            field="recurrence",
        )
    schedule = MaintenanceSchedule(
        starts_at=instant(starts_at, field="starts_at"),
        ends_at=instant(ends_at, field="ends_at"),
        timezone=load_zone("UTC" if timezone is None else timezone, field="timezone").key,
        recurrence=None if recurrence is None else validate_cron(recurrence, field="recurrence"),
        duration=None
        if duration is None
        else check_whole_number(duration, field="duration", minimum=1, maximum=MAX_SECONDS),
    )
    if schedule.recurrence is not None and schedule.duration is not None:
        _check_occurrences(schedule, schedule.recurrence, schedule.duration)
    return schedule


def occurrence_at(s: MaintenanceSchedule, at: datetime) -> tuple[datetime, datetime] | None:
    """The window containing ``at`` as ``(start, end)`` with ``start <= at < end``, or None.

    ``start`` is the occurrence's start; ``end`` is where the window closes (the occurrence's
    end, or a later one if following occurrences touch or overlap it), so ``end`` is always
    ``next_change(s, at)``.
    """
    at = to_utc(at)
    if not s.starts_at <= at < s.ends_at:
        return None
    if s.recurrence is None or s.duration is None:
        return s.starts_at, s.ends_at
    duration = timedelta(seconds=s.duration)
    # Only an occurrence that started within the last `duration` can still be running.
    fires = fire_times(
        s.recurrence, ZoneInfo(s.timezone), max(s.starts_at, at - duration) - _JUST_BEFORE
    )
    for start in fires:
        if start > at:
            return None
        end = min(start + duration, s.ends_at)
        if end > at:
            return start, _window_end(fires, end, duration, s.ends_at)
    return None


def next_change(s: MaintenanceSchedule, after: datetime) -> datetime | None:
    """The first instant after ``after`` where being inside a window flips, or None."""
    after = to_utc(after)
    if s.recurrence is None:
        if after < s.starts_at:
            return s.starts_at
        if after < s.ends_at:
            return s.ends_at
        return None
    current = occurrence_at(s, after)
    if current is not None:
        return current[1]
    # Outside a window: the answer is the next occurrence's start. Occurrences that began at
    # or before `after` have already ended, so none can end in between.
    start = next(
        fire_times(s.recurrence, ZoneInfo(s.timezone), max(after, s.starts_at - _JUST_BEFORE)),
        None,
    )
    if start is None or start >= s.ends_at:
        return None
    return start


def _window_end(
    fires: Iterator[datetime], end: datetime, duration: timedelta, ends_at: datetime
) -> datetime:
    for start in fires:
        if start > end or start >= ends_at:
            break
        end = max(end, min(start + duration, ends_at))
    return end


def _check_occurrences(s: MaintenanceSchedule, recurrence: str, duration_seconds: int) -> None:
    fires = fire_times(recurrence, ZoneInfo(s.timezone), s.starts_at - _JUST_BEFORE)
    first = next(fires, None)
    if first is None or first >= s.ends_at:
        raise ValidationError(
            f"recurrence {quote(recurrence)} never fires between starts_at "
            f"({isoformat(s.starts_at)}) and ends_at ({isoformat(s.ends_at)}) in {s.timezone}",
            field="recurrence",
        )
    duration = timedelta(seconds=duration_seconds)
    within = takewhile(lambda f: f < s.ends_at, fires)
    starts = [first, *islice(within, _OVERLAP_CHECK_FIRES - 1)]
    for earlier, later in pairwise(starts):
        if later - earlier <= duration:
            gap = int((later - earlier).total_seconds())
            raise ValidationError(
                f"duration {duration_seconds} s must be shorter than the {gap} s between the "
                f"occurrences starting at {isoformat(earlier)} and {isoformat(later)}: "
                "occurrences must not touch or overlap (for one continuous window, drop "
                "recurrence and duration)",
                field="duration",
            )
