"""The binding of agent ids to keys across replicas, on both databases: two ``Medic``s on one
database, each with its own gRPC endpoint (as in test_agent_replicas.py).

What is proven: a key cannot take an agent id through a replica that does not hold the agent's
stream (the check is in the database, not in a replica's memory), and an agent revoked or
re-assigned through one replica loses its stream on the other.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

import grpc
import pytest
from test_agent_executions import AGENT_ID, ME, FakeAgent, eventually, hello
from test_agent_replicas import Replicas, replicas

from medic_core.app import Medic

__all__ = ["replicas"]  # the fixture, imported for pytest


Connect = Callable[[Medic, str], FakeAgent]


@pytest.fixture
async def connect_to(replicas: Replicas) -> AsyncIterator[tuple[Connect, dict[str, str]]]:
    """Open a stream to a replica with the key named ``owner`` or ``other``."""
    tokens: dict[str, str] = {}
    ids: dict[str, str] = {}
    for name in ("owner", "other"):
        key, tokens[name] = await replicas[0].keys.create(name=name, scopes=["agent"], actor=ME)
        ids[name] = key.key_id
    channels: list[grpc.aio.Channel] = []
    agents: list[FakeAgent] = []

    def make(medic: Medic, key: str) -> FakeAgent:
        assert medic.agent_endpoint is not None
        channels.append(grpc.aio.insecure_channel(f"127.0.0.1:{medic.agent_endpoint.port}"))
        agents.append(FakeAgent(channels[-1], tokens[key]))
        return agents[-1]

    yield make, ids
    for agent in agents:
        agent.reader.cancel()
    await asyncio.gather(*(a.reader for a in agents), return_exceptions=True)
    for channel in channels:
        await channel.close()


async def test_another_key_cannot_take_the_agent_id_through_another_replica(
    replicas: Replicas, connect_to: tuple[Connect, dict[str, str]]
) -> None:
    a, b = replicas
    connect, _ = connect_to
    agent = connect(a, "owner")
    welcome = await agent.welcome()
    impostor = connect(b, "other")
    impostor.send(hello(hostname="evil-1"))
    assert (await impostor.ended())[0] == grpc.StatusCode.PERMISSION_DENIED
    stored = await b.agents.get(AGENT_ID)
    assert (stored["session_id"], stored["hostname"]) == (welcome.session_id, "web-1")
    # The agent's stream on a is untouched: its heartbeats still hold.
    agent.heartbeat()
    await a.agents.flush_seen()
    assert await agent.quiet()
    assert a.agents.session(AGENT_ID) is not None
    # Its executions, requested on b, go to it through a.
    created = await b.agents.execute(
        AGENT_ID, "restart-service", ["--graceful", "nginx"], {}, None, ME
    )
    assert await a.agents.dispatch_once() == (1, False)
    assert (await agent.execute()).execution_id == created["id"]


@pytest.mark.parametrize("action", ["revoke", "reassign"])
async def test_an_agent_revoked_or_reassigned_on_one_replica_loses_its_stream_on_the_other(
    replicas: Replicas, connect_to: tuple[Connect, dict[str, str]], action: str
) -> None:
    a, b = replicas
    connect, ids = connect_to
    agent = connect(a, "owner")
    await agent.welcome()
    if action == "revoke":
        await b.agents.enrollment.revoke(AGENT_ID, actor=ME)
    else:
        await b.agents.enrollment.reassign(AGENT_ID, ids["other"], actor=ME)
    # Nothing more is sent on it: the request stored on b is owed to no stream of a.
    if action == "reassign":
        await b.agents.execute(AGENT_ID, "restart-service", ["--graceful", "nginx"], {}, None, ME)
        assert await a.agents.dispatch_once() == (0, False)
    # The next thing the stream says ends it; it reconnects, and is refused.
    agent.heartbeat()

    async def flushed() -> bool:
        await a.agents.flush_seen()
        return a.agents.session(AGENT_ID) is None

    await eventually(flushed)
    assert (await agent.ended())[0] == grpc.StatusCode.UNAVAILABLE
    again = connect(a, "owner")
    again.send(hello())
    assert (await again.ended())[0] == grpc.StatusCode.PERMISSION_DENIED
    if action == "reassign":
        await connect(a, "other").welcome()
        assert (await a.agents.get(AGENT_ID))["status"] == "online"
