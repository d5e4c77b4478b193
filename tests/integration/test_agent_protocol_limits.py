"""What an agent's stream may send, bounded by the server, on both databases
(``medic_core/agent/limits.py``; the table is docs/agent-protocol.md, "Limits").

A crafted agent (the generated stubs over a real channel to the real endpoint) sends what an
honest agent never would: output past the per-execution cap, output after its final state,
oversized, empty and unstorable chunks, Hellos with a malformed allowlist summary. Each is
refused as the table says (the stream ends ``INVALID_ARGUMENT`` naming the reason, or the
message is dropped and the stream goes on), counted, and ``GET /api/v1/executions/{id}`` stays
bounded and honest about completeness.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import grpc
import pytest
from sqlalchemy import func, select
from test_agent_executions import (
    AGENT_ID,
    ALLOWLIST,
    ME,
    RESTART,
    FakeAgent,
    S,
    eventually,
    free_port,
    hello,
)

from conftest import make_settings
from medic_core.agent.execution_requests import ExecutionRefused
from medic_core.app import Medic
from medic_core.clock import FakeClock
from medic_core.server.grpc.proto import agent_pb2
from medic_core.store.models import ExecutionOutput

StatusCode = grpc.StatusCode
KIB16 = 16 * 1024
CAP = 2 * KIB16  # a small cap, so the test sends little


@pytest.fixture
async def hub_medic(db_url: str, tmp_path: Path, clock: FakeClock) -> AsyncIterator[Medic]:
    settings = make_settings(db_url, tmp_path, grpc_port=free_port(), agent_max_output_bytes=CAP)
    app = Medic(settings, clock=clock)
    await app.start(monitor=False)
    try:
        yield app
    finally:
        await app.stop()


@pytest.fixture
async def connect(hub_medic: Medic) -> AsyncIterator[Callable[[], FakeAgent]]:
    assert hub_medic.agent_endpoint is not None
    _, token = await hub_medic.keys.create(name="agents", scopes=["agent"], actor=ME)
    agents: list[FakeAgent] = []
    async with grpc.aio.insecure_channel(f"127.0.0.1:{hub_medic.agent_endpoint.port}") as ch:

        def make() -> FakeAgent:
            agents.append(FakeAgent(ch, token))
            return agents[-1]

        yield make
        for agent in agents:
            agent.reader.cancel()
        await asyncio.gather(*(a.reader for a in agents), return_exceptions=True)


def refusals(medic: Medic, reason: str) -> float:
    value = medic.metrics.registry.get_sample_value(
        "medic_agent_protocol_refusals_total", {"reason": reason}
    )
    return value or 0.0


async def running(medic: Medic, connect: Callable[[], FakeAgent]) -> tuple[FakeAgent, str]:
    """An agent with one execution it accepted and runs."""
    agent = connect()
    await agent.welcome()
    created = await medic.agents.execute(AGENT_ID, RESTART["script"], RESTART["args"], {}, None, ME)
    await agent.execute()
    agent.update(created["id"], S.EXECUTION_STATE_ACCEPTED)
    agent.update(created["id"], S.EXECUTION_STATE_RUNNING)
    return agent, str(created["id"])


async def reaches(medic: Medic, execution_id: str, state: str) -> dict[str, Any]:
    async def check() -> bool:
        return (await medic.agents.executions.get(execution_id))["state"] == state

    await eventually(check)
    return dict(await medic.agents.executions.get(execution_id))


async def chunk_rows(medic: Medic) -> int:
    async with medic.db.sessions() as session:
        return int(await session.scalar(select(func.count(ExecutionOutput.id))) or 0)


# -- output --------------------------------------------------------------------------------------


async def test_output_past_the_cap_is_dropped_and_the_output_reads_truncated(
    hub_medic: Medic, connect: Callable[[], FakeAgent]
) -> None:
    agent, eid = await running(hub_medic, connect)
    for sequence in range(5):
        agent.chunk(eid, sequence, bytes([65 + sequence]) * KIB16)
    agent.heartbeat(eid)  # the stream goes on: the next message is handled too
    agent.update(eid, S.EXECUTION_STATE_SUCCEEDED, exit_code=0, output_chunks=5)
    body = await reaches(hub_medic, eid, "succeeded")
    assert body["output"]["stdout"] == "A" * KIB16 + "B" * KIB16
    assert body["output_bytes"] == CAP
    assert body["output"]["chunks_received"] == 2
    assert body["output_truncated"] is True
    assert body["output_complete"] is False
    assert refusals(hub_medic, "output_cap") == 3
    assert await chunk_rows(hub_medic) == 2
    assert (await hub_medic.agents.get(AGENT_ID))["status"] == "online"


async def test_output_after_the_final_state_ends_the_stream_and_is_not_stored(
    hub_medic: Medic, connect: Callable[[], FakeAgent]
) -> None:
    agent, eid = await running(hub_medic, connect)
    agent.chunk(eid, 0, b"done\n")
    agent.update(eid, S.EXECUTION_STATE_SUCCEEDED, exit_code=0, output_chunks=1)
    agent.chunk(eid, 1, b"x" * KIB16)
    code, details = await agent.ended()
    assert code == StatusCode.INVALID_ARGUMENT, details
    assert details.startswith("after_final:") and eid in details
    body = await reaches(hub_medic, eid, "succeeded")
    assert body["output"]["stdout"] == "done\n"
    assert (body["output_bytes"], body["output_complete"]) == (5, True)
    assert await chunk_rows(hub_medic) == 1
    assert refusals(hub_medic, "after_final") == 1
    await hub_medic.agents.settle()
    assert (await hub_medic.agents.get(AGENT_ID))["status"] == "offline"


async def test_a_flood_of_output_after_the_final_state_stores_nothing(
    hub_medic: Medic, connect: Callable[[], FakeAgent]
) -> None:
    """The attack as it was seen: 832 x 16 KiB after SUCCEEDED (all were stored before).

    The status is not asserted here: when the server ends a call while the client is still
    flooding it, grpc's client may report its own INTERNAL ("Internal error from Core") instead
    of the server's INVALID_ARGUMENT (the test above pins the status with one chunk).
    """
    agent, eid = await running(hub_medic, connect)
    agent.chunk(eid, 0, b"done\n")
    agent.update(eid, S.EXECUTION_STATE_SUCCEEDED, exit_code=0, output_chunks=1)
    for sequence in range(1, 833):
        agent.chunk(eid, sequence, b"x" * KIB16)
    await agent.ended()
    body = await reaches(hub_medic, eid, "succeeded")
    assert body["output"]["stdout"] == "done\n"
    assert (body["output_bytes"], body["output_complete"]) == (5, True)
    assert await chunk_rows(hub_medic) == 1
    assert refusals(hub_medic, "after_final") == 1


@pytest.mark.parametrize(
    ("data", "sequence", "reason"),
    [
        (b"x" * (KIB16 + 1), 0, "chunk_too_large"),
        (b"", 0, "empty_chunk"),
        (b"x", 2**63, "bad_sequence"),
    ],
)
async def test_a_chunk_no_agent_would_send_ends_the_stream_and_nothing_is_stored(
    hub_medic: Medic,
    connect: Callable[[], FakeAgent],
    data: bytes,
    sequence: int,
    reason: str,
) -> None:
    agent, eid = await running(hub_medic, connect)
    agent.chunk(eid, sequence, data)
    code, details = await agent.ended()
    assert code == StatusCode.INVALID_ARGUMENT
    assert details.startswith(f"{reason}:")
    assert refusals(hub_medic, reason) == 1
    assert await chunk_rows(hub_medic) == 0
    assert (await hub_medic.agents.executions.get(eid))["output_bytes"] == 0


async def test_an_update_contradicting_a_final_state_is_dropped_but_the_stream_goes_on(
    hub_medic: Medic, connect: Callable[[], FakeAgent]
) -> None:
    agent, eid = await running(hub_medic, connect)
    agent.update(eid, S.EXECUTION_STATE_SUCCEEDED, exit_code=0)
    await reaches(hub_medic, eid, "succeeded")
    agent.update(eid, S.EXECUTION_STATE_SUCCEEDED, exit_code=0)  # a replay: fine
    agent.update(eid, S.EXECUTION_STATE_FAILED, reason="agent_stopped")  # a journal lost a write
    agent.update("not-an-execution", S.EXECUTION_STATE_SUCCEEDED)
    agent.update(eid, 42)  # a state from a newer protocol

    async def counted() -> bool:
        return refusals(hub_medic, "unknown_state") == 1

    await eventually(counted)
    assert refusals(hub_medic, "update_after_final") == 1
    assert refusals(hub_medic, "unknown_execution") == 1
    body = await hub_medic.agents.executions.get(eid)
    assert (body["state"], body["reason"]) == ("succeeded", None)
    agent.heartbeat()
    assert await agent.quiet()  # still open: nothing ended it
    assert hub_medic.agents.session(AGENT_ID) is not None


async def test_output_for_an_execution_the_server_failed_is_dropped_and_the_stream_goes_on(
    hub_medic: Medic, connect: Callable[[], FakeAgent]
) -> None:
    agent, eid = await running(hub_medic, connect)
    await agent.close()
    # The agent came back without mentioning it: lost (the script may still run on the host).
    again = connect()
    await again.welcome()
    again.heartbeat()
    await reaches(hub_medic, eid, "failed")
    again.chunk(eid, 0, b"late output")
    again.update(eid, S.EXECUTION_STATE_SUCCEEDED, exit_code=0)

    async def counted() -> bool:
        return refusals(hub_medic, "closed_by_server") == 2

    await eventually(counted)
    body = await hub_medic.agents.executions.get(eid)
    assert (body["state"], body["reason"], body["output_bytes"]) == ("failed", "lost", 0)
    assert await again.quiet()


# -- Hello ---------------------------------------------------------------------------------------


def summary(file_sha: str = "ab" * 32, **script: Any) -> agent_pb2.AllowlistSummary:
    fields: dict[str, Any] = {"name": "restart-nginx", "sha256": "cd" * 32, "timeout_seconds": 30}
    fields.update(script)
    return agent_pb2.AllowlistSummary(sha256=file_sha, scripts=[agent_pb2.ScriptRules(**fields)])


@pytest.mark.parametrize(
    ("allowlist", "code"),
    [
        (summary("zz"), "invalid_sha256"),
        (summary("AB" * 32), "invalid_sha256"),
        (summary(name="n" * 1000), "invalid_name"),
        (summary(sha256="not-a-hash"), "invalid_sha256"),
        (summary(timeout_seconds=0), "invalid_timeout"),
        (
            agent_pb2.AllowlistSummary(
                sha256="ab" * 32,
                scripts=[
                    agent_pb2.ScriptRules(name=f"s{n}", sha256="cd" * 32, timeout_seconds=1)
                    for n in range(1025)
                ],
            ),
            "too_many_scripts",
        ),
        (
            summary(
                args=[
                    agent_pb2.ArgumentRule(pattern=agent_pb2.Pattern(regex="(", max_len=8)),
                ]
            ),
            "invalid_pattern",
        ),
    ],
)
async def test_a_hello_with_a_malformed_allowlist_is_refused_before_anything_is_stored(
    hub_medic: Medic,
    connect: Callable[[], FakeAgent],
    allowlist: agent_pb2.AllowlistSummary,
    code: str,
) -> None:
    agent = connect()
    agent.send(hello(allowlist=allowlist))
    status, details = await agent.ended()
    assert status == StatusCode.INVALID_ARGUMENT
    assert details.startswith("invalid_hello:") and f"({code})" in details
    assert len(details) < 400  # an over-long name is never echoed whole
    assert list((await hub_medic.agents.list()).items) == []
    assert refusals(hub_medic, "invalid_hello") == 1


async def test_an_older_agents_allowlist_with_a_newly_forbidden_name_stays_watched_but_unused(
    hub_medic: Medic, connect: Callable[[], FakeAgent]
) -> None:
    """Servers are upgraded before agents: an agent whose own (older) verifier allowed a name the
    server's now forbids is not disconnected (that would page for an upgrade); it stays online,
    and nothing is sent to it."""
    allowlist = summary(env=["HOME"])
    await connect().welcome(hello(allowlist=allowlist))
    stored = await hub_medic.agents.get(AGENT_ID)
    assert (stored["status"], stored["allowlist"]["sha256"]) == ("online", allowlist.sha256)
    with pytest.raises(ExecutionRefused) as refused:
        await hub_medic.agents.execute(AGENT_ID, "restart-nginx", [], {}, None, ME)
    assert refused.value.refusal.reason == "allowlist_unavailable"
    assert "forbidden_env_name" in refused.value.refusal.detail
    assert refusals(hub_medic, "invalid_hello") == 0
    # The failed compilation is remembered: a second agent with the same file costs nothing new.
    assert (
        await hub_medic.agents._verifier.check(stored["allowlist"], "x", [], {}, None)
    ) is not None


async def test_a_hello_is_validated_before_an_older_stream_is_replaced(
    hub_medic: Medic, connect: Callable[[], FakeAgent]
) -> None:
    first = connect()
    welcome = await first.welcome()
    bad = connect()
    bad.send(hello(allowlist=summary("zz")))
    assert (await bad.ended())[0] == StatusCode.INVALID_ARGUMENT
    stored = await hub_medic.agents.get(AGENT_ID)
    assert stored["session_id"] == welcome.session_id
    assert stored["allowlist"]["sha256"] == ALLOWLIST.sha256
    first.heartbeat()
    assert await first.quiet()


async def test_a_hello_whose_allowlist_cannot_be_checked_now_is_refused_unavailable(
    hub_medic: Medic, connect: Callable[[], FakeAgent]
) -> None:
    await connect().welcome()  # its allowlist is checked and cached
    hub_medic.agents._verifier._max_waiting = 0  # as if many were waiting their turn
    other = connect()
    other.send(hello(allowlist=summary("ef" * 32)))
    status, details = await other.ended()
    assert status == StatusCode.UNAVAILABLE and "try again later" in details
    assert refusals(hub_medic, "verifier_busy") == 1
    await connect().welcome()  # a known allowlist waits for nothing


async def test_a_hello_without_an_allowlist_is_welcomed(
    hub_medic: Medic, connect: Callable[[], FakeAgent]
) -> None:
    message = hello()
    message.hello.ClearField("allowlist")  # the agent could not load its allowlist
    await connect().welcome(message)
    assert (await hub_medic.agents.get(AGENT_ID))["status"] == "online"


async def test_without_the_verifier_bindings_an_agent_is_stored_without_its_allowlist(
    hub_medic: Medic, connect: Callable[[], FakeAgent], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "medic_allowlist", None)  # as if not installed
    await connect().welcome(hello(allowlist=summary(name="n" * 1000)))
    assert (await hub_medic.agents.get(AGENT_ID))["allowlist"] == {}


# -- containment ---------------------------------------------------------------------------------


async def test_containment_is_stored_for_the_agent_and_its_executions(
    hub_medic: Medic, connect: Callable[[], FakeAgent]
) -> None:
    agent = connect()
    await agent.welcome(hello(containment="cgroup"))
    assert (await hub_medic.agents.get(AGENT_ID))["containment"] == "cgroup"
    created = await hub_medic.agents.execute(
        AGENT_ID, RESTART["script"], RESTART["args"], {}, None, ME
    )
    await agent.execute()
    agent.update(created["id"], S.EXECUTION_STATE_RUNNING)
    agent.update(created["id"], S.EXECUTION_STATE_TIMED_OUT, signal=9, containment="cgroup")
    body = await reaches(hub_medic, created["id"], "timed_out")
    assert body["containment"] == "cgroup"
    # An older agent says nothing: null.
    await agent.welcome(hello())
    assert (await hub_medic.agents.get(AGENT_ID))["containment"] is None


async def test_an_unknown_containment_is_refused_in_a_hello_and_not_stored_from_an_update(
    hub_medic: Medic, connect: Callable[[], FakeAgent]
) -> None:
    bad = connect()
    bad.send(hello(containment="x" * 100))
    status, details = await bad.ended()
    assert status == StatusCode.INVALID_ARGUMENT and "containment" in details
    assert "x" * 33 not in details
    agent, eid = await running(hub_medic, connect)
    agent.update(eid, S.EXECUTION_STATE_SUCCEEDED, exit_code=0, containment="chroot")
    body = await reaches(hub_medic, eid, "succeeded")
    assert body["containment"] is None
    assert refusals(hub_medic, "unknown_containment") == 1


# -- the setting ---------------------------------------------------------------------------------


@pytest.mark.parametrize("value", [KIB16 - 1, 256 * 1024 * 1024 + 1])
def test_the_output_cap_setting_is_bounded(tmp_path: Path, value: int) -> None:
    settings = make_settings(f"sqlite:///{tmp_path}/m.db", tmp_path, agent_max_output_bytes=value)
    with pytest.raises(ValueError, match="MEDIC_AGENT_MAX_OUTPUT_BYTES"):
        Medic(settings)


def test_the_default_output_cap_is_the_agents(tmp_path: Path) -> None:
    """The agent's default cap is 1 MiB (agent-rs/medic-agent/src/config.rs): an honest agent
    with its defaults is never cut by the server."""
    config = (Path(__file__).parents[2] / "agent-rs/medic-agent/src/config.rs").read_text()
    assert "fn default_output_cap() -> u64 {\n    1024 * 1024\n}" in config
    settings = make_settings(f"sqlite:///{tmp_path}/m.db", tmp_path)
    assert settings.agent_max_output_bytes == 1024 * 1024
