"""A webhook receiver sees at most MEDIC_DELIVERY_CONCURRENCY notifications at once per process.

The setting was read nowhere: a delivery pass claimed up to 100 deliveries and sent them all at
once, so one replica had 100 requests in flight to one receiver. Here the real webhook notifier
sends to a real HTTP receiver on 127.0.0.1 that counts the requests it is answering at the same
time; it holds each one a moment so that sends which are allowed to overlap do overlap.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from sqlalchemy import func, select

from conftest import make_settings
from medic_core.app import Medic
from medic_core.audit import Actor
from medic_core.clock import FakeClock
from medic_core.heartbeats import HeartbeatIn
from medic_core.store.models import Delivery, NotificationTarget

ME = Actor("test")
ALERTS = 24


class CountingReceiver:
    """Answers 200 to every request after holding it ``hold`` seconds; counts the overlap."""

    def __init__(self, hold: float = 0.1) -> None:
        self.hold = hold
        self.in_flight = 0
        self.most_in_flight = 0
        self.deliveries: list[str] = []
        app = web.Application()
        app.router.add_post("/hook", self._handle)
        self.server = TestServer(app, host="127.0.0.1")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.port}/hook"

    async def _handle(self, request: web.Request) -> web.Response:
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            await request.read()
            # Not an assertion: it only widens the window in which allowed sends overlap.
            await asyncio.sleep(self.hold)
            self.deliveries.append(request.headers.get("X-Medic-Delivery", ""))
            return web.Response(text="ok")
        finally:
            self.in_flight -= 1


@pytest.fixture
async def receiver() -> AsyncIterator[CountingReceiver]:
    found = CountingReceiver()
    await found.server.start_server()
    yield found
    await found.server.close()


async def replica(db_url: str, tmp_path: Path, clock: FakeClock, concurrency: int) -> Medic:
    medic = Medic(
        make_settings(
            db_url,
            tmp_path,
            delivery_concurrency=concurrency,
            outbound_allow_networks="127.0.0.1/32",
            notify_timeout=30.0,
        ),
        clock=clock,
    )
    await medic.start(monitor=False)
    return medic


async def open_alerts(medic: Medic, clock: FakeClock, hook: str) -> None:
    """``ALERTS`` failed services, each alert queued for the one webhook target."""
    now = clock.now()
    async with medic.db.transaction() as session:
        session.add(
            NotificationTarget(
                slug="ops-hook",
                name="ops hook",
                notifier="webhook",
                config={"url": hook},
                min_priority="p5",
                period="always",
                enabled=True,
                created_at=now,
                updated_at=now,
            )
        )
    for n in range(ALERTS):
        await medic.services.create(
            {"slug": f"job-{n}", "expectation": {"kind": "interval", "period": 3600}}, actor=ME
        )
    await medic.writer.submit_many([HeartbeatIn(f"job-{n}", status="fail") for n in range(ALERTS)])
    async with medic.db.sessions() as session:
        queued = await session.scalar(select(func.count()).select_from(Delivery))
    assert queued == ALERTS


async def drain(medic: Medic) -> int:
    """Run delivery passes until one claims nothing; return how many were sent."""
    sent = 0
    while True:
        result = await medic.delivery.run_once()
        sent += result.sent
        if not result.claimed:
            return sent


async def test_one_process_sends_at_most_the_configured_concurrency_to_a_receiver(
    db_url: str, tmp_path: Path, clock: FakeClock, receiver: CountingReceiver
) -> None:
    medic = await replica(db_url, tmp_path, clock, concurrency=3)
    try:
        await open_alerts(medic, clock, receiver.url)
        assert await drain(medic) == ALERTS
        assert len(receiver.deliveries) == ALERTS
        assert receiver.most_in_flight <= 3
    finally:
        await medic.stop()


async def test_two_replicas_each_send_at_most_their_concurrency_and_each_delivery_once(
    db_url: str, tmp_path: Path, clock: FakeClock, receiver: CountingReceiver
) -> None:
    a = await replica(db_url, tmp_path, clock, concurrency=2)
    b = await replica(db_url, tmp_path, clock, concurrency=2)
    try:
        await open_alerts(a, clock, receiver.url)
        sent = await asyncio.gather(drain(a), drain(b))
        assert sum(sent) == ALERTS
        assert sorted(receiver.deliveries) == sorted({*receiver.deliveries})  # each once
        assert len(receiver.deliveries) == ALERTS
        assert receiver.most_in_flight <= 2 + 2
    finally:
        await a.stop()
        await b.stop()


async def test_a_pass_claims_no_more_than_it_sends_at_once(
    db_url: str, tmp_path: Path, clock: FakeClock, receiver: CountingReceiver
) -> None:
    """Claimed deliveries are leased (2 x MEDIC_NOTIFY_TIMEOUT + 5 s): one waiting its turn
    behind slow sends could outlive its lease and be sent again by another replica, so a pass
    claims only what it sends at once and leaves the rest to the next pass (or replica)."""
    medic = await replica(db_url, tmp_path, clock, concurrency=5)
    try:
        await open_alerts(medic, clock, receiver.url)
        result = await medic.delivery.run_once()
        assert (result.claimed, result.sent) == (5, 5)
        async with medic.db.sessions() as session:
            untouched = await session.scalar(
                select(func.count()).select_from(Delivery).where(Delivery.attempts == 0)
            )
        assert untouched == ALERTS - 5
        assert await drain(medic) == ALERTS - 5
    finally:
        await medic.stop()


def test_a_concurrency_below_one_is_refused_at_start(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="MEDIC_DELIVERY_CONCURRENCY must be at least 1, got 0"):
        Medic(make_settings("", tmp_path, delivery_concurrency=0))
