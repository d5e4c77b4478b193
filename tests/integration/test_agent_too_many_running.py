"""``too_many_running`` and the capacity an agent advertises, on both databases (an agent's
stream on replica ``a``, requests through ``b``: the fixture of
``test_agent_capacity_replicas.py``).

What is proven: from an agent that advertises its capacity, ``too_many_running`` hands the
execution back -- ``pending``, sent again once its back-off (1 s, doubling) has passed, counted
-- and only past ``MEDIC_AGENT_BUSY_RETRIES`` refusals does it end ``rejected``, so an agent
refusing for ever cannot keep an execution coming back; from an older agent (which remembers the
refusal) it is final at once, and such an agent is sent at most 16 at once (the agent's
default); a capacity out of bounds refuses the ``Hello``.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import grpc
import pytest
from sqlalchemy import func, select
from test_agent_capacity_replicas import Start, request, rows, settled, start
from test_agent_executions import (
    AGENT_ID,
    ME,
    FakeAgent,
    S,
    eventually,
    free_port,
    hello,
    metric,
)

from conftest import make_settings
from medic_core.app import Medic
from medic_core.clock import FakeClock
from medic_core.store.models import Agent, Execution

__all__ = ["start"]  # the fixture, imported for pytest

REQUEUES = "medic_agent_execution_requeues_total"


def refuse(agent: FakeAgent, execution_id: str) -> None:
    agent.update(
        execution_id,
        S.EXECUTION_STATE_REJECTED,
        reason="too_many_running",
        detail="2 executions are running, the limit is 2",
    )


async def the_row(medic: Medic) -> Execution:
    (row,) = await rows(medic)
    return row


async def test_a_refused_execution_goes_back_to_the_queue_until_the_bound_then_is_rejected(
    start: Start, clock: FakeClock
) -> None:
    a, b, agent = await start(2, interval=3600.0, agent_busy_retries=2)
    eid = await request(b)
    assert await a.agents.dispatch_once() == (1, False)
    for refusals, delay in ((1, 1.0), (2, 2.0)):
        assert (await agent.execute()).execution_id == eid
        refuse(agent, eid)

        async def handed_back(count: int = refusals) -> bool:
            return (await the_row(b)).capacity_refusals == count

        await eventually(handed_back)
        row = await the_row(b)
        assert (row.state, row.last_sent_at, row.finished_at) == ("pending", None, None)
        assert row.send_after == clock.now() + timedelta(seconds=delay)
        assert metric(a, REQUEUES) == refusals
        # Not before its back-off has passed; then it goes out again (by this pass, or by the
        # one the refusal woke if that runs later: once either way, as sent_count shows).
        assert await a.agents.dispatch_once() == (0, False)
        clock.advance(delay)
        await a.agents.dispatch_once()
    assert (await agent.execute()).execution_id == eid
    refuse(agent, eid)
    (row,) = await settled(b)
    assert (row.state, row.reason, row.sent_count) == ("rejected", "too_many_running", 3)
    assert row.detail is not None and row.detail.startswith("refused 3 times")
    assert "MEDIC_AGENT_BUSY_RETRIES is 2" in row.detail
    assert metric(a, REQUEUES) == 2
    assert await a.agents.dispatch_once() == (0, False)
    assert await agent.quiet()


async def test_a_refusal_from_an_agent_that_does_not_advertise_its_capacity_is_final(
    start: Start,
) -> None:
    a, b, agent = await start(0, interval=3600.0)
    assert (await b.agents.get(AGENT_ID))["max_concurrent_executions"] is None
    ids = [await request(b) for _ in range(17)]
    # Such an agent is assumed to run 16 at once, the agent's default.
    assert await a.agents.dispatch_once() == (16, False)
    received = [(await agent.execute()).execution_id for _ in range(16)]
    assert received == ids[:16]
    assert await agent.quiet()
    refuse(agent, ids[0])

    async def rejected() -> bool:
        return (await rows(b))[0].state == "rejected"

    await eventually(rejected)
    assert metric(a, REQUEUES) == 0
    # Its slot is free: the 17th goes out (the final answer woke the dispatch pass).
    assert (await agent.execute()).execution_id == ids[16]
    assert await agent.quiet()


async def test_a_refusal_of_an_execution_being_cancelled_ends_it(start: Start) -> None:
    a, b, agent = await start(2, interval=3600.0)
    eid = await request(b)
    assert await a.agents.dispatch_once() == (1, False)
    assert (await agent.execute()).execution_id == eid
    await b.agents.executions.cancel(eid, actor=ME)
    refuse(agent, eid)
    (row,) = await settled(b)
    assert (row.state, row.reason, row.capacity_refusals) == ("rejected", "too_many_running", 0)
    assert metric(a, REQUEUES) == 0


@pytest.mark.parametrize("capacity", [1025, 2**32 - 1])
async def test_a_capacity_out_of_bounds_refuses_the_hello(
    db_url: str, tmp_path: Path, clock: FakeClock, capacity: int
) -> None:
    medic = Medic(make_settings(db_url, tmp_path, grpc_port=free_port()), clock=clock)
    await medic.start(monitor=False)
    _, token = await medic.keys.create(name="agents", scopes=["agent"], actor=ME)
    assert medic.agent_endpoint is not None
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{medic.agent_endpoint.port}")
    agent = FakeAgent(channel, token)
    try:
        agent.send(hello(max_concurrent_executions=capacity))
        status, details = await agent.ended()
        assert status == grpc.StatusCode.INVALID_ARGUMENT
        assert details.startswith("invalid_hello:") and "max_concurrent_executions" in details
        async with medic.db.sessions() as db:
            assert await db.scalar(select(func.count()).select_from(Agent)) == 0
    finally:
        agent.reader.cancel()
        await channel.close()
        await medic.stop()
