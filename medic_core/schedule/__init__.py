"""Pure deadline math: when a heartbeat is due, and when maintenance windows are open.

No I/O, no database, no clock reads: callers pass instants in (timezone-aware UTC) and get
instants back. ``expectations`` covers services' heartbeat promises and their deadlines,
``maintenance`` the windows that suppress notifications, and ``cron`` the DST-correct cron
evaluation both rely on.
"""

from medic_core.schedule.expectations import (
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
from medic_core.schedule.maintenance import (
    MaintenanceSchedule,
    next_change,
    occurrence_at,
    parse_maintenance_schedule,
)

__all__ = [
    "CronExpectation",
    "Expectation",
    "IntervalExpectation",
    "MaintenanceSchedule",
    "QuorumExpectation",
    "expectation_to_dict",
    "expected_at",
    "next_change",
    "next_due",
    "occurrence_at",
    "parse_expectation",
    "parse_maintenance_schedule",
    "quorum_memory",
    "remember",
    "validate_grace",
]
