"""Executions through the real gRPC endpoint and the REST API, on both databases.

A scripted agent speaks ``medic.agent.v1`` to the endpoint ``Medic`` starts on a free port; the
requests are checked by the real allowlist verifier (the ``medic_allowlist`` bindings). What is
proven: dispatch and the whole happy path with output; refusals (allowlist, kill switch,
malformed requests); redelivery after reconnects and the agent's memory window; idempotent
updates and chunks; the ``lost`` rule; cancel in every state; lists, scopes, events, audit and
metrics.
"""

from __future__ import annotations

import asyncio
import base64
import json
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import grpc
import pytest
from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy import select, update

from conftest import auth, make_settings
from medic_core.app import Medic
from medic_core.audit import Actor
from medic_core.clock import FakeClock, isoformat
from medic_core.events import Event
from medic_core.server.grpc.proto import agent_pb2, agent_pb2_grpc
from medic_core.server.http.app import build_app
from medic_core.store.models import Agent, AuditEntry, Execution, ExecutionOutput

ME = Actor("test")
AGENT_ID = "0b6f3f0e-4c55-4a51-9f3e-2f5d1c7c9a10"
OTHER_ID = "7d0c2a8e-1111-4b7a-8c3e-55aa0c0ffee0"
RESTART_SHA = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
ROTATE_SHA = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
SECRET = "s3cr3t-token-value"
S = agent_pb2.ExecutionState

ALLOWLIST = agent_pb2.AllowlistSummary(
    sha256="ab" * 32,
    scripts=[
        agent_pb2.ScriptRules(
            name="restart-service",
            sha256=RESTART_SHA,
            args=[
                agent_pb2.ArgumentRule(fixed="--graceful"),
                agent_pb2.ArgumentRule(one_of=agent_pb2.ValueSet(values=["nginx", "php-fpm"])),
            ],
            rest=agent_pb2.RestArguments(
                rule=agent_pb2.ArgumentRule(
                    pattern=agent_pb2.Pattern(regex="[a-z0-9-]{1,32}", max_len=32)
                ),
                max_count=2,
            ),
            env=["LOG_LEVEL", "API_TOKEN"],
            timeout_seconds=120,
        ),
        agent_pb2.ScriptRules(name="rotate-logs", sha256=ROTATE_SHA, timeout_seconds=300),
    ],
)
RESTART = {"script": "restart-service", "args": ["--graceful", "nginx"]}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def hello(agent_id: str = AGENT_ID, **extra: Any) -> agent_pb2.AgentMessage:
    fields: dict[str, Any] = {
        "agent_id": agent_id,
        "hostname": "web-1",
        "agent_version": "0.1.0",
        "os": "linux",
        "arch": "x86_64",
        "allowlist": ALLOWLIST,
    }
    fields.update(extra)
    return agent_pb2.AgentMessage(hello=agent_pb2.Hello(**fields))


class FakeAgent:
    """One stream of an agent: the test sends what the agent would and reads what it gets."""

    def __init__(self, channel: grpc.aio.Channel, token: str) -> None:
        self._outgoing: asyncio.Queue[agent_pb2.AgentMessage | None] = asyncio.Queue()
        self.inbox: asyncio.Queue[agent_pb2.ServerMessage | BaseException | None] = asyncio.Queue()
        stub = agent_pb2_grpc.AgentServiceStub(channel)
        self.call = stub.Connect(self._requests(), metadata=(("authorization", f"Bearer {token}"),))
        self.reader = asyncio.create_task(self._read())

    async def _requests(self) -> AsyncIterator[agent_pb2.AgentMessage]:
        while (message := await self._outgoing.get()) is not None:
            yield message

    async def _read(self) -> None:
        try:
            while (message := await self.call.read()) is not grpc.aio.EOF:
                self.inbox.put_nowait(message)
            self.inbox.put_nowait(None)
        except BaseException as exc:  # the call ended with a status, or was cancelled
            self.inbox.put_nowait(exc)

    def send(self, message: agent_pb2.AgentMessage) -> None:
        self._outgoing.put_nowait(message)

    async def receive(self) -> agent_pb2.ServerMessage:
        async with asyncio.timeout(10):
            message = await self.inbox.get()
        assert isinstance(message, agent_pb2.ServerMessage), message
        return message

    async def execute(self) -> agent_pb2.Execute:
        message = await self.receive()
        assert message.WhichOneof("body") == "execute", message
        return message.execute

    async def cancel(self) -> agent_pb2.Cancel:
        message = await self.receive()
        assert message.WhichOneof("body") == "cancel", message
        return message.cancel

    async def welcome(self, message: agent_pb2.AgentMessage | None = None) -> agent_pb2.Welcome:
        self.send(message or hello())
        answer = await self.receive()
        assert answer.WhichOneof("body") == "welcome"
        return answer.welcome

    def update(self, execution_id: str, state: int, **fields: Any) -> None:
        self.send(
            agent_pb2.AgentMessage(
                execution_update=agent_pb2.ExecutionUpdate(
                    execution_id=execution_id, state=state, **fields
                )
            )
        )

    def chunk(
        self,
        execution_id: str,
        sequence: int,
        data: bytes,
        *,
        stderr: bool = False,
        truncated: bool = False,
    ) -> None:
        stream = agent_pb2.OUTPUT_STREAM_STDERR if stderr else agent_pb2.OUTPUT_STREAM_STDOUT
        self.send(
            agent_pb2.AgentMessage(
                output_chunk=agent_pb2.OutputChunk(
                    execution_id=execution_id,
                    stream=stream,
                    sequence=sequence,
                    data=data,
                    truncated=truncated,
                )
            )
        )

    def heartbeat(self, *running: str) -> None:
        self.send(
            agent_pb2.AgentMessage(
                heartbeat=agent_pb2.Heartbeat(running_execution_ids=list(running))
            )
        )

    async def ended(self) -> tuple[grpc.StatusCode, str]:
        """The status the server ended the call with (skipping what it sent before)."""
        async with asyncio.timeout(10):
            while True:
                item = await self.inbox.get()
                if isinstance(item, grpc.aio.AioRpcError):
                    return item.code(), item.details() or ""
                assert not isinstance(item, BaseException | None), item

    async def close(self) -> None:
        """Half-close our side and wait for the server to end the call."""
        self._outgoing.put_nowait(None)
        async with asyncio.timeout(10):
            await self.reader

    async def quiet(self) -> bool:
        """Nothing arrived (give the server a moment to send anything it would)."""
        await asyncio.sleep(0.2)
        return self.inbox.empty()


async def eventually(check: Callable[[], Awaitable[bool]], timeout: float = 10.0) -> None:
    async with asyncio.timeout(timeout):
        while not await check():
            await asyncio.sleep(0.02)


@pytest.fixture
async def hub_medic(db_url: str, tmp_path: Path, clock: FakeClock) -> AsyncIterator[Medic]:
    app = Medic(make_settings(db_url, tmp_path, grpc_port=free_port()), clock=clock)
    await app.start(monitor=False)
    try:
        yield app
    finally:
        await app.stop()


@pytest.fixture
async def channel(hub_medic: Medic) -> AsyncIterator[grpc.aio.Channel]:
    assert hub_medic.agent_endpoint is not None
    async with grpc.aio.insecure_channel(f"127.0.0.1:{hub_medic.agent_endpoint.port}") as ch:
        yield ch


@pytest.fixture
async def connect(
    hub_medic: Medic, channel: grpc.aio.Channel
) -> AsyncIterator[Callable[[], FakeAgent]]:
    _, token = await hub_medic.keys.create(name="agents", scopes=["agent"], actor=ME)
    agents: list[FakeAgent] = []

    def make() -> FakeAgent:
        agents.append(FakeAgent(channel, token))
        return agents[-1]

    yield make
    for agent in agents:
        agent.reader.cancel()
    await asyncio.gather(*(a.reader for a in agents), return_exceptions=True)


@pytest.fixture
async def rest(hub_medic: Medic) -> AsyncIterator[TestClient[Any, Any]]:
    async with TestClient(TestServer(build_app(hub_medic))) as client:
        yield client


@pytest.fixture
async def admin(hub_medic: Medic) -> dict[str, str]:
    _, token = await hub_medic.keys.create(name="admin", scopes=["admin"], actor=ME)
    return auth(token)


@pytest.fixture
async def events(hub_medic: Medic) -> list[Event]:
    seen: list[Event] = []

    async def record(event: Event) -> None:
        if event.type.startswith("execution."):
            seen.append(event)

    hub_medic.bus.subscribe("test-executions", record)
    return seen


async def online(agent: FakeAgent, message: agent_pb2.AgentMessage | None = None) -> FakeAgent:
    await agent.welcome(message)
    return agent


async def offline(hub_medic: Medic, connect: Callable[[], FakeAgent]) -> None:
    """Register the agent, then leave: it is known and offline."""
    agent = await online(connect())
    await agent.close()

    async def gone() -> bool:
        return (await hub_medic.agents.get(AGENT_ID))["status"] == "offline"

    await eventually(gone)


async def post(
    rest: TestClient[Any, Any],
    headers: dict[str, str],
    body: dict[str, Any],
    agent_id: str = AGENT_ID,
) -> Any:
    return await rest.post(f"/api/v1/agents/{agent_id}/executions", json=body, headers=headers)


async def dispatch(
    rest: TestClient[Any, Any], headers: dict[str, str], body: dict[str, Any] | None = None
) -> dict[str, Any]:
    response = await post(rest, headers, body or RESTART)
    assert response.status == 201, await response.text()
    return dict(await response.json())


async def state_of(medic: Medic, execution_id: str) -> dict[str, Any]:
    return dict(await medic.agents.executions.get(execution_id))


async def reaches(medic: Medic, execution_id: str, state: str) -> dict[str, Any]:
    async def check() -> bool:
        return (await state_of(medic, execution_id))["state"] == state

    await eventually(check)
    return await state_of(medic, execution_id)


async def audit(medic: Medic, action_prefix: str = "execution.") -> list[AuditEntry]:
    async with medic.db.sessions() as session:
        rows = await session.scalars(
            select(AuditEntry)
            .where(AuditEntry.action.startswith(action_prefix))
            .order_by(AuditEntry.id)
        )
        return list(rows)


def metric(medic: Medic, name: str, **labels: str) -> float:
    return medic.metrics.registry.get_sample_value(name, labels) or 0.0


# -- dispatch, the happy path ----------------------------------------------------------------


async def test_dispatch_runs_to_success_and_the_output_is_served(
    hub_medic: Medic,
    connect: Callable[[], FakeAgent],
    rest: TestClient[Any, Any],
    admin: dict[str, str],
    events: list[Event],
    clock: FakeClock,
) -> None:
    agent = await online(connect())
    created = await dispatch(
        rest,
        admin,
        {
            **RESTART,
            "args": ["--graceful", "nginx", "eu-west-1"],
            "env": {"API_TOKEN": SECRET},
            "timeout_seconds": 60,
        },
    )
    assert created["delivery"] == "sent"
    assert created["state"] == "pending"
    assert created["env"] == {"API_TOKEN": "********"}
    assert created["expected_sha256"] == RESTART_SHA
    assert created["requested_by"].startswith("key:")
    assert created["sent_count"] == 1
    execute = await agent.execute()
    assert execute.execution_id == created["id"]
    assert (execute.script, list(execute.args)) == (
        "restart-service",
        ["--graceful", "nginx", "eu-west-1"],
    )
    assert dict(execute.env) == {"API_TOKEN": SECRET}
    assert execute.timeout_seconds == 60
    assert execute.expected_sha256 == RESTART_SHA

    eid = created["id"]
    agent.update(eid, S.EXECUTION_STATE_ACCEPTED)
    await reaches(hub_medic, eid, "accepted")
    agent.update(eid, S.EXECUTION_STATE_RUNNING)
    agent.chunk(eid, 0, b"restarting nginx\n")
    agent.chunk(eid, 1, b"warning: slow\n", stderr=True)
    agent.chunk(eid, 2, b"done \xff\n")
    clock.advance(3)
    agent.update(eid, S.EXECUTION_STATE_SUCCEEDED, exit_code=0, output_chunks=3, duration_ms=2500)
    done = await reaches(hub_medic, eid, "succeeded")
    assert done["finished_at"] == isoformat(clock.now())

    response = await rest.get(f"/api/v1/executions/{eid}", headers=admin)
    assert response.status == 200
    body = await response.json()
    assert (body["exit_code"], body["duration_ms"], body["output_chunks"]) == (0, 2500, 3)
    assert body["output_complete"] is True
    assert body["output"] == {
        "encoding": "text",
        "stdout": "restarting nginx\ndone \ufffd\n",
        "stderr": "warning: slow\n",
        "chunks_received": 3,
    }
    assert body["env"] == {"API_TOKEN": "********"}
    raw = await (await rest.get(f"/api/v1/executions/{eid}?output=raw", headers=admin)).json()
    assert raw["output"]["encoding"] == "base64"
    assert base64.b64decode(raw["output"]["stdout"]) == b"restarting nginx\ndone \xff\n"
    bad = await rest.get(f"/api/v1/executions/{eid}?output=hex", headers=admin)
    assert bad.status == 422

    # The secret is gone from storage once answered, and never reached the audit log or events.
    async with hub_medic.db.sessions() as session:
        stored = await session.scalar(select(Execution).where(Execution.execution_id == eid))
    assert stored is not None and stored.env_values is None and stored.env_names == ["API_TOKEN"]
    entries = await audit(hub_medic)
    assert [e.action for e in entries] == ["execution.request", "execution.finish"]
    assert entries[0].actor.startswith("key:") and entries[1].actor.startswith("key:")
    assert entries[0].after is not None and entries[0].after["agent_id"] == AGENT_ID
    assert entries[1].after is not None and entries[1].after["state"] == "succeeded"
    assert SECRET not in json.dumps([(e.before, e.after) for e in entries])

    await hub_medic.bus.drain()
    assert SECRET not in json.dumps([e.data for e in events], default=str)
    kinds = [e.type for e in events]
    assert kinds[0] == "execution.created"
    assert kinds.count("execution.output") == 3
    assert [e.data["execution"]["state"] for e in events if e.type == "execution.updated"] == [
        "accepted",
        "running",
        "succeeded",
    ]
    outputs = [e.data for e in events if e.type == "execution.output"]
    assert outputs[1] == {
        "execution_id": eid,
        "agent_id": AGENT_ID,
        "sequence": 1,
        "stream": "stderr",
        "data": "warning: slow\n",
        "truncated": False,
    }
    assert metric(hub_medic, "medic_agent_executions_total", result="succeeded") == 1


async def test_a_final_state_without_every_chunk_reads_incomplete(
    hub_medic: Medic,
    connect: Callable[[], FakeAgent],
    rest: TestClient[Any, Any],
    admin: dict[str, str],
) -> None:
    agent = await online(connect())
    eid = (await dispatch(rest, admin))["id"]
    await agent.execute()
    agent.chunk(eid, 0, b"a")
    agent.chunk(eid, 2, b"c", truncated=True)
    agent.update(
        eid,
        S.EXECUTION_STATE_FAILED,
        exit_code=3,
        output_chunks=3,
        output_truncated=True,
        duration_ms=10,
    )
    body = await reaches(hub_medic, eid, "failed")
    assert body["output_complete"] is False
    assert body["output_truncated"] is True
    assert body["output"]["chunks_received"] == 2


# -- refusals and validation ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("request_body", "reason"),
    [
        ({"script": "reboot"}, "not_allowlisted"),
        ({**RESTART, "args": ["--graceful", "apache"]}, "arg_not_allowed"),
        ({**RESTART, "args": ["--graceful"]}, "missing_args"),
        ({**RESTART, "args": ["--graceful", "nginx", "a", "b", "c"]}, "too_many_args"),
        ({**RESTART, "env": {"LD_PRELOAD": "/tmp/x.so"}}, "env_not_allowed"),
        ({**RESTART, "timeout_seconds": 121}, "timeout_too_long"),
    ],
)
async def test_a_request_the_allowlist_refuses_is_422_with_its_reason_and_never_sent(
    hub_medic: Medic,
    connect: Callable[[], FakeAgent],
    rest: TestClient[Any, Any],
    admin: dict[str, str],
    request_body: dict[str, Any],
    reason: str,
) -> None:
    agent = await online(connect())
    response = await post(rest, admin, request_body)
    assert response.status == 422, await response.text()
    assert response.content_type == "application/problem+json"
    problem = await response.json()
    assert problem["reason"] == reason
    assert problem["title"] == "Refused by the agent's allowlist"
    assert reason in problem["detail"]
    assert "/tmp/x.so" not in problem["detail"]
    assert (await hub_medic.agents.executions.list()).items == []
    entries = await audit(hub_medic)
    assert [(e.action, e.resource_type, e.resource_id) for e in entries] == [
        ("execution.refuse", "agent", AGENT_ID)
    ]
    assert entries[0].after is not None and entries[0].after["reason"] == reason
    assert metric(hub_medic, "medic_agent_execution_refusals_total", reason=reason) == 1
    # Nothing went out: the next message the agent gets is the next accepted request's.
    sentinel = await dispatch(rest, admin)
    assert (await agent.execute()).execution_id == sentinel["id"]


async def test_an_allowlist_the_server_cannot_read_refuses_everything(
    hub_medic: Medic,
    connect: Callable[[], FakeAgent],
    rest: TestClient[Any, Any],
    admin: dict[str, str],
) -> None:
    # A Hello with such a summary is refused now (test_agent_protocol_limits.py); an agent
    # stored before that check still has one.
    await online(connect())
    broken = {"sha256": "ab" * 32, "scripts": [{"name": "x", "sha256": "not-a-hash"}]}
    async with hub_medic.db.transaction() as session:
        await session.execute(
            update(Agent).where(Agent.agent_id == AGENT_ID).values(allowlist=broken)
        )
    response = await post(rest, admin, {"script": "x"})
    assert response.status == 422
    problem = await response.json()
    assert problem["reason"] == "allowlist_unavailable"
    assert "invalid_sha256" in problem["detail"]


async def test_a_paused_agent_refuses_with_409_and_the_refusal_is_audited(
    hub_medic: Medic,
    connect: Callable[[], FakeAgent],
    rest: TestClient[Any, Any],
    admin: dict[str, str],
) -> None:
    await online(connect(), hello(executions_paused=True, paused_reason="disk replacement"))
    response = await post(rest, admin, RESTART)
    assert response.status == 409
    problem = await response.json()
    assert problem["reason"] == "paused"
    assert "kill switch" in problem["detail"] and "disk replacement" in problem["detail"]
    assert [e.action for e in await audit(hub_medic)] == ["execution.refuse"]
    assert metric(hub_medic, "medic_agent_execution_refusals_total", reason="paused") == 1


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "script"),
        ({"script": 7}, "script"),
        ({"script": "x" * 65}, "script"),
        ({**RESTART, "args": "--graceful nginx"}, "args"),
        ({**RESTART, "args": ["a"] * 65}, "args"),
        ({**RESTART, "args": ["--graceful", 3]}, "args[1]"),
        ({**RESTART, "args": ["--graceful", "é" * 2049]}, "args[1]"),
        ({**RESTART, "env": ["LOG_LEVEL"]}, "env"),
        ({**RESTART, "env": {f"V{i}": "x" for i in range(33)}}, "env"),
        ({**RESTART, "env": {"1BAD": "x"}}, "env"),
        ({**RESTART, "env": {"LOG_LEVEL": 3}}, "env.LOG_LEVEL"),
        ({**RESTART, "timeout_seconds": 0}, "timeout_seconds"),
        ({**RESTART, "timeout_seconds": True}, "timeout_seconds"),
        ({**RESTART, "timeout_seconds": "60"}, "timeout_seconds"),
        ({**RESTART, "wait": False}, "wait"),
    ],
)
async def test_a_malformed_request_is_refused_naming_the_field(
    hub_medic: Medic,
    connect: Callable[[], FakeAgent],
    rest: TestClient[Any, Any],
    admin: dict[str, str],
    body: dict[str, Any],
    field: str,
) -> None:
    await online(connect())
    response = await post(rest, admin, body)
    assert response.status == 422, await response.text()
    problem = await response.json()
    assert problem["field"] == field
    assert "reason" not in problem
    assert await audit(hub_medic) == []


async def test_an_unknown_agent_is_404_and_a_body_that_is_not_json_400(
    rest: TestClient[Any, Any], admin: dict[str, str]
) -> None:
    assert (await post(rest, admin, RESTART, agent_id=OTHER_ID)).status == 404
    response = await rest.post(
        f"/api/v1/agents/{AGENT_ID}/executions",
        data=b"{",
        headers={**admin, "Content-Type": "application/json"},
    )
    assert response.status == 400


# -- delivery: offline agents, reconnects, the memory window -------------------------------------


async def test_an_execution_for_an_offline_agent_waits_and_is_sent_when_it_connects(
    hub_medic: Medic,
    connect: Callable[[], FakeAgent],
    rest: TestClient[Any, Any],
    admin: dict[str, str],
) -> None:
    await offline(hub_medic, connect)
    created = await dispatch(rest, admin, {**RESTART, "env": {"LOG_LEVEL": "debug"}})
    assert (created["delivery"], created["state"], created["sent_count"]) == (
        "queued",
        "pending",
        0,
    )
    agent = await online(connect())
    execute = await agent.execute()
    assert execute.execution_id == created["id"]
    assert dict(execute.env) == {"LOG_LEVEL": "debug"}
    assert execute.timeout_seconds == 0  # the allowlist entry's own
    stored = await state_of(hub_medic, created["id"])
    assert stored["sent_count"] == 1 and stored["last_sent_at"] is not None


async def test_unanswered_executions_are_resent_after_a_reconnect_and_replays_are_no_ops(
    hub_medic: Medic,
    connect: Callable[[], FakeAgent],
    rest: TestClient[Any, Any],
    admin: dict[str, str],
    events: list[Event],
) -> None:
    first = await online(connect())
    eid = (await dispatch(rest, admin))["id"]
    await first.execute()
    await first.close()  # the stream broke before the agent answered
    second = await online(connect())
    assert (await second.execute()).execution_id == eid  # re-sent
    assert (await state_of(hub_medic, eid))["sent_count"] == 2
    second.update(eid, S.EXECUTION_STATE_ACCEPTED)
    second.update(eid, S.EXECUTION_STATE_RUNNING)
    second.update(eid, S.EXECUTION_STATE_SUCCEEDED, exit_code=0, duration_ms=5)
    await reaches(hub_medic, eid, "succeeded")
    await second.close()

    third = await online(connect())
    # Answered: never sent again. The agent replays its final update (twice, even): no-ops.
    third.update(eid, S.EXECUTION_STATE_SUCCEEDED, exit_code=0, duration_ms=5)
    third.update(eid, S.EXECUTION_STATE_RUNNING)
    third.update(eid, S.EXECUTION_STATE_FAILED, exit_code=1)
    sentinel = await dispatch(rest, admin)
    assert (await third.execute()).execution_id == sentinel["id"]
    third.update(sentinel["id"], S.EXECUTION_STATE_REJECTED, reason="too_many_running")
    await reaches(hub_medic, sentinel["id"], "rejected")  # so every replay was handled

    final = await state_of(hub_medic, eid)
    assert (final["state"], final["exit_code"], final["sent_count"]) == ("succeeded", 0, 2)
    finishes = [e.after for e in await audit(hub_medic, "execution.finish") if e.resource_id == eid]
    assert finishes == [dict(finishes[0] or {}, state="succeeded")]
    await hub_medic.bus.drain()
    assert (
        sum(1 for e in events if e.type == "execution.updated" and e.data["execution"]["id"] == eid)
        == 3
    )
    assert metric(hub_medic, "medic_agent_executions_total", result="succeeded") == 1
    assert metric(hub_medic, "medic_agent_executions_total", result="rejected") == 1
    assert metric(hub_medic, "medic_agent_execution_refusals_total", reason="too_many_running") == 1


async def test_an_unanswered_execution_past_the_memory_window_fails_lost_instead_of_resent(
    hub_medic: Medic,
    connect: Callable[[], FakeAgent],
    rest: TestClient[Any, Any],
    admin: dict[str, str],
    clock: FakeClock,
) -> None:
    await offline(hub_medic, connect)
    old = (await dispatch(rest, admin))["id"]
    clock.advance(24 * 3600 - 60)
    recent = (await dispatch(rest, admin))["id"]
    clock.advance(61)
    agent = await online(connect())
    assert (await agent.execute()).execution_id == recent
    lost = await state_of(hub_medic, old)
    assert (lost["state"], lost["reason"]) == ("failed", "lost")
    assert "memory window" in lost["detail"]
    assert lost["output_complete"] is False and lost["output_chunks"] is None
    (entry,) = await audit(hub_medic, "execution.finish")
    assert (entry.actor, entry.resource_id) == ("system", old)
    assert metric(hub_medic, "medic_agent_executions_total", result="lost") == 1
    assert await agent.quiet()


# -- updates: idempotence, order, strangers ------------------------------------------------------


async def test_updates_only_move_forward_and_strangers_are_ignored(
    hub_medic: Medic,
    connect: Callable[[], FakeAgent],
    rest: TestClient[Any, Any],
    admin: dict[str, str],
) -> None:
    agent = await online(connect())
    eid = (await dispatch(rest, admin))["id"]
    await agent.execute()
    agent.update(eid, S.EXECUTION_STATE_RUNNING)
    await reaches(hub_medic, eid, "running")
    agent.update(eid, S.EXECUTION_STATE_ACCEPTED)  # stale
    agent.update(eid, S.EXECUTION_STATE_REJECTED, reason="paused")  # only from pending
    agent.update(eid, 42)  # a state this server does not know
    agent.update("not-an-execution", S.EXECUTION_STATE_SUCCEEDED)
    agent.update("x" * 100, S.EXECUTION_STATE_SUCCEEDED)
    agent.chunk("not-an-execution", 0, b"?")
    # Another agent cannot touch this agent's execution.
    other = await online(connect(), hello(OTHER_ID))
    other.update(eid, S.EXECUTION_STATE_FAILED, exit_code=9)
    other.chunk(eid, 0, b"intruder")
    other.heartbeat()
    agent.update(
        eid,
        S.EXECUTION_STATE_CANCELLED,
        reason="agent\x00stopped",
        detail="d" * 5000,
        signal=15,
        output_chunks=2**64 - 1,
        duration_ms=2**64 - 1,
    )
    body = await reaches(hub_medic, eid, "cancelled")
    assert body["reason"] == "agent\ufffdstopped"  # NUL cannot be stored: replaced
    assert len(body["detail"]) == 1000
    assert (body["signal"], body["exit_code"]) == (15, None)
    assert body["output_chunks"] == body["duration_ms"] == 2**63 - 1
    other.update(eid, S.EXECUTION_STATE_SUCCEEDED)
    other.heartbeat()
    await asyncio.sleep(0.1)
    assert (await state_of(hub_medic, eid))["state"] == "cancelled"
    assert (await state_of(hub_medic, eid))["output"]["chunks_received"] == 0
    # The streams survived all of it.
    assert (await hub_medic.agents.get(AGENT_ID))["status"] == "online"
    assert (await hub_medic.agents.get(OTHER_ID))["status"] == "online"


async def test_a_repeated_chunk_is_stored_once(
    hub_medic: Medic,
    connect: Callable[[], FakeAgent],
    rest: TestClient[Any, Any],
    admin: dict[str, str],
    events: list[Event],
) -> None:
    # Chunks the server refuses (oversized, empty, after the final state, past the output cap)
    # are in test_agent_protocol_limits.py.
    agent = await online(connect())
    eid = (await dispatch(rest, admin))["id"]
    await agent.execute()
    agent.chunk(eid, 0, b"first")
    agent.chunk(eid, 0, b"again")
    agent.chunk(eid, 1, b"x" * (16 * 1024))
    agent.update(eid, S.EXECUTION_STATE_SUCCEEDED, output_chunks=2)
    body = await reaches(hub_medic, eid, "succeeded")
    assert body["output"]["stdout"] == "first" + "x" * 16384
    assert body["output"]["chunks_received"] == 2
    assert body["output_bytes"] == 5 + 16384
    assert body["output_truncated"] is False
    assert body["output_complete"] is True
    async with hub_medic.db.sessions() as session:
        count = len(list(await session.scalars(select(ExecutionOutput.id))))
    assert count == 2
    await hub_medic.bus.drain()
    assert [e.data["sequence"] for e in events if e.type == "execution.output"] == [0, 1]


# -- the lost rule -------------------------------------------------------------------------------


async def test_the_first_heartbeat_after_a_welcome_fails_what_the_agent_lost(
    hub_medic: Medic,
    connect: Callable[[], FakeAgent],
    rest: TestClient[Any, Any],
    admin: dict[str, str],
) -> None:
    agent = await online(connect())
    ids = [(await dispatch(rest, admin))["id"] for _ in range(4)]
    lost, listed, mentioned, finished = ids
    for eid in ids:
        await agent.execute()
        agent.update(eid, S.EXECUTION_STATE_ACCEPTED)
        agent.update(eid, S.EXECUTION_STATE_RUNNING)
    for eid in ids:
        await reaches(hub_medic, eid, "running")
    await agent.close()

    again = await online(connect())
    again.update(mentioned, S.EXECUTION_STATE_RUNNING)  # replay: known, still going
    again.update(finished, S.EXECUTION_STATE_SUCCEEDED, exit_code=0)  # replay: finished
    again.heartbeat(listed)
    body = await reaches(hub_medic, lost, "failed")
    assert body["reason"] == "lost"
    assert "reconnected without it" in body["detail"]
    assert (await state_of(hub_medic, listed))["state"] == "running"
    assert (await state_of(hub_medic, mentioned))["state"] == "running"
    assert (await state_of(hub_medic, finished))["state"] == "succeeded"
    # Only the first heartbeat after a Welcome counts.
    again.heartbeat()
    sentinel = await dispatch(rest, admin)
    assert (await again.execute()).execution_id == sentinel["id"]
    again.update(sentinel["id"], S.EXECUTION_STATE_ACCEPTED)
    await reaches(hub_medic, sentinel["id"], "accepted")
    assert (await state_of(hub_medic, listed))["state"] == "running"
    # A Hello on the same stream is another Welcome: the rule applies again.
    await again.welcome(hello(labels={"edited": "yes"}))
    again.heartbeat(mentioned)
    body = await reaches(hub_medic, listed, "failed")
    assert body["reason"] == "lost"
    assert (await state_of(hub_medic, sentinel["id"]))["state"] == "failed"
    assert (await state_of(hub_medic, mentioned))["state"] == "running"
    assert metric(hub_medic, "medic_agent_executions_total", result="lost") == 3


# -- cancel --------------------------------------------------------------------------------------


async def cancel(rest: TestClient[Any, Any], headers: dict[str, str], eid: str) -> Any:
    return await rest.post(f"/api/v1/executions/{eid}/cancel", headers=headers)


async def test_cancelling_an_execution_never_sent_ends_it_at_once(
    hub_medic: Medic,
    connect: Callable[[], FakeAgent],
    rest: TestClient[Any, Any],
    admin: dict[str, str],
) -> None:
    await offline(hub_medic, connect)
    eid = (await dispatch(rest, admin))["id"]
    response = await cancel(rest, admin, eid)
    assert response.status == 200
    body = await response.json()
    assert (body["state"], body["reason"]) == ("cancelled", "cancelled_before_start")
    assert body["finished_at"] is not None and body["cancel_requested_at"] is None
    agent = await online(connect())
    assert await agent.quiet()  # neither Execute nor Cancel: the agent never heard of it
    entries = await audit(hub_medic, "execution.cancel")
    assert entries[0].before == {"state": "pending", "cancel_requested_at": None}
    assert entries[0].after is not None and entries[0].after["state"] == "cancelled"
    assert metric(hub_medic, "medic_agent_executions_total", result="cancelled") == 1
    assert (await cancel(rest, admin, eid)).status == 409


async def test_cancelling_a_sent_unanswered_execution_goes_through_the_agent(
    hub_medic: Medic,
    connect: Callable[[], FakeAgent],
    rest: TestClient[Any, Any],
    admin: dict[str, str],
) -> None:
    agent = await online(connect())
    eid = (await dispatch(rest, admin))["id"]
    await agent.execute()
    await agent.close()  # unanswered, and the Cancel cannot reach it now
    body = await (await cancel(rest, admin, eid)).json()
    assert body["state"] == "pending" and body["cancel_requested_at"] is not None
    again = await online(connect())
    message = await again.cancel()  # instead of the Execute
    assert message.execution_id == eid and "cancel" in message.reason
    assert await again.quiet()
    again.update(eid, S.EXECUTION_STATE_CANCELLED, reason="cancelled_before_start")
    body = await reaches(hub_medic, eid, "cancelled")
    assert body["reason"] == "cancelled_before_start"


async def test_cancelling_a_running_execution_sends_cancel_until_it_ends(
    hub_medic: Medic,
    connect: Callable[[], FakeAgent],
    rest: TestClient[Any, Any],
    admin: dict[str, str],
) -> None:
    agent = await online(connect())
    accepted = (await dispatch(rest, admin))["id"]
    running = (await dispatch(rest, admin))["id"]
    for eid in (accepted, running):
        await agent.execute()
    agent.update(accepted, S.EXECUTION_STATE_ACCEPTED)
    agent.update(running, S.EXECUTION_STATE_ACCEPTED)
    agent.update(running, S.EXECUTION_STATE_RUNNING)
    await reaches(hub_medic, accepted, "accepted")
    await reaches(hub_medic, running, "running")

    for eid in (accepted, running):
        response = await cancel(rest, admin, eid)
        assert response.status == 200
        assert (await agent.cancel()).execution_id == eid
    first_request = (await state_of(hub_medic, running))["cancel_requested_at"]
    assert (await cancel(rest, admin, running)).status == 200  # again: sent again
    assert (await agent.cancel()).execution_id == running
    assert (await state_of(hub_medic, running))["cancel_requested_at"] == first_request

    agent.update(accepted, S.EXECUTION_STATE_CANCELLED)
    await reaches(hub_medic, accepted, "cancelled")
    await agent.close()
    again = await online(connect())
    assert (await again.cancel()).execution_id == running  # still running: asked again
    again.update(running, S.EXECUTION_STATE_CANCELLED, signal=15, duration_ms=900)
    body = await reaches(hub_medic, running, "cancelled")
    assert body["signal"] == 15
    assert (await cancel(rest, admin, running)).status == 409
    assert [e.action for e in await audit(hub_medic, "execution.cancel")] == [
        "execution.cancel"
    ] * 3


async def test_cancel_of_an_unknown_execution_is_404_and_needs_admin(
    hub_medic: Medic,
    connect: Callable[[], FakeAgent],
    rest: TestClient[Any, Any],
    admin: dict[str, str],
) -> None:
    assert (await cancel(rest, admin, "no-such-execution")).status == 404
    assert (await rest.get("/api/v1/executions/" + "x" * 100, headers=admin)).status == 404
    await online(connect())
    eid = (await dispatch(rest, admin))["id"]
    _, writer = await hub_medic.keys.create(name="writer", scopes=["write"], actor=ME)
    assert (await cancel(rest, auth(writer), eid)).status == 403
    assert (await post(rest, auth(writer), RESTART)).status == 403
    _, reader = await hub_medic.keys.create(name="reader", scopes=["read"], actor=ME)
    assert (await rest.get(f"/api/v1/executions/{eid}", headers=auth(reader))).status == 200


# -- lists ---------------------------------------------------------------------------------------


async def test_lists_are_newest_first_filtered_and_cursor_paged(
    hub_medic: Medic,
    connect: Callable[[], FakeAgent],
    rest: TestClient[Any, Any],
    admin: dict[str, str],
) -> None:
    agent = await online(connect())
    await online(connect(), hello(OTHER_ID))
    ours = [(await dispatch(rest, admin))["id"] for _ in range(3)]
    response = await post(rest, admin, RESTART, agent_id=OTHER_ID)
    theirs = (await response.json())["id"]
    for _ in ours:
        await agent.execute()
    agent.update(ours[0], S.EXECUTION_STATE_ACCEPTED)
    await reaches(hub_medic, ours[0], "accepted")

    async def ids(path: str) -> tuple[list[str], str | None]:
        response = await rest.get(path, headers=admin)
        assert response.status == 200, await response.text()
        body = await response.json()
        assert "output" not in (body["items"] or [{}])[0]
        return [item["id"] for item in body["items"]], body["next_cursor"]

    assert (await ids("/api/v1/executions"))[0] == [theirs, *reversed(ours)]
    assert (await ids(f"/api/v1/executions?agent={OTHER_ID}"))[0] == [theirs]
    assert (await ids("/api/v1/executions?state=accepted"))[0] == [ours[0]]
    assert (await ids(f"/api/v1/agents/{AGENT_ID}/executions?state=pending"))[0] == [
        ours[2],
        ours[1],
    ]
    page, cursor = await ids(f"/api/v1/agents/{AGENT_ID}/executions?limit=2")
    assert page == [ours[2], ours[1]] and cursor is not None
    page, cursor = await ids(f"/api/v1/agents/{AGENT_ID}/executions?limit=2&cursor={cursor}")
    assert page == [ours[0]] and cursor is None

    for bad in (
        "/api/v1/executions?state=sleeping",
        "/api/v1/executions?limit=0",
        "/api/v1/executions?cursor=nonsense",
    ):
        assert (await rest.get(bad, headers=admin)).status == 422, bad
    missing = await rest.get(
        "/api/v1/agents/7d0c2a8e-0000-4b7a-8c3e-55aa0c0ffee0/executions", headers=admin
    )
    assert missing.status == 404


async def test_a_heartbeat_listing_every_held_execution_loses_nothing(
    hub_medic: Medic,
    connect: Callable[[], FakeAgent],
    rest: TestClient[Any, Any],
    admin: dict[str, str],
) -> None:
    agent = await online(connect())
    eid = (await dispatch(rest, admin))["id"]
    await agent.execute()
    agent.update(eid, S.EXECUTION_STATE_RUNNING)
    await reaches(hub_medic, eid, "running")
    await agent.close()
    again = await online(connect())
    again.heartbeat(eid)
    again.heartbeat()  # not the first any more: changes nothing either
    sentinel = await dispatch(rest, admin)
    assert (await again.execute()).execution_id == sentinel["id"]
    again.update(sentinel["id"], S.EXECUTION_STATE_ACCEPTED)
    await reaches(hub_medic, sentinel["id"], "accepted")
    assert (await state_of(hub_medic, eid))["state"] == "running"


async def test_an_execution_cancelled_before_its_first_send_is_never_sent(
    hub_medic: Medic, connect: Callable[[], FakeAgent]
) -> None:
    """The race a dispatch loses when a cancel lands between its commit and its send."""
    agent = await online(connect())
    session = hub_medic.agents.session(AGENT_ID)
    assert session is not None
    session.welcomed = False  # as if the agent were between its Hello and its Welcome
    created = await hub_medic.agents.execute(
        AGENT_ID, "restart-service", ["--graceful", "nginx"], {}, None, ME
    )
    assert (created["delivery"], created["requested_by"]) == ("queued", "test")
    session.welcomed = True
    cancelled = await hub_medic.agents.executions.cancel(created["id"], actor=ME)
    assert cancelled["state"] == "cancelled"
    async with hub_medic.db.sessions() as db:
        row = await db.scalar(select(Execution).where(Execution.execution_id == created["id"]))
    assert row is not None
    row.state = "pending"  # the dispatch's stale view of its row
    assert await hub_medic.agents.executions.queue.send_first(row) is False
    assert await agent.quiet()
