"""Time, injected.

Every component that needs "now" takes a ``Clock``; production passes ``SystemClock`` and tests
pass ``FakeClock``, so schedule and monitor logic is tested without sleeping. All instants are
timezone-aware UTC ``datetime`` objects.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Protocol


class Clock(Protocol):
    def now(self) -> datetime:
        """The current instant, timezone-aware, in UTC."""
        ...


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)


class FakeClock:
    """A clock that only moves when told to."""

    def __init__(self, start: datetime | None = None) -> None:
        self._now = start or datetime(2026, 1, 1, tzinfo=UTC)

    def now(self) -> datetime:
        return self._now

    def advance(self, seconds: float) -> datetime:
        self._now += timedelta(seconds=seconds)
        return self._now

    def set(self, instant: datetime) -> None:
        self._now = instant


def to_utc(value: datetime) -> datetime:
    """Normalise an aware datetime to UTC; reject naive ones (they are ambiguous)."""
    if value.tzinfo is None:
        raise ValueError("naive datetime: Medic stores only timezone-aware UTC instants")
    return value.astimezone(UTC)


def isoformat(value: datetime | None) -> str | None:
    """ISO 8601 with a ``Z`` suffix, as on the wire."""
    if value is None:
        return None
    return to_utc(value).isoformat().replace("+00:00", "Z")
