"""Schedules, escalation policies and notification targets: create, list, get, update, delete.

(Being filled in: the classes' constructors and names are fixed, the app wires them as
``medic.schedules``, ``medic.escalations`` and ``medic.targets``.)
"""

from __future__ import annotations

from collections.abc import Mapping

from medic_core.clock import Clock
from medic_core.plugins.interfaces import Notifier
from medic_core.store import Database


class Schedules:
    def __init__(self, db: Database, clock: Clock) -> None:
        self._db = db
        self._clock = clock


class EscalationPolicies:
    def __init__(self, db: Database, clock: Clock) -> None:
        self._db = db
        self._clock = clock


class Targets:
    def __init__(
        self,
        db: Database,
        clock: Clock,
        notifiers: Mapping[str, Notifier],
    ) -> None:
        self._db = db
        self._clock = clock
        self._notifiers = notifiers
