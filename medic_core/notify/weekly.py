"""Weekly schedules: the working hours a notification target's period refers to.

A schedule is a list of ranges in local wall-clock time of an IANA zone::

    [{"days": ["mon", "tue", "wed", "thu", "fri"], "start": "09:00", "end": "17:30"}]

``end`` is exclusive. An ``end`` at or before ``start`` runs past midnight into the next day
(``{"days": ["fri"], "start": "22:00", "end": "06:00"}`` covers Friday 22:00 to Saturday 06:00;
``start == end`` is a whole day from ``start``). ``"24:00"`` may end a range. Wall-clock time is
what people mean by working hours, so a range keeps its local hours across DST changes; an hour
skipped by a spring-forward change simply does not occur that day.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from medic_core.errors import ValidationError

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_TIME = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)$|^24:00$")
MAX_RANGES = 50


@dataclass(frozen=True, slots=True)
class WeeklyRange:
    days: frozenset[int]  # 0 = Monday
    start: int  # minutes after local midnight
    end: int  # exclusive; <= start: runs into the next day

    def covers(self, weekday: int, minute: int) -> bool:
        if self.start < self.end:
            return weekday in self.days and self.start <= minute < self.end
        # Past midnight: the evening part on the listed day, the morning part on the day after.
        if weekday in self.days and minute >= self.start:
            return True
        return (weekday - 1) % 7 in self.days and minute < self.end


def parse_weekly(value: object, field: str = "weekly") -> list[WeeklyRange]:
    """Validate the wire form; raise ``ValidationError`` naming the bad part."""
    if not isinstance(value, list) or not value or len(value) > MAX_RANGES:
        raise ValidationError(
            f"{field} must be a list of 1 to {MAX_RANGES} ranges such as "
            '{"days": ["mon", "fri"], "start": "09:00", "end": "17:00"}',
            field=field,
        )
    ranges = []
    for index, item in enumerate(value):
        where = f"{field}[{index}]"
        if not isinstance(item, dict) or set(item) != {"days", "start", "end"}:
            raise ValidationError(
                f"{where} must be an object with exactly days, start and end", field=where
            )
        days = item["days"]
        if not isinstance(days, list) or not days or any(d not in DAYS for d in days):
            raise ValidationError(
                f"{where}.days must be a non-empty list of {', '.join(DAYS)}", field=f"{where}.days"
            )
        start = _minutes(item["start"], f"{where}.start")
        end = _minutes(item["end"], f"{where}.end")
        if start == 24 * 60:
            raise ValidationError(f"{where}.start cannot be 24:00", field=f"{where}.start")
        ranges.append(WeeklyRange(frozenset(DAYS.index(d) for d in days), start, end))
    return ranges


def _minutes(value: object, field: str) -> int:
    match = _TIME.fullmatch(value) if isinstance(value, str) else None
    if match is None:
        raise ValidationError(f"{field} must be a time HH:MM (00:00 to 24:00)", field=field)
    assert isinstance(value, str)
    hours, minutes = value.split(":")
    return int(hours) * 60 + int(minutes)


def within(ranges: list[WeeklyRange], zone: ZoneInfo, at: datetime) -> bool:
    """Whether the aware instant ``at`` falls inside the schedule."""
    local = at.astimezone(zone)
    minute = local.hour * 60 + local.minute
    return any(r.covers(local.weekday(), minute) for r in ranges)


def describe(ranges: list[WeeklyRange]) -> list[dict[str, Any]]:
    """The canonical wire form (days in week order)."""
    return [
        {
            "days": [DAYS[d] for d in sorted(r.days)],
            "start": f"{r.start // 60:02d}:{r.start % 60:02d}",
            "end": f"{r.end // 60:02d}:{r.end % 60:02d}",
        }
        for r in ranges
    ]
