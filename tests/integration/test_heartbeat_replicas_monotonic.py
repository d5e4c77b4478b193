"""A heartbeat written late by another replica never moves a service's clock back.

Two replicas each batch heartbeats before writing them (group commit), so replica A can receive
a heartbeat at t1, replica B another at t2 > t1, and B's transaction commit first. A's write then
lands on a row that already says t2; it used to set ``last_heartbeat_at`` (and the deadline
computed from it) back to t1 -- a few milliseconds in the field, but a deadline earlier than the
service earned. Each replica here has its own clock, so "received at t1, written after t2" is
exactly what happens: A's writer stamps the heartbeat when it is queued.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from conftest import START, make_settings
from medic_core.app import Medic
from medic_core.audit import Actor
from medic_core.clock import FakeClock
from medic_core.heartbeats import HeartbeatIn
from medic_core.store.models import Heartbeat, Service

ME = Actor("test")


async def two_replicas(db_url: str, tmp_path: Path) -> tuple[Medic, FakeClock, Medic, FakeClock]:
    clock_a, clock_b = FakeClock(START), FakeClock(START)
    a = Medic(make_settings(db_url, tmp_path), clock=clock_a)
    b = Medic(make_settings(db_url, tmp_path), clock=clock_b)
    await a.start(monitor=False)
    await b.start(monitor=False)
    return a, clock_a, b, clock_b


async def service_row(medic: Medic, slug: str) -> Service:
    async with medic.db.sessions() as session:
        service = await session.scalar(select(Service).where(Service.slug == slug))
    assert service is not None
    return service


@pytest.mark.parametrize(
    ("status", "expectation", "grace"),
    [
        ("ok", {"kind": "interval", "period": 60}, 30),  # the writer's fast path
        ("success", {"kind": "interval", "period": 60}, 30),  # the ORM path (a job signal)
        ("ok", {"kind": "cron", "expression": "* * * * *"}, 0),
    ],
)
async def test_a_heartbeat_written_late_by_another_replica_moves_nothing_back(
    db_url: str, tmp_path: Path, status: str, expectation: dict[str, Any], grace: int
) -> None:
    a, clock_a, b, clock_b = await two_replicas(db_url, tmp_path)
    try:
        await a.services.create(
            {"slug": "job", "expectation": expectation, "grace": grace}, actor=ME
        )
        await a.writer.submit(HeartbeatIn("job", status=status))  # at START
        t1 = clock_a.advance(59.990)  # A receives a heartbeat ...
        t2 = clock_b.advance(60.005)  # ... B one 15 ms later, and B's write commits first
        await b.writer.submit(HeartbeatIn("job", status=status))
        after_b = await service_row(a, "job")
        assert after_b.last_heartbeat_at == t2
        assert after_b.next_due is not None and after_b.next_due > t2

        await a.writer.submit(HeartbeatIn("job", status=status))  # stamped t1, written now

        after_a = await service_row(a, "job")
        assert after_a.last_heartbeat_at == t2
        assert after_a.expected_at == after_b.expected_at
        assert after_a.next_due == after_b.next_due
        assert after_a.state == "up"
        async with a.db.sessions() as session:
            stored = (await session.scalars(select(Heartbeat.received_at))).all()
        assert sorted(stored) == [START, t1, t2]  # the late heartbeat is stored all the same
    finally:
        await a.stop()
        await b.stop()


async def test_a_late_heartbeat_still_counts_towards_a_quorum(db_url: str, tmp_path: Path) -> None:
    """Stored and counted (it is a heartbeat), but the deadline only moves forward."""
    a, clock_a, b, clock_b = await two_replicas(db_url, tmp_path)
    try:
        await a.services.create(
            {"slug": "q", "expectation": {"kind": "quorum", "min_count": 2, "window": 300}},
            actor=ME,
        )
        await a.writer.submit(HeartbeatIn("q"))  # at START: one of two in the window
        t1 = clock_a.advance(100)
        t2 = clock_b.advance(101)
        await b.writer.submit(HeartbeatIn("q"))
        await a.writer.submit(HeartbeatIn("q"))  # t1, written after t2
        service = await service_row(a, "q")
        assert service.last_heartbeat_at == t2
        # The two latest heartbeats are t1 and t2: the window holds two until t1 leaves it.
        assert service.expected_at == t1 + timedelta(seconds=300)
    finally:
        await a.stop()
        await b.stop()
