"""Executions across replicas, on both databases: two ``Medic`` processes' worth of components
on one database, each with its own gRPC endpoint.

What is proven: a request or a cancel stored by a replica the agent is not connected to is sent
by the replica holding the agent's stream (its dispatch pass, stepped by hand or running by
itself), exactly once even when replicas or paths race for it, never by a replica whose stream
was replaced; and an execution whose agent never comes back fails ``lost`` once it is past the
agent's memory window (the watch, in bounded batches).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import grpc
import pytest
from sqlalchemy import select
from test_agent_executions import (
    AGENT_ID,
    ME,
    FakeAgent,
    S,
    eventually,
    free_port,
    hello,
)

from conftest import make_settings
from medic_core.agent.sessions import Session
from medic_core.app import Medic
from medic_core.clock import FakeClock
from medic_core.events import Event
from medic_core.store.models import AuditEntry, Execution

Replicas = tuple[Medic, Medic]


async def _replica(db_url: str, path: Path, clock: FakeClock, **settings: Any) -> Medic:
    path.mkdir()
    app = Medic(make_settings(db_url, path, grpc_port=free_port(), **settings), clock=clock)
    await app.start(monitor=False)
    return app


@pytest.fixture
async def replicas(db_url: str, tmp_path: Path, clock: FakeClock) -> AsyncIterator[Replicas]:
    """Two replicas (``a``, ``b``) whose dispatch passes only run when a test steps them."""
    slow = {"agent_dispatch_interval": 3600.0, "monitor_batch": 2}
    a = await _replica(db_url, tmp_path / "a", clock, **slow)
    b = await _replica(db_url, tmp_path / "b", clock, **slow)
    try:
        yield a, b
    finally:
        await a.stop()
        await b.stop()


@pytest.fixture
async def connect_to(replicas: Replicas) -> AsyncIterator[Callable[[Medic], FakeAgent]]:
    """Open an agent stream to a replica's endpoint (one key, valid on every replica)."""
    _, token = await replicas[0].keys.create(name="agents", scopes=["agent"], actor=ME)
    channels: list[grpc.aio.Channel] = []
    agents: list[FakeAgent] = []

    def make(medic: Medic) -> FakeAgent:
        assert medic.agent_endpoint is not None
        channels.append(grpc.aio.insecure_channel(f"127.0.0.1:{medic.agent_endpoint.port}"))
        agents.append(FakeAgent(channels[-1], token))
        return agents[-1]

    yield make
    for agent in agents:
        agent.reader.cancel()
    await asyncio.gather(*(a.reader for a in agents), return_exceptions=True)
    for channel in channels:
        await channel.close()


async def online(agent: FakeAgent) -> FakeAgent:
    await agent.welcome(hello())
    return agent


async def request(medic: Medic) -> dict[str, Any]:
    """Ask ``medic`` to run the test's script on the agent (through the domain, as REST does)."""
    return await medic.agents.execute(
        AGENT_ID, "restart-service", ["--graceful", "nginx"], {}, None, ME
    )


async def stored(medic: Medic, execution_id: str) -> Execution:
    async with medic.db.sessions() as db:
        row = await db.scalar(select(Execution).where(Execution.execution_id == execution_id))
    assert row is not None
    return row


# -- the dispatch pass ---------------------------------------------------------------------------


async def test_a_request_stored_by_another_replica_is_sent_by_the_one_holding_the_stream(
    replicas: Replicas, connect_to: Callable[[Medic], FakeAgent]
) -> None:
    a, b = replicas
    agent = await online(connect_to(a))
    created = await request(b)
    assert (created["delivery"], created["sent_count"]) == ("queued", 0)
    assert await b.agents.dispatch_once() == (0, False)  # b holds no stream
    assert await a.agents.dispatch_once() == (1, False)
    execute = await agent.execute()
    assert (execute.execution_id, execute.script) == (created["id"], "restart-service")
    assert execute.expected_sha256 == created["expected_sha256"]
    row = await stored(a, created["id"])
    assert (row.sent_count, row.state) == (1, "pending") and row.last_sent_at is not None
    # Sent: owed no more, by anyone.
    assert await a.agents.dispatch_once() == (0, False)
    assert await agent.quiet()
    agent.update(created["id"], S.EXECUTION_STATE_ACCEPTED)

    async def accepted() -> bool:
        return (await stored(b, created["id"])).state == "accepted"

    await eventually(accepted)


async def test_a_cancel_stored_by_another_replica_is_sent_by_the_one_holding_the_stream(
    replicas: Replicas, connect_to: Callable[[Medic], FakeAgent]
) -> None:
    a, b = replicas
    agent = await online(connect_to(a))
    created = await request(a)
    assert created["delivery"] == "sent"
    await agent.execute()
    agent.update(created["id"], S.EXECUTION_STATE_RUNNING)

    async def running() -> bool:
        return (await stored(b, created["id"])).state == "running"

    await eventually(running)
    cancelled = await b.agents.executions.cancel(created["id"], actor=ME)
    assert cancelled["state"] == "running" and cancelled["cancel_requested_at"] is not None
    assert await agent.quiet()  # b cannot reach the agent
    assert await a.agents.dispatch_once() == (1, False)
    assert (await agent.cancel()).execution_id == created["id"]
    assert await a.agents.dispatch_once() == (0, False)
    # Asked again on b: owed again, sent again.
    await b.agents.executions.cancel(created["id"], actor=ME)
    assert await a.agents.dispatch_once() == (1, False)
    assert (await agent.cancel()).execution_id == created["id"]
    # Asked on a, which holds the stream: sent at once, nothing left for the pass.
    await a.agents.executions.cancel(created["id"], actor=ME)
    assert (await agent.cancel()).execution_id == created["id"]
    assert await a.agents.dispatch_once() == (0, False)
    assert (await stored(a, created["id"])).sent_count == 1
    agent.update(created["id"], S.EXECUTION_STATE_CANCELLED, signal=15)

    async def ended() -> bool:
        return (await stored(a, created["id"])).state == "cancelled"

    await eventually(ended)
    assert await a.agents.dispatch_once() == (0, False)
    assert await agent.quiet()


async def test_replicas_and_paths_racing_for_one_execution_send_it_once(
    replicas: Replicas, connect_to: Callable[[Medic], FakeAgent]
) -> None:
    a, b = replicas
    agent = await online(connect_to(a))
    ids = [(await request(b))["id"] for _ in range(3)]
    # Two passes of the holding replica and one of the other, at once, then until done.
    results = await asyncio.gather(
        a.agents.dispatch_once(), a.agents.dispatch_once(), b.agents.dispatch_once()
    )
    sent = sum(count for count, _ in results)
    while (step := await a.agents.dispatch_once())[0]:
        sent += step[0]
    assert sent == 3
    received = sorted([(await agent.execute()).execution_id for _ in ids])
    assert received == sorted(ids)
    assert await agent.quiet()
    assert [(await stored(a, eid)).sent_count for eid in ids] == [1, 1, 1]
    # The holding replica's own request and its pass racing: one of them sends it.
    mine, by_pass = await asyncio.gather(request(a), a.agents.dispatch_once())
    assert (mine["delivery"] == "sent") != (by_pass == (1, False))
    assert (await agent.execute()).execution_id == mine["id"]
    assert (await stored(a, mine["id"])).sent_count == 1
    assert await agent.quiet()


async def test_one_pass_sends_at_most_a_batch_and_says_more_is_owed(
    replicas: Replicas, connect_to: Callable[[Medic], FakeAgent]
) -> None:
    a, b = replicas
    agent = await online(connect_to(a))
    ids = [(await request(b))["id"] for _ in range(3)]
    assert await a.agents.dispatch_once() == (2, True)  # monitor_batch is 2 here
    assert await a.agents.dispatch_once() == (1, False)
    assert [(await agent.execute()).execution_id for _ in ids] == ids  # oldest first


async def test_a_replica_whose_stream_was_replaced_elsewhere_sends_nothing(
    replicas: Replicas, connect_to: Callable[[Medic], FakeAgent]
) -> None:
    a, b = replicas
    stale = await online(connect_to(a))
    fresh = await online(connect_to(b))  # the agent reconnected to b; a has not noticed yet
    assert a.agents.session(AGENT_ID) is not None
    created = await request(a)
    assert created["delivery"] == "queued"  # a's stream no longer speaks for the agent
    assert await a.agents.dispatch_once() == (0, False)
    assert await b.agents.dispatch_once() == (1, False)
    assert (await fresh.execute()).execution_id == created["id"]
    assert await stale.quiet()
    assert (await stored(a, created["id"])).sent_count == 1


async def test_the_dispatch_pass_runs_by_itself_on_a_replica_with_the_endpoint(
    db_url: str,
    tmp_path: Path,
    clock: FakeClock,
    replicas: Replicas,
    connect_to: Callable[[Medic], FakeAgent],
) -> None:
    _, b = replicas
    quick = await _replica(db_url, tmp_path / "quick", clock, agent_dispatch_interval=0.05)
    try:
        agent = await online(connect_to(quick))
        created = await request(b)
        assert created["delivery"] == "queued"
        assert (await agent.execute()).execution_id == created["id"]
        assert (await stored(b, created["id"])).sent_count == 1
    finally:
        await quick.stop()


class Ignored:
    """The transport of a stream the test never reads: writes go nowhere."""

    async def write(self, message: object) -> None:
        return None

    def interrupt(self) -> None:
        return None


async def test_the_pass_finds_its_agent_among_thousands_connected(
    replicas: Replicas, connect_to: Callable[[Medic], FakeAgent]
) -> None:
    a, b = replicas
    agent = await online(connect_to(a))
    created = await request(b)
    # 5,000 other welcomed streams, and the agent's among them: one parameter holds every id.
    others = []
    for n in range(5000):
        other = Session(ME, Ignored())
        other.agent_id, other.welcomed = f"other-{n}", True
        others.append(other)
    ours = a.agents.session(AGENT_ID)
    assert ours is not None
    assert await a.agents.executions.dispatch([*others[:2500], ours, *others[2500:]]) == (1, False)
    assert (await agent.execute()).execution_id == created["id"]


def test_the_dispatch_interval_must_be_positive(tmp_path: Path) -> None:
    settings = make_settings(f"sqlite:///{tmp_path}/m.db", tmp_path, agent_dispatch_interval=0.0)
    with pytest.raises(ValueError, match="MEDIC_AGENT_DISPATCH_INTERVAL"):
        Medic(settings)


# -- expiry: an agent that never comes back ------------------------------------------------------


async def test_unanswered_executions_fail_lost_past_the_memory_window_in_bounded_batches(
    replicas: Replicas, connect_to: Callable[[Medic], FakeAgent], clock: FakeClock
) -> None:
    a, b = replicas
    agent = await online(connect_to(a))
    sent = (await request(a))["id"]  # sent, never answered
    await agent.execute()
    await agent.close()

    async def offline() -> bool:
        return bool((await a.agents.get(AGENT_ID))["status"] == "offline")

    await eventually(offline)
    queued = [(await request(b))["id"] for _ in range(2)]  # never sent
    clock.advance(600)
    later = (await request(b))["id"]
    seen: list[Event] = []

    async def record(event: Event) -> None:
        if event.type == "execution.updated":
            seen.append(event)

    b.bus.subscribe("test", record)
    clock.advance(24 * 3600 - 601)
    assert (await b.agents.run_once()).lost == 0  # one second short of the window
    clock.advance(1)
    # The watch runs wherever the background services run (here: b, no stream of the agent);
    # monitor_batch (2) bounds one pass, and a full batch asks for another pass at once.
    first = await b.agents.run_once()
    assert (first.lost, first.more) == (2, True)
    second = await b.agents.run_once()
    assert (second.lost, second.more) == (1, False)
    for eid in (sent, *queued):
        row = await stored(b, eid)
        assert (row.state, row.reason) == ("failed", "lost")
        assert row.detail is not None and "memory window" in row.detail
        assert row.env_values is None and row.finished_at == clock.now()
    assert (await stored(b, later)).state == "pending"
    clock.advance(600)
    assert (await b.agents.run_once()).lost == 1
    assert (await b.agents.run_once()).lost == 0
    async with b.db.sessions() as db:
        finishes = list(
            await db.scalars(select(AuditEntry).where(AuditEntry.action == "execution.finish"))
        )
    assert sorted(e.resource_id for e in finishes) == sorted([sent, *queued, later])
    assert {e.actor for e in finishes} == {"system"}
    metric = b.metrics.registry.get_sample_value("medic_agent_executions_total", {"result": "lost"})
    assert metric == 4
    await b.bus.drain()
    assert sorted(e.data["execution"]["id"] for e in seen) == sorted([sent, *queued, later])
    # The agent comes back: nothing is sent again.
    back = await online(connect_to(a))
    assert await a.agents.dispatch_once() == (0, False)
    assert await back.quiet()
