"""Pure deadline math: when a heartbeat is due.

No I/O, no database, no clock reads: callers pass instants in (timezone-aware UTC) and get
instants back. ``expectations`` covers services' heartbeat promises and their deadlines, and
``cron`` the DST-correct cron evaluation they (and maintenance recurrences,
``medic_core.maintenance.occurrences``) rely on.
"""

from medic_core.deadlines.expectations import (
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

__all__ = [
    "CronExpectation",
    "Expectation",
    "IntervalExpectation",
    "QuorumExpectation",
    "expectation_to_dict",
    "expected_at",
    "next_due",
    "parse_expectation",
    "quorum_memory",
    "remember",
    "validate_grace",
]
