"""The database circuit breaker, the fault classifier and the readiness check on a fake clock.

What the breaker promises (``medic_core/store/breaker.py``): after a failure requests are
refused at once with the cause's problem, for an interval that grows while probes fail; one
probe at a time; a read never ends a full disk's outage.
"""

from __future__ import annotations

import sqlite3
from typing import Any

import pytest
from sqlalchemy.exc import IntegrityError, OperationalError

from medic_core.errors import (
    DatabaseNotWritable,
    DatabaseTooSlow,
    DatabaseUnavailable,
    DatabaseUnreachable,
)
from medic_core.observability.metrics import Metrics
from medic_core.readiness import DatabaseCheck
from medic_core.store.breaker import DatabaseBreaker
from medic_core.store.faults import classify

WHAT = "the heartbeat was NOT stored"


class Seconds:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def wrapped(message: str) -> OperationalError:
    return OperationalError("INSERT ...", {}, sqlite3.OperationalError(message))


class PgError(Exception):
    """What asyncpg raises: an error carrying its SQLSTATE."""

    def __init__(self, sqlstate: str) -> None:
        super().__init__(f"sqlstate {sqlstate}")
        self.sqlstate = sqlstate


@pytest.mark.parametrize(
    ("error", "cause"),
    [
        (wrapped("database or disk is full"), "full"),
        (wrapped("attempt to write a readonly database"), "read_only"),
        (wrapped("database is locked"), "slow"),
        (wrapped("unable to open database file"), "unreachable"),
        (PgError("53100"), "full"),
        (PgError("25006"), "read_only"),
        (PgError("57014"), "slow"),
        (PgError("57P01"), "unreachable"),
        (PgError("08006"), "unreachable"),
        (ConnectionRefusedError(111, "Connection refused"), "unreachable"),
        (TimeoutError(), "slow"),
        (IntegrityError("INSERT", {}, Exception("duplicate key")), None),
        (ValueError("a bug"), None),
    ],
)
def test_each_database_fault_is_named_by_its_cause(error: BaseException, cause: str) -> None:
    assert classify(error) == cause


def test_a_cause_deeper_in_the_chain_wins_over_the_generic_wrapper() -> None:
    try:
        try:
            raise PgError("53100")
        except PgError as exc:
            raise OperationalError("COMMIT", {}, Exception("wrapped")) from exc
    except OperationalError as outer:
        assert classify(outer) == "full"


def test_a_failure_refuses_at_once_with_the_causes_problem_and_retry_after() -> None:
    seconds = Seconds()
    breaker = DatabaseBreaker(monotonic=seconds, metrics=Metrics())
    assert breaker.admit(WHAT) is False
    breaker.failed("full", wrapped("database or disk is full"))
    with pytest.raises(DatabaseNotWritable) as refused:
        breaker.admit(WHAT)
    assert refused.value.status == 503
    assert refused.value.type == "urn:medic:problem:database-not-writable"
    assert refused.value.retry_after >= 1
    assert "full" in refused.value.message and WHAT in refused.value.message
    assert breaker.failing and breaker.detail().startswith("full: OperationalError")


@pytest.mark.parametrize(
    ("cause", "kind"),
    [("unreachable", DatabaseUnreachable), ("slow", DatabaseTooSlow)],
)
def test_unreachable_and_slow_have_problems_of_their_own(
    cause: Any, kind: type[DatabaseUnavailable]
) -> None:
    breaker = DatabaseBreaker(monotonic=Seconds())
    breaker.failed(cause, "x")
    with pytest.raises(kind):
        breaker.admit(WHAT)


def test_one_probe_at_a_time_and_the_interval_grows_while_probes_fail() -> None:
    seconds = Seconds()
    breaker = DatabaseBreaker(monotonic=seconds, max_interval=2.0)
    breaker.failed("unreachable", "refused")
    intervals = []
    for _ in range(6):
        intervals.append(breaker.interval)
        seconds.now += breaker.interval
        assert breaker.admit(WHAT) is True  # the probe
        with pytest.raises(DatabaseUnreachable):
            breaker.admit(WHAT)  # everyone else, while the probe is out
        breaker.failed("unreachable", "refused again")
    assert intervals == [0.25, 0.5, 1.0, 2.0, 2.0, 2.0]
    seconds.now += breaker.interval
    assert breaker.admit(WHAT) is True
    breaker.succeeded(wrote=True)
    assert not breaker.failing and breaker.admit(WHAT) is False


def test_a_probe_that_never_reports_counts_as_slow() -> None:
    seconds = Seconds()
    breaker = DatabaseBreaker(monotonic=seconds, probe_timeout=2.0)
    breaker.failed("unreachable", "refused")
    seconds.now += 1
    assert breaker.admit(WHAT) is True
    seconds.now += 3
    with pytest.raises(DatabaseTooSlow):
        breaker.admit(WHAT)
    assert breaker.cause == "slow"


def test_reads_pass_a_full_disk_and_only_a_write_ends_its_outage() -> None:
    seconds = Seconds()
    breaker = DatabaseBreaker(monotonic=seconds)
    breaker.failed("full", "database or disk is full")
    assert breaker.admit("key lookup", writes=False) is False
    breaker.succeeded(wrote=False)
    assert breaker.failing and breaker.cause == "full"
    breaker.succeeded(wrote=True)
    assert not breaker.failing


def test_consecutive_failures_below_the_threshold_do_not_open_it() -> None:
    breaker = DatabaseBreaker(monotonic=Seconds(), failures=3)
    breaker.failed("slow", "t")
    breaker.succeeded(wrote=False)
    breaker.failed("slow", "t")
    breaker.failed("slow", "t")
    assert breaker.admit(WHAT) is False
    breaker.failed("slow", "t")
    with pytest.raises(DatabaseTooSlow):
        breaker.admit(WHAT)


class FullDisk:
    """A database whose reads work and whose writes fail as SQLite's do on a full disk."""

    dialect = "sqlite"

    def __init__(self) -> None:
        self.full = True
        self.writes = 0

    async def ping(self, timeout: float) -> None:
        return None

    async def probe_write(self, timeout: float) -> None:
        self.writes += 1
        if self.full:
            raise wrapped("database or disk is full")


async def test_readiness_fails_on_an_injected_full_disk_until_a_write_succeeds() -> None:
    """The fallback of the tmpfs test (tests/integration/test_readiness_on_a_full_disk.py)."""
    seconds = Seconds()
    db = FullDisk()
    breaker = DatabaseBreaker(monotonic=seconds)
    check = DatabaseCheck(db, breaker)
    assert (await check.check()).status == "ok"  # a read: all is well as far as it knows
    breaker.failed("full", wrapped("database or disk is full"))  # what the writer saw
    result = await check.check()
    assert result.status == "down" and result.detail.startswith("full: ")
    assert db.writes == 0  # refused at once: within the interval nobody probes
    seconds.now += 1
    assert (await check.check()).status == "down" and db.writes == 1
    db.full = False
    seconds.now += 1
    assert (await check.check()).status == "ok"
    assert not breaker.failing
