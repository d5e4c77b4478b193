"""Agent Hellos are stored in groups (``medic_core/agent/hellos.py``), on both databases.

After a restart every agent says Hello at once; the Hellos that wait together are stored in
one transaction. The tests hold the writer (its task stopped, so Hellos queue up), queue what a
case needs through the real gRPC endpoint, then let the writer take it all as one batch, and
check what each stream got and what was stored: each Hello answered on its own (refused,
replaced, welcomed, failed), a failing batch retried one Hello at a time, the database
unreachable, a full queue, the offline alerts and the replays of a reconnecting fleet, and the
offline marks of streams ending together.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import grpc
import pytest
from sqlalchemy import event, select, update
from test_agent_executions import (
    AGENT_ID,
    ME,
    RESTART,
    FakeAgent,
    eventually,
    free_port,
    hello,
)
from test_agent_hub import agent_token, channel

from conftest import make_settings
from medic_core.agent.hellos import HelloWriter, Replaced, Stored
from medic_core.agent.info import AgentInfo
from medic_core.agent.sessions import Session
from medic_core.app import Medic
from medic_core.audit import Actor
from medic_core.clock import FakeClock
from medic_core.store.models import Agent, AuditEntry, Service

__all__ = ["agent_token", "channel"]  # the fixtures, imported for pytest (on this hub_medic)

StatusCode = grpc.StatusCode


def agent_id(n: int) -> str:
    return f"00000000-0000-4000-8000-{n:012x}"


@pytest.fixture
async def hub_medic(db_url: str, tmp_path: Path, clock: FakeClock) -> AsyncIterator[Medic]:
    # No dispatch pass during a test (it would add its own reads of the executions).
    settings = make_settings(
        db_url, tmp_path, grpc_port=free_port(), agent_dispatch_interval=3600.0
    )
    app = Medic(settings, clock=clock)
    await app.start(monitor=False)
    try:
        yield app
    finally:
        await app.stop()


@pytest.fixture
async def connect(
    channel: grpc.aio.Channel, agent_token: str
) -> AsyncIterator[Callable[..., FakeAgent]]:
    agents: list[FakeAgent] = []

    def make(key: str = agent_token) -> FakeAgent:
        agents.append(FakeAgent(channel, key))
        return agents[-1]

    yield make
    for agent in agents:
        agent.reader.cancel()
    await asyncio.gather(*(a.reader for a in agents), return_exceptions=True)


async def hold(writer: HelloWriter) -> None:
    """Stop the writer's task: Hellos wait in its queue until ``release``."""
    task = writer._task
    assert task is not None
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


async def queued(writer: HelloWriter, count: int) -> None:
    """Wait until ``count`` Hellos wait in the held writer's queue."""

    async def enough() -> bool:
        return writer._queue.qsize() >= count

    await eventually(enough)


async def release(writer: HelloWriter) -> None:
    """Start the writer again: it takes everything queued as one batch."""
    await writer.start()


def sample(medic: Medic, name: str, **labels: str) -> float:
    return medic.metrics.registry.get_sample_value(name, labels) or 0.0


def batches(medic: Medic) -> tuple[float, float]:
    """(batches committed, Hellos in them)."""
    return (
        sample(medic, "medic_agent_hello_batch_size_count"),
        sample(medic, "medic_agent_hello_batch_size_sum"),
    )


async def stored(medic: Medic, agent: str) -> Agent | None:
    async with medic.db.sessions() as db:
        return await db.scalar(select(Agent).where(Agent.agent_id == agent))


async def audit(medic: Medic, action: str) -> list[AuditEntry]:
    async with medic.db.sessions() as db:
        rows = await db.scalars(
            select(AuditEntry).where(AuditEntry.action == action).order_by(AuditEntry.id)
        )
        return list(rows)


@contextmanager
def statements(medic: Medic, *needles: str) -> Iterator[list[str]]:
    """The SQL statements run meanwhile that contain every one of ``needles``."""
    seen: list[str] = []

    def record(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        if all(needle in statement for needle in needles):
            seen.append(statement)

    engine = medic.db.engine.sync_engine
    event.listen(engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", record)


# -- one transaction, each Hello answered on its own ---------------------------------------------


async def test_hellos_waiting_together_are_stored_in_one_transaction_and_each_is_welcomed(
    hub_medic: Medic, connect: Callable[..., FakeAgent]
) -> None:
    writer = hub_medic.agents.hellos
    await hold(writer)
    agents = [connect() for _ in range(20)]
    for n, agent in enumerate(agents):
        agent.send(hello(agent_id(n), hostname=f"web-{n}"))
    await queued(writer, 20)
    with statements(hub_medic, "SELECT agents.id, agents.agent_id", "FROM agents") as reads:
        await release(writer)
        welcomes = [await agent.receive() for agent in agents]
    assert batches(hub_medic) == (1.0, 20.0)
    assert len(reads) == 1  # one read of the batch's agents, not one per Hello
    for n, welcome in enumerate(welcomes):
        assert welcome.WhichOneof("body") == "welcome"
        row = await stored(hub_medic, agent_id(n))
        assert row is not None
        assert (row.status, row.session_id, row.hostname) == (
            "online",
            welcome.welcome.session_id,
            f"web-{n}",
        )
    registered = await audit(hub_medic, "agent.register")
    assert sorted(entry.resource_id for entry in registered) == [agent_id(n) for n in range(20)]
    assert len({entry.actor for entry in registered}) == 1  # the fleet's key
    assert registered[0].actor.startswith("key:")
    async with hub_medic.db.sessions() as db:
        services = list(await db.scalars(select(Service.slug).where(Service.agent_id.is_not(None))))
    assert sorted(services) == sorted(f"agent-{agent_id(n)}" for n in range(20))
    assert len(await audit(hub_medic, "service.create")) == 20


async def test_a_refused_hello_in_a_batch_is_answered_alone_and_its_neighbours_are_welcomed(
    hub_medic: Medic, connect: Callable[..., FakeAgent]
) -> None:
    owner = connect()
    first = await owner.welcome()
    _, other_key = await hub_medic.keys.create(name="other", scopes=["agent"], actor=ME)
    writer = hub_medic.agents.hellos
    await hold(writer)
    before = connect()
    before.send(hello(agent_id(1)))
    thief = connect(other_key)
    thief.send(hello(AGENT_ID, hostname="evil"))  # another key claiming the owner's id
    after = connect()
    after.send(hello(agent_id(2)))
    await queued(writer, 3)
    await release(writer)
    code, details = await thief.ended()
    assert code == StatusCode.PERMISSION_DENIED
    assert "belongs to another API key" in details
    assert (await before.receive()).WhichOneof("body") == "welcome"
    assert (await after.receive()).WhichOneof("body") == "welcome"
    assert batches(hub_medic) == (2.0, 4.0)  # the owner's own Hello, then the batch of three
    # Nothing of the refused Hello was stored, and the owner's stream still speaks for it.
    row = await stored(hub_medic, AGENT_ID)
    assert row is not None
    assert (row.hostname, row.session_id, row.status) == ("web-1", first.session_id, "online")
    assert len(await audit(hub_medic, "agent.hello_refused")) == 1
    owner.heartbeat()
    assert await owner.quiet()
    await owner.close()


async def test_two_streams_of_one_agent_in_one_batch_the_later_wins_the_earlier_is_replaced(
    hub_medic: Medic, connect: Callable[..., FakeAgent]
) -> None:
    writer = hub_medic.agents.hellos
    await hold(writer)
    earlier = connect()
    earlier.send(hello(hostname="web-old"))
    await queued(writer, 1)
    later = connect()
    later.send(hello(hostname="web-new"))
    await queued(writer, 2)
    await release(writer)
    welcome = await later.receive()
    assert welcome.WhichOneof("body") == "welcome"
    code, details = await earlier.ended()
    assert code == StatusCode.ABORTED
    assert "replaced" in details
    await hub_medic.agents.settle()
    row = await stored(hub_medic, AGENT_ID)
    assert row is not None
    assert (row.status, row.session_id, row.hostname) == (
        "online",
        welcome.welcome.session_id,
        "web-new",
    )
    assert hub_medic.agents.session(AGENT_ID) is not None
    registered = await audit(hub_medic, "agent.register")
    assert [entry.after["hostname"] for entry in registered] == ["web-new"]  # type: ignore[index]
    later.heartbeat()
    assert await later.quiet()


class _Transport:
    async def write(self, message: object) -> None:
        """Nothing goes anywhere."""

    def interrupt(self) -> None:
        """Nothing to interrupt."""


def info(agent: str = AGENT_ID) -> AgentInfo:
    return AgentInfo(agent_id=agent, hostname="web-1", version="0.1.0", os="linux", arch="x86")


async def test_the_same_hello_twice_from_one_stream_in_one_batch_is_stored_once(
    hub_medic: Medic, agent_token: str
) -> None:
    writer = hub_medic.agents.hellos
    await hold(writer)
    key_id = agent_token.split("_")[1]
    session = Session(Actor(f"key:{key_id}"), _Transport())
    twice = [asyncio.create_task(writer.submit(session, info())) for _ in range(2)]
    await queued(writer, 2)
    await release(writer)
    outcomes = await asyncio.gather(*twice)
    assert all(isinstance(outcome, Stored) for outcome in outcomes)
    assert batches(hub_medic) == (1.0, 2.0)
    row = await stored(hub_medic, AGENT_ID)
    assert row is not None and row.session_id == session.session_id
    assert len(await audit(hub_medic, "agent.register")) == 1
    # And the same two from different streams: the later one's.
    await hold(writer)
    older = Session(Actor(f"key:{key_id}"), _Transport())
    newer = Session(Actor(f"key:{key_id}"), _Transport())
    pair = [asyncio.create_task(writer.submit(s, info())) for s in (older, newer)]
    await queued(writer, 2)
    await release(writer)
    first, second = await asyncio.gather(*pair)
    assert isinstance(first, Replaced) and isinstance(second, Stored)
    row = await stored(hub_medic, AGENT_ID)
    assert row is not None and row.session_id == newer.session_id


# -- failures ------------------------------------------------------------------------------------


async def test_a_hello_that_cannot_be_stored_fails_alone_and_its_batch_is_retried_one_by_one(
    hub_medic: Medic, connect: Callable[..., FakeAgent], monkeypatch: pytest.MonkeyPatch
) -> None:
    bad = agent_id(66)
    apply = HelloWriter._apply

    def broken(self: HelloWriter, agent: Agent, item: Any, now: Any) -> None:
        if item.info.agent_id == bad:
            raise RuntimeError("a corrupt row")
        apply(self, agent, item, now)

    monkeypatch.setattr(HelloWriter, "_apply", broken)
    writer = hub_medic.agents.hellos
    await hold(writer)
    agents = [connect() for _ in range(3)]
    for agent, n in zip(agents, (1, 66, 2), strict=True):
        agent.send(hello(agent_id(n)))
    await queued(writer, 3)
    await release(writer)
    assert (await agents[0].receive()).WhichOneof("body") == "welcome"
    assert (await agents[2].receive()).WhichOneof("body") == "welcome"
    code, details = await agents[1].ended()
    assert code == StatusCode.INTERNAL
    assert "could not be stored" in details
    assert batches(hub_medic) == (2.0, 2.0)  # the batch failed; the two good ones alone
    assert await stored(hub_medic, bad) is None
    for n in (1, 2):
        row = await stored(hub_medic, agent_id(n))
        assert row is not None and row.status == "online"


async def test_the_database_unreachable_ends_hello_streams_unavailable_until_it_is_back(
    hub_medic: Medic, connect: Callable[..., FakeAgent]
) -> None:
    broken = True

    def unreachable(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        if broken and "FROM agents" in statement:
            raise sqlite3.OperationalError("unable to open database file")

    engine = hub_medic.db.engine.sync_engine
    writer = hub_medic.agents.hellos
    await hold(writer)
    first, second = connect(), connect()
    first.send(hello(agent_id(1)))
    second.send(hello(agent_id(2)))
    await queued(writer, 2)
    event.listen(engine, "before_cursor_execute", unreachable)
    try:
        await release(writer)
        for agent in (first, second):
            code, details = await agent.ended()
            assert code == StatusCode.UNAVAILABLE
            assert "database is unreachable" in details
        rejected = sample(hub_medic, "medic_agent_hellos_rejected_total", reason="db_unavailable")
        assert rejected == 2.0
        # For a short back-off, Hellos are refused at once, without a try.
        third = connect()
        third.send(hello(agent_id(3)))
        code, _ = await third.ended()
        assert code == StatusCode.UNAVAILABLE
        broken = False
        # The agent reconnects (with back-off): once the database answers, it is welcomed.
        welcomed: list[FakeAgent] = []

        async def back() -> bool:
            agent = connect()
            agent.send(hello(agent_id(1)))
            message = await agent.inbox.get()
            if isinstance(message, BaseException | None):
                return False
            welcomed.append(agent)
            return True

        await eventually(back)
    finally:
        event.remove(engine, "before_cursor_execute", unreachable)
    row = await stored(hub_medic, agent_id(1))
    assert row is not None and row.status == "online"
    assert await stored(hub_medic, agent_id(2)) is None


async def test_a_full_hello_queue_refuses_at_once_unavailable_and_counts_it(
    db_url: str, tmp_path: Path, clock: FakeClock
) -> None:
    settings = make_settings(db_url, tmp_path, grpc_port=free_port(), agent_hello_queue=1)
    app = Medic(settings, clock=clock)
    await app.start(monitor=False)
    try:
        assert app.agent_endpoint is not None
        _, token = await app.keys.create(name="fleet", scopes=["agent"], actor=ME)
        async with grpc.aio.insecure_channel(f"127.0.0.1:{app.agent_endpoint.port}") as channel:
            writer = app.agents.hellos
            await hold(writer)
            waiting = FakeAgent(channel, token)
            waiting.send(hello(agent_id(1)))
            await queued(writer, 1)
            refused = FakeAgent(channel, token)
            refused.send(hello(agent_id(2)))
            code, details = await refused.ended()
            assert code == StatusCode.UNAVAILABLE
            assert "1 Hellos are waiting to be stored" in details
            assert sample(app, "medic_agent_hellos_rejected_total", reason="queue_full") == 1.0
            await release(writer)
            assert (await waiting.receive()).WhichOneof("body") == "welcome"
            await waiting.close()
    finally:
        await app.stop()


# -- a fleet reconnecting ------------------------------------------------------------------------


async def registered_offline(
    medic: Medic, connect: Callable[..., FakeAgent], fleet: list[str]
) -> None:
    """Each agent of ``fleet`` says Hello once and leaves: known, and offline."""
    for agent in fleet:
        stream = connect()
        await stream.welcome(hello(agent))
        await stream.close()

    async def all_offline() -> bool:
        rows = [await stored(medic, agent) for agent in fleet]
        return all(row is not None and row.status == "offline" for row in rows)

    await eventually(all_offline)


async def test_a_fleet_reconnecting_in_one_batch_resolves_its_offline_alerts(
    hub_medic: Medic, connect: Callable[..., FakeAgent], clock: FakeClock
) -> None:
    fleet = [agent_id(n) for n in range(5)]
    await registered_offline(hub_medic, connect, fleet)
    clock.advance(121)
    assert (await hub_medic.agents.run_once()).alerted == 5
    writer = hub_medic.agents.hellos
    await hold(writer)
    streams = [connect() for _ in fleet]
    for stream, agent in zip(streams, fleet, strict=True):
        stream.send(hello(agent))
    await queued(writer, 5)
    await release(writer)
    for stream in streams:
        assert (await stream.receive()).WhichOneof("body") == "welcome"
    assert batches(hub_medic)[0] == 6.0  # five registrations, then the one batch
    page = await hub_medic.alerts.list(cause="agent_offline")
    assert [(a["state"], a["resolution"]) for a in page.items] == [
        ("resolved", "agent back online")
    ] * 5
    assert all(a["resolved_by"].startswith("key:") for a in page.items)


async def test_only_agents_with_unfinished_executions_get_a_replay_and_nobody_probes_alone(
    hub_medic: Medic, connect: Callable[..., FakeAgent]
) -> None:
    fleet = [AGENT_ID] + [agent_id(n) for n in range(5)]
    await registered_offline(hub_medic, connect, fleet)
    created = await hub_medic.agents.execute(
        AGENT_ID, RESTART["script"], RESTART["args"], {}, None, ME
    )
    writer = hub_medic.agents.hellos
    await hold(writer)
    streams = [connect() for _ in fleet]
    for stream, agent in zip(streams, fleet, strict=True):
        stream.send(hello(agent))
    await queued(writer, len(fleet))
    with statements(hub_medic, "FROM executions") as reads:
        await release(writer)
        for stream in streams:
            assert (await stream.receive()).WhichOneof("body") == "welcome"
        assert (await streams[0].execute()).execution_id == created["id"]
    # One probe for the whole batch, and the replay of the one agent that is owed something:
    # not a query per Welcome.
    assert len(reads) == 2
    for stream in streams[1:]:
        assert await stream.quiet()


# -- streams ending together ---------------------------------------------------------------------


async def test_streams_ending_together_are_recorded_offline_together(
    hub_medic: Medic, connect: Callable[..., FakeAgent]
) -> None:
    fleet = [agent_id(n) for n in range(20)]
    streams = [connect() for _ in fleet]
    for stream, agent in zip(streams, fleet, strict=True):
        await stream.welcome(hello(agent))
    with statements(hub_medic, "UPDATE agents SET status") as marks:
        await asyncio.gather(*(stream.close() for stream in streams))
        await hub_medic.agents.settle()
    for agent in fleet:
        row = await stored(hub_medic, agent)
        assert row is not None and (row.status, row.session_id) == ("offline", None)
    # Not a transaction per stream: the first mark is written at once, the rest together.
    assert 1 <= len(marks) <= 3


async def test_an_offline_mark_of_a_replaced_stream_changes_nothing(
    hub_medic: Medic, connect: Callable[..., FakeAgent]
) -> None:
    stream = connect()
    await stream.welcome()
    await hub_medic.agents.settle()
    # Another replica took the agent over meanwhile: the row names a session this one lacks.
    async with hub_medic.db.transaction() as db:
        await db.execute(
            update(Agent).where(Agent.agent_id == AGENT_ID).values(session_id="elsewhere")
        )
    await stream.close()
    await hub_medic.agents.settle()
    row = await stored(hub_medic, AGENT_ID)
    assert row is not None and (row.status, row.session_id) == ("online", "elsewhere")


# -- the transport -------------------------------------------------------------------------------


async def test_a_burst_of_calls_is_answered_not_cancelled_by_grpc(
    hub_medic: Medic, channel: grpc.aio.Channel
) -> None:
    """grpc core cancelled calls arriving faster than the servicer took them, past 1,000 (at
    random up to 3,000): a fleet reconnecting at once was cancelled by the thousand."""
    from medic_core.server.grpc.proto import agent_pb2_grpc

    stub = agent_pb2_grpc.AgentServiceStub(channel)

    async def call() -> StatusCode:
        try:
            async for _ in stub.Connect(iter(())):  # no key: refused at once
                pass
        except grpc.aio.AioRpcError as exc:
            return exc.code()
        return StatusCode.OK

    codes = await asyncio.gather(*(call() for _ in range(3000)))
    # Every call is answered by the servicer: refused for its missing key, or, past this source's
    # budget of failed authentications, refused before any lookup -- never cancelled by grpc.
    assert set(codes) <= {StatusCode.UNAUTHENTICATED, StatusCode.RESOURCE_EXHAUSTED}
    assert StatusCode.UNAUTHENTICATED in codes
