"""Keep a service's stored deadline (``expected_at``, ``next_due``) in step with its heartbeats.

The math itself is in ``medic_core.deadlines``; this module only moves values between it and the
row, so the writer, the registry and the monitor all compute deadlines the same way.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, Protocol

from medic_core.clock import isoformat
from medic_core.deadlines import (
    Expectation,
    expected_at,
    parse_expectation,
    quorum_memory,
    remember,
)
from medic_core.store.models import Service


class Deadlined(Protocol):
    """What deadline bookkeeping reads and writes: a ``Service`` row, or the heartbeat writer's
    lighter copy of one (the writer's fast path does not load ORM objects)."""

    expectation: dict[str, Any]
    grace: int
    recent_beats: list[str]
    expected_at: datetime | None
    next_due: datetime | None


def _recent(service: Deadlined) -> list[datetime]:
    return [datetime.fromisoformat(v.replace("Z", "+00:00")) for v in service.recent_beats or []]


def later(stored: datetime | None, at: datetime) -> datetime:
    """The newer of a stored heartbeat instant and a new one: what ``last_heartbeat_at`` becomes.

    Replicas batch heartbeats before writing them, so one received at t1 may be written after
    another replica wrote one received at t2 > t1; the row must keep t2.
    """
    return at if stored is None or at > stored else stored


def record_beat(
    service: Deadlined,
    at: datetime,
    expectation: Expectation | None = None,
    *,
    last: datetime | None = None,
) -> None:
    """A heartbeat counted towards the expectation arrived at ``at``: move the deadline.

    ``expectation`` is ``service.expectation`` already parsed, when the caller has it. ``last``
    is the latest heartbeat already recorded (``last_heartbeat_at`` before this one): a heartbeat
    older than it (written late, see ``later``) still counts towards a quorum, but the deadline
    is computed from the latest heartbeat, so it never moves back.
    """
    if expectation is None:
        expectation = parse_expectation(service.expectation)
    latest = later(last, at)
    keep = quorum_memory(expectation)
    recent = remember(_recent(service), at, keep) if keep else []
    if keep:
        service.recent_beats = [isoformat(t) or "" for t in recent]
    due = expected_at(expectation, last=latest, recent=recent or [latest])
    service.expected_at = due
    service.next_due = _plus_grace(due, service.grace)


def recompute(service: Service) -> None:
    """The expectation or grace changed: recompute from the last heartbeat (if any)."""
    if service.last_heartbeat_at is None:
        service.expected_at = service.next_due = None
        return
    expectation = parse_expectation(service.expectation)
    keep = quorum_memory(expectation)
    recent = _recent(service)[-keep:] if keep else []
    if keep:
        service.recent_beats = [isoformat(t) or "" for t in recent]
    due = expected_at(
        expectation, last=service.last_heartbeat_at, recent=recent or [service.last_heartbeat_at]
    )
    service.expected_at = due
    service.next_due = _plus_grace(due, service.grace)


def _plus_grace(due: datetime, grace: int) -> datetime:
    return due + timedelta(seconds=grace)


class Stated(Protocol):
    state: str
    expected_at: datetime | None


def display_state(service: Stated, now: datetime) -> str:
    """The state a person sees: ``late`` is ``up`` past ``expected_at`` but inside grace."""
    if service.state == "up" and service.expected_at is not None and now >= service.expected_at:
        return "late"
    return service.state
