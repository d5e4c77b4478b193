"""Hello batches of two replicas on one database, on both databases (as in
test_agent_replicas.py): the same fleet saying Hello to both at the same moment, in opposite
orders.

What is proven: the two batches never deadlock or fail (the agents are locked in ``agent_id``
order, whatever order their Hellos arrived in), each is one transaction, every Hello is
answered, and each agent ends online on exactly one of its two streams; two replicas
registering the same new agents at once both answer every Hello too (the one that loses the
insert race tries again and finds the rows).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from sqlalchemy import select
from test_agent_executions import FakeAgent, eventually, hello
from test_agent_hello_batches import agent_id, batches, hold, queued, release
from test_agent_replicas import Replicas, connect_to, replicas

from medic_core.app import Medic
from medic_core.store.models import Agent

__all__ = ["connect_to", "replicas"]  # the fixtures, imported for pytest

FLEET = [agent_id(n) for n in range(20)]


async def sessions(medic: Medic) -> dict[str, tuple[str, str | None]]:
    async with medic.db.sessions() as db:
        rows = await db.execute(select(Agent.agent_id, Agent.status, Agent.session_id))
        return {row.agent_id: (row.status, row.session_id) for row in rows}


async def both_at_once(
    replicas: Replicas, connect_to: Callable[[Medic], FakeAgent]
) -> tuple[list[str], list[str]]:
    """The fleet says Hello to ``a`` in one order and to ``b`` in the other, both batches
    released together; returns the session ids each replica welcomed."""
    a, b = replicas
    for medic in replicas:
        await hold(medic.agents.hellos)
    on_a = [connect_to(a) for _ in FLEET]
    on_b = [connect_to(b) for _ in FLEET]
    for stream, agent in zip(on_a, FLEET, strict=True):
        stream.send(hello(agent))
    for stream, agent in zip(on_b, reversed(FLEET), strict=True):
        stream.send(hello(agent))
    await queued(a.agents.hellos, len(FLEET))
    await queued(b.agents.hellos, len(FLEET))
    await asyncio.gather(release(a.agents.hellos), release(b.agents.hellos))
    welcomed: list[list[str]] = []
    for streams in (on_a, on_b):
        ids = []
        for stream in streams:
            message = await stream.receive()
            assert message.WhichOneof("body") == "welcome", message
            ids.append(message.welcome.session_id)
        welcomed.append(ids)
    return welcomed[0], welcomed[1]


async def test_two_replicas_storing_the_same_fleet_at_once_never_deadlock(
    replicas: Replicas, connect_to: Callable[[Medic], FakeAgent]
) -> None:
    a, b = replicas
    for agent in FLEET:  # known agents, offline: the reconnect after a restart
        stream = connect_to(a)
        await stream.welcome(hello(agent))
        await stream.close()

    async def all_offline() -> bool:
        return all(status == "offline" for status, _ in (await sessions(a)).values())

    await eventually(all_offline)
    before = batches(a), batches(b)
    on_a, on_b = await both_at_once(replicas, connect_to)
    # One batch each, not retried one by one (a deadlock would have failed one of them).
    assert batches(a) == (before[0][0] + 1, before[0][1] + len(FLEET))
    assert batches(b) == (before[1][0] + 1, before[1][1] + len(FLEET))
    stored = await sessions(a)
    for n, agent in enumerate(FLEET):
        status, session = stored[agent]
        assert status == "online"
        assert session in (on_a[n], on_b[len(FLEET) - 1 - n])


async def test_two_replicas_registering_the_same_new_agents_at_once_answer_every_hello(
    replicas: Replicas, connect_to: Callable[[Medic], FakeAgent]
) -> None:
    a, _ = replicas
    on_a, on_b = await both_at_once(replicas, connect_to)
    stored = await sessions(a)
    assert sorted(stored) == sorted(FLEET)
    for n, agent in enumerate(FLEET):
        status, session = stored[agent]
        assert status == "online"
        assert session in (on_a[n], on_b[len(FLEET) - 1 - n])
