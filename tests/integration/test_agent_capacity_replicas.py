"""An agent's capacity across replicas, on both databases: two ``Medic`` processes' worth of
components on one database, the agent's stream on one of them, the requests on the other.

What is proven: requests stored by the replica without the agent's stream are sent by the one
holding it no faster than the agent runs them (``Hello.max_concurrent_executions``): never more
in flight than its capacity, all of them succeed, none is refused ``too_many_running``; the rest
go out oldest first as the agent's answers free slots, without waiting for the next pass; and
concurrent paths on the holding replica (its pass, its own requests) cannot both take the last
slot.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import grpc
import pytest
from sqlalchemy import select
from test_agent_executions import AGENT_ID, ME, FakeAgent, S, free_port, hello

from conftest import make_settings
from medic_core.app import Medic
from medic_core.clock import FakeClock
from medic_core.store.models import Execution


class BusyHost:
    """The agent's side, as the real agent behaves: it runs at most ``capacity`` executions at
    once and refuses more with ``too_many_running``; it finishes some of what runs only when the
    server has had nothing more to say for a moment (a lull), so whatever the server sends in a
    burst arrives while the earlier ones still run."""

    def __init__(self, agent: FakeAgent, capacity: int) -> None:
        self.agent = agent
        self.capacity = capacity
        self.running: list[str] = []
        self.received: list[str] = []
        self.refused: list[str] = []
        self.finished: list[str] = []
        self.peak = 0

    def take(self, message: Any) -> None:
        assert message.WhichOneof("body") == "execute", message
        execution_id = message.execute.execution_id
        self.received.append(execution_id)
        if len(self.running) >= self.capacity:
            self.refused.append(execution_id)
            self.agent.update(
                execution_id,
                S.EXECUTION_STATE_REJECTED,
                reason="too_many_running",
                detail=f"{len(self.running)} executions are running, the limit is {self.capacity}",
            )
            return
        self.running.append(execution_id)
        self.peak = max(self.peak, len(self.running))
        self.agent.update(execution_id, S.EXECUTION_STATE_ACCEPTED)
        self.agent.update(execution_id, S.EXECUTION_STATE_RUNNING)

    def finish(self, count: int) -> None:
        for execution_id in self.running[:count]:
            self.agent.update(execution_id, S.EXECUTION_STATE_SUCCEEDED, exit_code=0, duration_ms=5)
            self.finished.append(execution_id)
        del self.running[:count]

    async def serve(self, total: int, *, per_lull: int = 5, lull: float = 0.25) -> None:
        """Run executions until ``total`` were answered for good (finished or refused)."""
        async with asyncio.timeout(90):
            while len(set(self.finished) | set(self.refused)) < total or self.running:
                try:
                    message = await asyncio.wait_for(self.agent.inbox.get(), lull)
                except TimeoutError:
                    self.finish(per_lull)
                    continue
                assert not isinstance(message, BaseException | None), message
                self.take(message)


Start = Callable[..., Awaitable[tuple[Medic, Medic, FakeAgent]]]


@pytest.fixture
async def start(db_url: str, tmp_path: Path, clock: FakeClock) -> AsyncIterator[Start]:
    """``start(capacity, interval=..., **settings)``: replicas ``a`` (the agent's stream; its
    dispatch pass runs every ``interval`` seconds) and ``b`` (the requests, never the stream) on
    one database, and the agent, welcomed by ``a`` after advertising ``capacity`` (0: says
    nothing, as older agents)."""
    apps: list[Medic] = []
    channels: list[grpc.aio.Channel] = []
    agents: list[FakeAgent] = []

    async def replica(name: str, interval: float, extra: dict[str, Any]) -> Medic:
        (tmp_path / name).mkdir()
        settings = make_settings(
            db_url,
            tmp_path / name,
            grpc_port=free_port(),
            agent_dispatch_interval=interval,
            **extra,
        )
        apps.append(Medic(settings, clock=clock))
        await apps[-1].start(monitor=False)
        return apps[-1]

    async def make(
        capacity: int, *, interval: float = 0.05, **extra: Any
    ) -> tuple[Medic, Medic, FakeAgent]:
        a = await replica("a", interval, extra)
        b = await replica("b", 3600.0, extra)
        _, token = await a.keys.create(name="agents", scopes=["agent"], actor=ME)
        assert a.agent_endpoint is not None
        channels.append(grpc.aio.insecure_channel(f"127.0.0.1:{a.agent_endpoint.port}"))
        agents.append(FakeAgent(channels[-1], token))
        await agents[-1].welcome(hello(max_concurrent_executions=capacity))
        return a, b, agents[-1]

    try:
        yield make
    finally:
        for agent in agents:
            agent.reader.cancel()
        await asyncio.gather(*(agent.reader for agent in agents), return_exceptions=True)
        for channel in channels:
            await channel.close()
        for app in apps:
            await app.stop()


async def request(medic: Medic) -> str:
    created = await medic.agents.execute(
        AGENT_ID, "restart-service", ["--graceful", "nginx"], {}, None, ME
    )
    return str(created["id"])


async def rows(medic: Medic) -> list[Execution]:
    async with medic.db.sessions() as db:
        return list(await db.scalars(select(Execution).order_by(Execution.id)))


async def settled(medic: Medic) -> list[Execution]:
    """Every execution, once the agent's last answers are stored (none left unfinished)."""
    async with asyncio.timeout(10):
        while True:
            stored = await rows(medic)
            if all(row.finished_at is not None for row in stored):
                return stored
            await asyncio.sleep(0.02)


async def test_forty_executions_through_the_replica_without_the_stream_all_succeed(
    start: Start,
) -> None:
    _, b, agent = await start(16)
    host = BusyHost(agent, capacity=16)
    # Stored on b before the agent answers anything: whatever a sends arrives as one burst.
    ids = [await request(b) for _ in range(40)]
    await host.serve(len(ids))
    assert host.refused == []
    assert host.peak == 16
    assert sorted(host.finished) == sorted(ids)
    assert host.received == ids  # oldest first, each once
    stored = await settled(b)
    assert [(row.state, row.reason, row.sent_count) for row in stored] == [
        ("succeeded", None, 1)
    ] * 40


async def test_a_finished_execution_sends_the_next_one_without_waiting_for_the_pass(
    start: Start,
) -> None:
    a, b, agent = await start(2, interval=3600.0)
    ids = [await request(b) for _ in range(5)]
    assert await a.agents.dispatch_once() == (2, False)  # the agent's capacity, oldest first
    host = BusyHost(agent, capacity=2)
    for _ in range(2):
        host.take(await agent.receive())
    assert host.received == ids[:2]
    assert await agent.quiet()
    # Each final answer frees a slot: the next request goes out at once, the pass never stepped.
    for expected in ids[2:]:
        host.finish(1)
        host.take(await agent.receive())
        assert host.received[-1] == expected
    host.finish(2)
    assert await agent.quiet()
    assert host.refused == [] and host.peak == 2
    assert [row.state for row in await settled(b)] == ["succeeded"] * 5


async def test_concurrent_paths_on_the_holding_replica_cannot_both_take_the_last_slot(
    start: Start,
) -> None:
    a, b, agent = await start(3, interval=3600.0)
    queued = [await request(b) for _ in range(4)]
    # Three passes of the holding replica and four of its own requests, all at once.
    results = await asyncio.gather(
        a.agents.dispatch_once(),
        a.agents.dispatch_once(),
        a.agents.dispatch_once(),
        *(request(a) for _ in range(4)),
    )
    mine = [result for result in results if isinstance(result, str)]
    received = [(await agent.execute()).execution_id for _ in range(3)]
    assert await agent.quiet()  # never more than the capacity
    assert received == queued[:3]  # the oldest requests first, whichever path sent them
    stored = {row.execution_id: row for row in await rows(a)}
    assert sum(row.sent_count for row in stored.values()) == 3
    assert all(stored[eid].sent_count == 0 for eid in [queued[3], *mine])
