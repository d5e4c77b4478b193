"""What a service promises about its heartbeats, and when the next one is due.

An expectation is one of three small immutable values -- ``interval``, ``cron`` or ``quorum``
-- and everything the monitor needs from it is a pure function of the expectation and the
heartbeat history: ``next_due`` is the instant the service becomes down unless a heartbeat
arrives, stored and indexed by the caller (the Healthchecks "alert after" column).

Quorum needs more history than "the last heartbeat": the caller keeps the ``quorum_memory(e)``
latest heartbeat instants (``remember`` maintains that list) and passes them back in. Every
other kind needs only ``last``.

Values validate themselves on construction, so an ``Expectation`` that exists is a valid one;
``parse_expectation`` adds the checks only the wire form needs (shape, kind, unknown keys).
Errors are ``ValidationError`` with ``field="expectation.<name>"`` and a message that says what
to send instead.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, ClassVar, TypeAlias, assert_never
from zoneinfo import ZoneInfo

from medic_core.clock import to_utc
from medic_core.deadlines.cron import load_zone, next_fire, validate_cron
from medic_core.errors import ValidationError

MAX_SECONDS = 31_536_000  # 365 days
MAX_MIN_COUNT = 1000
KINDS = ("interval", "cron", "quorum")

# (field, what to put in it) for the "is required" messages.
_PERIOD = ("period", f"the most seconds allowed between heartbeats, 1 to {MAX_SECONDS}")
_EXPRESSION = ("expression", "a 5-field cron expression such as '0 3 * * *'")
_MIN_COUNT = ("min_count", f"how many heartbeats each window needs, 1 to {MAX_MIN_COUNT}")
_WINDOW = ("window", f"the length of the sliding window in seconds, 1 to {MAX_SECONDS}")


@dataclass(frozen=True, slots=True)
class IntervalExpectation:
    """A heartbeat at least every ``period`` seconds."""

    kind: ClassVar[str] = "interval"
    period: int

    def __post_init__(self) -> None:
        check_whole_number(self.period, field="expectation.period", minimum=1, maximum=MAX_SECONDS)


@dataclass(frozen=True, slots=True)
class CronExpectation:
    """A heartbeat after each fire time of a 5-field cron ``expression`` in ``timezone``."""

    kind: ClassVar[str] = "cron"
    expression: str
    timezone: str = "UTC"

    def __post_init__(self) -> None:
        expression = validate_cron(self.expression, field="expectation.expression")
        # Stored normalised so equal schedules compare equal whatever their spacing.
        object.__setattr__(self, "expression", expression)
        load_zone(self.timezone, field="expectation.timezone")


@dataclass(frozen=True, slots=True)
class QuorumExpectation:
    """At least ``min_count`` heartbeats in every sliding ``window`` of seconds."""

    kind: ClassVar[str] = "quorum"
    min_count: int
    window: int

    def __post_init__(self) -> None:
        check_whole_number(
            self.min_count,
            field="expectation.min_count",
            minimum=1,
            maximum=MAX_MIN_COUNT,
            unit="heartbeats",
        )
        check_whole_number(self.window, field="expectation.window", minimum=1, maximum=MAX_SECONDS)


Expectation: TypeAlias = IntervalExpectation | CronExpectation | QuorumExpectation


def parse_expectation(data: Mapping[str, Any]) -> Expectation:
    """Build an expectation from its wire form, e.g. ``{"kind": "interval", "period": 60}``."""
    if not isinstance(data, Mapping):
        raise ValidationError(
            'expectation must be an object such as {"kind": "interval", "period": 60}',
            field="expectation",
        )
    kind = data.get("kind")
    if kind is None:
        raise ValidationError(
            f"expectation.kind is required: use one of {_quoted(KINDS)}",
            field="expectation.kind",
        )
    if kind == "interval":
        _check_keys(data, "interval", required=(_PERIOD,), optional=())
        return IntervalExpectation(period=data["period"])
    if kind == "cron":
        _check_keys(data, "cron", required=(_EXPRESSION,), optional=("timezone",))
        timezone = data.get("timezone")
        return CronExpectation(
            expression=data["expression"], timezone="UTC" if timezone is None else timezone
        )
    if kind == "quorum":
        _check_keys(data, "quorum", required=(_MIN_COUNT, _WINDOW), optional=())
        return QuorumExpectation(min_count=data["min_count"], window=data["window"])
    raise ValidationError(
        f"unknown expectation kind {_short(kind)}: use one of {_quoted(KINDS)}",
        field="expectation.kind",
    )


def expectation_to_dict(e: Expectation) -> dict[str, Any]:
    """The wire form of ``e``; ``parse_expectation`` turns it back into an equal value."""
    if isinstance(e, IntervalExpectation):
        return {"kind": e.kind, "period": e.period}
    if isinstance(e, CronExpectation):
        return {"kind": e.kind, "expression": e.expression, "timezone": e.timezone}
    if isinstance(e, QuorumExpectation):
        return {"kind": e.kind, "min_count": e.min_count, "window": e.window}
    assert_never(e)


def quorum_memory(e: Expectation) -> int:
    """How many of the latest heartbeat instants the caller must remember for ``e``."""
    return e.min_count if isinstance(e, QuorumExpectation) else 0


def remember(recent: Sequence[datetime], at: datetime, keep: int) -> list[datetime]:
    """The ``keep`` latest instants of ``recent`` plus ``at``, ascending, in UTC."""
    if keep < 0:
        raise ValueError(f"keep must not be negative, got {keep}")
    if keep == 0:
        return []
    instants = sorted([*(to_utc(r) for r in recent), to_utc(at)])
    return instants[-keep:]


def expected_at(e: Expectation, *, last: datetime, recent: Sequence[datetime]) -> datetime:
    """The instant the next heartbeat is expected by, before grace.

    ``last`` is the latest heartbeat; ``recent`` the remembered instants, normally ascending
    and ending with ``last`` (only quorum reads them). ``last`` is counted once either way: it
    is added if ``recent`` does not hold it, so an empty or stale list -- a service just
    switched to quorum -- still gives a deadline from the heartbeats known.

    * interval: ``last + period``;
    * cron: the first fire time strictly after ``last``;
    * quorum: the moment the count of heartbeats in the window ``(t - window, t]`` drops below
      ``min_count`` if none arrive: ``recent[-min_count] + window``. With fewer than
      ``min_count`` heartbeats ever, the first one plus ``window`` -- a service gets one window
      to reach its quorum.
    """
    last = to_utc(last)
    if isinstance(e, IntervalExpectation):
        return last + timedelta(seconds=e.period)
    if isinstance(e, CronExpectation):
        return next_fire(e.expression, ZoneInfo(e.timezone), last)
    if isinstance(e, QuorumExpectation):
        # Forgiving rather than strict: a wrong deadline from a stale list is corrected by the
        # next heartbeat, a crash here would fail the heartbeat write itself.
        instants = sorted(to_utc(r) for r in recent)
        if last not in instants:
            instants = sorted([*instants, last])
        anchor = instants[-e.min_count] if len(instants) >= e.min_count else instants[0]
        return anchor + timedelta(seconds=e.window)
    assert_never(e)


def next_due(e: Expectation, *, grace: int, last: datetime, recent: Sequence[datetime]) -> datetime:
    """The instant the service becomes down unless a heartbeat arrives: expected_at + grace."""
    return expected_at(e, last=last, recent=recent) + timedelta(seconds=validate_grace(grace))


def validate_grace(value: object) -> int:
    """Grace in whole seconds, 0..365 days."""
    return check_whole_number(value, field="grace", minimum=0, maximum=MAX_SECONDS)


def check_whole_number(
    value: object, *, field: str, minimum: int, maximum: int, unit: str = "seconds"
) -> int:
    """``value`` if it is an int (not a bool) in ``minimum..maximum``, else ValidationError."""
    if isinstance(value, bool) or not isinstance(value, int):
        what = "a boolean" if isinstance(value, bool) else _short(value)
        raise ValidationError(
            f"{field} must be a whole number of {unit} between {minimum} and {maximum}, not {what}",
            field=field,
        )
    if not minimum <= value <= maximum:
        limit = " (365 days)" if unit == "seconds" and maximum == MAX_SECONDS else ""
        raise ValidationError(
            f"{field} must be between {minimum} and {maximum} {unit}{limit}, got {value}",
            field=field,
        )
    return value


def _check_keys(
    data: Mapping[str, Any],
    kind: str,
    *,
    required: tuple[tuple[str, str], ...],
    optional: tuple[str, ...],
) -> None:
    allowed = ("kind", *(name for name, _ in required), *optional)
    unknown = sorted((key for key in data if key not in allowed), key=str)
    if unknown:
        noun = "field" if len(unknown) == 1 else "fields"
        raise ValidationError(
            f"unknown {noun} {_quoted(unknown)} in {_a(kind)} expectation: "
            f"allowed fields are {_quoted(allowed)}",
            field=f"expectation.{unknown[0]}",
        )
    for name, meaning in required:
        if name not in data:
            raise ValidationError(
                f"expectation.{name} is required for {_a(kind)} expectation: {meaning}",
                field=f"expectation.{name}",
            )


def _a(word: str) -> str:
    return f"an {word}" if word[0] in "aeiou" else f"a {word}"


def _quoted(names: Sequence[object]) -> str:
    return ", ".join(_short(name) for name in names)


def _short(value: object) -> str:
    # Echo bad input back, but never a whole megabyte of it.
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."
