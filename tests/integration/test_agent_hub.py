"""The agent hub through its real gRPC endpoint, on both databases.

A ``grpc.aio`` client speaks the protocol (``medic.agent.v1``) to the endpoint ``Medic`` starts
on a free port: authentication, Hello/Welcome, heartbeats, disconnects, replacement, the offline
watch and its ``agent_offline`` alert (stepped by hand with the fake clock), TLS and mutual TLS,
and the REST routes.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import grpc
import pytest
import trustme
from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy import event, select

from conftest import auth, make_settings
from medic_core.app import Medic
from medic_core.audit import Actor
from medic_core.clock import FakeClock, isoformat
from medic_core.server.grpc.endpoint import ServerTls
from medic_core.server.grpc.proto import agent_pb2, agent_pb2_grpc
from medic_core.server.http.app import build_app
from medic_core.store import Database
from medic_core.store.models import Agent, AuditEntry

ME = Actor("test")
AGENT_ID = "0b6f3f0e-4c55-4a51-9f3e-2f5d1c7c9a10"
OTHER_ID = "7d0c2a8e-1111-4b7a-8c3e-55aa0c0ffee0"
StatusCode = grpc.StatusCode


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
        "labels": {"env": "prod", "role": "web"},
        "allowlist": agent_pb2.AllowlistSummary(
            sha256="ab" * 32,
            scripts=[
                agent_pb2.ScriptRules(
                    name="restart-nginx",
                    sha256="cd" * 32,
                    args=[agent_pb2.ArgumentRule(one_of=agent_pb2.ValueSet(values=["a", "b"]))],
                    env=["LANG"],
                    timeout_seconds=30,
                )
            ],
        ),
    }
    fields.update(extra)
    return agent_pb2.AgentMessage(hello=agent_pb2.Hello(**fields))


HEARTBEAT = agent_pb2.AgentMessage(heartbeat=agent_pb2.Heartbeat())


class FakeAgent:
    """One stream of an agent, driven step by step by the test."""

    def __init__(self, channel: grpc.aio.Channel, token: str | None) -> None:
        self._outgoing: asyncio.Queue[agent_pb2.AgentMessage | None] = asyncio.Queue()
        metadata = (("authorization", f"Bearer {token}"),) if token is not None else ()
        stub = agent_pb2_grpc.AgentServiceStub(channel)
        self.call = stub.Connect(self._requests(), metadata=metadata)

    async def _requests(self) -> AsyncIterator[agent_pb2.AgentMessage]:
        while (message := await self._outgoing.get()) is not None:
            yield message

    def send(self, message: agent_pb2.AgentMessage) -> None:
        self._outgoing.put_nowait(message)

    async def receive(self) -> agent_pb2.ServerMessage:
        async with asyncio.timeout(10):
            message = await self.call.read()
        assert message is not grpc.aio.EOF
        return message

    async def welcome(self, message: agent_pb2.AgentMessage | None = None) -> agent_pb2.Welcome:
        self.send(message or hello())
        answer = await self.receive()
        assert answer.WhichOneof("body") == "welcome"
        return answer.welcome

    async def refused(self) -> tuple[StatusCode, str]:
        """The status the server ended the call with (the call must end with an error)."""
        with pytest.raises(grpc.aio.AioRpcError) as info:
            async with asyncio.timeout(10):
                while await self.call.read() is not grpc.aio.EOF:
                    pass
        return info.value.code(), info.value.details() or ""

    async def close(self) -> StatusCode:
        """Half-close our side; the server ends the call OK."""
        self._outgoing.put_nowait(None)
        async with asyncio.timeout(10):
            while await self.call.read() is not grpc.aio.EOF:
                pass
            return await self.call.code()


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
async def agent_token(hub_medic: Medic) -> str:
    _, token = await hub_medic.keys.create(name="agents", scopes=["agent"], actor=ME)
    return token


@pytest.fixture
def connect(channel: grpc.aio.Channel, agent_token: str) -> Callable[..., FakeAgent]:
    def make(token: str | None = agent_token) -> FakeAgent:
        return FakeAgent(channel, token)

    return make


async def status_of(medic: Medic, agent_id: str = AGENT_ID) -> str:
    return str((await medic.agents.get(agent_id))["status"])


async def offline_alerts(medic: Medic, agent_id: str = AGENT_ID) -> list[dict[str, Any]]:
    page = await medic.alerts.list(service=f"agent-{agent_id}", cause="agent_offline")
    return list(page.items)


# -- authentication ------------------------------------------------------------------------------


async def test_a_call_without_a_key_is_refused_unauthenticated(
    connect: Callable[..., FakeAgent],
) -> None:
    agent = connect(None)
    agent.send(hello())
    code, details = await agent.refused()
    assert code == StatusCode.UNAUTHENTICATED
    assert "agent scope" in details


async def test_malformed_unknown_and_revoked_keys_are_refused_unauthenticated(
    hub_medic: Medic, connect: Callable[..., FakeAgent]
) -> None:
    key, revoked = await hub_medic.keys.create(name="old", scopes=["agent"], actor=ME)
    await hub_medic.keys.revoke(key.id, actor=ME)
    for token in ("not-a-key", "medic_0123456789ab_" + "A" * 43, revoked):
        agent = connect(token)
        agent.send(hello())
        assert (await agent.refused())[0] == StatusCode.UNAUTHENTICATED, token
    assert list((await hub_medic.agents.list()).items) == []


@pytest.mark.parametrize("scope", ["admin", "write", "read", "heartbeat"])
async def test_a_key_without_the_agent_scope_is_refused_permission_denied(
    hub_medic: Medic, connect: Callable[..., FakeAgent], scope: str
) -> None:
    _, token = await hub_medic.keys.create(name=scope, scopes=[scope], actor=ME)
    agent = connect(token)
    agent.send(hello())
    code, details = await agent.refused()
    assert code == StatusCode.PERMISSION_DENIED
    assert "'agent' scope" in details


# -- hello, heartbeats, disconnects --------------------------------------------------------------


async def test_hello_stores_the_agent_online_and_answers_welcome(
    hub_medic: Medic, connect: Callable[..., FakeAgent], clock: FakeClock
) -> None:
    agent = connect()
    welcome = await agent.welcome()
    assert welcome.heartbeat_interval_seconds == 30
    assert welcome.server_version
    stored = await hub_medic.agents.get(AGENT_ID)
    assert stored["status"] == "online"
    assert stored["session_id"] == welcome.session_id
    assert stored["hostname"] == "web-1"
    assert stored["labels"] == {"env": "prod", "role": "web"}
    assert stored["last_seen"] == stored["connected_at"] == isoformat(clock.now())
    assert stored["allowlist"]["sha256"] == "ab" * 32
    script = stored["allowlist"]["scripts"][0]
    assert script["name"] == "restart-nginx"
    assert script["args"] == [{"one_of": {"values": ["a", "b"]}}]
    assert stored["service"] == f"agent-{AGENT_ID}"
    service = await hub_medic.services.get(f"agent-{AGENT_ID}")
    assert service["state"] == "new"  # an alert anchor: never heartbeated, never claimed
    assert service["tags"] == ["agent"]


async def test_a_first_hello_is_audited_and_an_allowlist_change_too(
    hub_medic: Medic, connect: Callable[..., FakeAgent]
) -> None:
    agent = connect()
    await agent.welcome()
    await agent.welcome(hello(allowlist=agent_pb2.AllowlistSummary(sha256="ef" * 32)))
    await agent.welcome(hello(allowlist=agent_pb2.AllowlistSummary(sha256="ef" * 32)))
    async with hub_medic.db.sessions() as session:
        rows = (
            await session.execute(
                select(AuditEntry.action, AuditEntry.actor, AuditEntry.after)
                .where(AuditEntry.resource_type == "agent")
                .order_by(AuditEntry.id)
            )
        ).all()
    assert [r.action for r in rows] == ["agent.register", "agent.update"]
    assert all(r.actor.startswith("key:") for r in rows)
    assert rows[1].after["allowlist_sha256"] == "ef" * 32


async def test_a_burst_of_hellos_does_not_run_a_watch_pass_per_agent(
    db_url: str, tmp_path: Path, clock: FakeClock
) -> None:
    app = Medic(make_settings(db_url, tmp_path, grpc_port=free_port()), clock=clock)
    await app.start(monitor=True)  # the watch runs by itself here
    watched: list[str] = []

    def count(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        if "min(agents.next_due)" in statement:  # how every watch pass ends
            watched.append(statement)

    event.listen(app.db.engine.sync_engine, "before_cursor_execute", count)
    try:
        assert app.agent_endpoint is not None
        _, token = await app.keys.create(name="agents", scopes=["agent"], actor=ME)
        async with grpc.aio.insecure_channel(f"127.0.0.1:{app.agent_endpoint.port}") as channel:
            agents = [FakeAgent(channel, token) for _ in range(20)]
            for n, agent in enumerate(agents):
                await agent.welcome(hello(f"00000000-0000-4000-8000-{n:012x}"))
            await app.agents.settle()
            # The watch runs in its own task: give it the moment a loaded machine may need.
            async with asyncio.timeout(10):
                while not watched:
                    await asyncio.sleep(0.01)
            # The first Hello gives the watch its first deadline; the later ones are later.
            assert 1 <= len(watched) <= 3
            for agent in agents:
                assert await agent.close() == StatusCode.OK
    finally:
        event.remove(app.db.engine.sync_engine, "before_cursor_execute", count)
        await app.stop()


async def test_heartbeats_of_many_agents_are_written_together(
    hub_medic: Medic, channel: grpc.aio.Channel, agent_token: str, clock: FakeClock
) -> None:
    agents = [FakeAgent(channel, agent_token) for _ in range(20)]
    for n, agent in enumerate(agents):
        await agent.welcome(hello(f"00000000-0000-4000-8000-{n:012x}"))
    writes: list[str] = []

    def count(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        if statement.startswith("UPDATE agents SET last_seen"):
            writes.append(statement)

    engine = hub_medic.db.engine.sync_engine
    event.listen(engine, "before_cursor_execute", count)
    try:
        clock.advance(30)
        for agent in agents:  # one heartbeat every 10 ms, over 0.2 s
            agent.send(HEARTBEAT)
            await asyncio.sleep(0.01)
        expected = isoformat(clock.now())

        async def all_seen() -> bool:
            bodies = [
                await hub_medic.agents.get(f"00000000-0000-4000-8000-{n:012x}") for n in range(20)
            ]
            return all(body["last_seen"] == expected for body in bodies)

        await eventually(all_seen)
        # Not a write per heartbeat: the first mark is written at once, the rest together.
        assert 1 <= len(writes) <= 3
    finally:
        event.remove(engine, "before_cursor_execute", count)
    for agent in agents:
        assert await agent.close() == StatusCode.OK


async def test_heartbeats_move_last_seen(
    hub_medic: Medic, connect: Callable[..., FakeAgent], clock: FakeClock
) -> None:
    agent = connect()
    await agent.welcome()
    for _ in range(3):
        clock.advance(30)
        agent.send(HEARTBEAT)
        expected = isoformat(clock.now())

        async def seen(expected: str | None = expected) -> bool:
            return (await hub_medic.agents.get(AGENT_ID))["last_seen"] == expected

        await eventually(seen)
    # Three intervals of silence are counted from the last heartbeat, not from the Hello.
    clock.advance(89)
    assert (await hub_medic.agents.run_once()).offline == 0
    assert await status_of(hub_medic) == "online"


async def test_closing_the_stream_marks_the_agent_offline(
    hub_medic: Medic, connect: Callable[..., FakeAgent], clock: FakeClock
) -> None:
    agent = connect()
    await agent.welcome()
    assert await agent.close() == StatusCode.OK

    async def offline() -> bool:
        return await status_of(hub_medic) == "offline"

    await eventually(offline)
    stored = await hub_medic.agents.get(AGENT_ID)
    assert stored["session_id"] is None
    assert stored["offline_since"] == isoformat(clock.now())


async def test_the_first_message_must_be_a_hello(connect: Callable[..., FakeAgent]) -> None:
    agent = connect()
    agent.send(HEARTBEAT)
    code, details = await agent.refused()
    assert code == StatusCode.FAILED_PRECONDITION
    assert "Hello" in details


async def test_a_stream_without_a_hello_within_the_silence_limit_is_ended(
    db_url: str, tmp_path: Path, clock: FakeClock
) -> None:
    settings = make_settings(
        db_url,
        tmp_path,
        grpc_port=free_port(),
        agent_heartbeat_interval=1,
        agent_missed_heartbeats=1,
    )
    app = Medic(settings, clock=clock)
    await app.start(monitor=False)
    try:
        assert app.agent_endpoint is not None
        _, token = await app.keys.create(name="agents", scopes=["agent"], actor=ME)
        async with grpc.aio.insecure_channel(f"127.0.0.1:{app.agent_endpoint.port}") as channel:
            agent = FakeAgent(channel, token)  # connects, then says nothing
            code, details = await agent.refused()
        assert code == StatusCode.FAILED_PRECONDITION
        assert details == "no Hello within 1s"
    finally:
        await app.stop()


async def test_a_malformed_hello_is_refused_invalid_argument(
    hub_medic: Medic, connect: Callable[..., FakeAgent]
) -> None:
    for bad in (hello(agent_id="Not An Id"), hello(hostname=""), hello(labels={"bad key": "x"})):
        agent = connect()
        agent.send(bad)
        assert (await agent.refused())[0] == StatusCode.INVALID_ARGUMENT
    assert list((await hub_medic.agents.list()).items) == []


async def test_a_second_stream_of_the_same_agent_replaces_the_first(
    hub_medic: Medic, connect: Callable[..., FakeAgent]
) -> None:
    first = connect()
    await first.welcome()
    second = connect()
    newer = await second.welcome()
    code, details = await first.refused()
    assert code == StatusCode.ABORTED
    assert "replaced" in details
    await hub_medic.agents.settle()
    stored = await hub_medic.agents.get(AGENT_ID)
    assert stored["status"] == "online"
    assert stored["session_id"] == newer.session_id
    second.send(HEARTBEAT)  # the newer stream still works
    assert await second.close() == StatusCode.OK


async def test_a_heartbeat_on_a_stream_the_database_no_longer_names_ends_only_that_stream(
    hub_medic: Medic, connect: Callable[..., FakeAgent], clock: FakeClock
) -> None:
    agent = connect()
    await agent.welcome()
    other_id = "00000000-0000-4000-8000-000000000002"
    other = connect()
    await other.welcome(hello(other_id))
    await hub_medic.agents.settle()
    # Another replica took the agent's stream over: the row names a session this one lacks.
    async with hub_medic.db.transaction() as db:
        row = await db.scalar(select(Agent).where(Agent.agent_id == AGENT_ID))
        assert row is not None
        row.session_id = "elsewhere"
    clock.advance(30)
    agent.send(HEARTBEAT)
    other.send(HEARTBEAT)
    code, details = await agent.refused()
    assert code == StatusCode.UNAVAILABLE
    assert "no longer speaks for the agent" in details
    stored = await hub_medic.agents.get(AGENT_ID)
    assert stored["session_id"] == "elsewhere"  # the stale mark wrote nothing

    async def moved() -> bool:
        body = await hub_medic.agents.get(other_id)
        return bool(body["last_seen"] == isoformat(clock.now()))

    await eventually(moved)  # the same flush still recorded the other agent's heartbeat
    other.send(HEARTBEAT)
    assert await other.close() == StatusCode.OK


async def test_revoking_a_key_ends_the_streams_opened_with_it_and_only_those(
    hub_medic: Medic, channel: grpc.aio.Channel, clock: FakeClock
) -> None:
    revoked, token = await hub_medic.keys.create(name="old", scopes=["agent"], actor=ME)
    _, other_token = await hub_medic.keys.create(name="new", scopes=["agent"], actor=ME)
    doomed = FakeAgent(channel, token)
    await doomed.welcome()
    kept = FakeAgent(channel, other_token)
    await kept.welcome(hello("00000000-0000-4000-8000-000000000002"))
    assert await hub_medic.agents.end_unauthorized() == 0  # both keys hold
    await hub_medic.keys.revoke(revoked.key_id, actor=ME)
    # The dispatch pass checks the keys of its streams every 5 s (by the clock).
    clock.advance(6)
    code, details = await doomed.refused()
    assert code == StatusCode.UNAUTHENTICATED
    assert details == f"API key {revoked.key_id} was revoked or expired"

    async def offline() -> bool:
        return await status_of(hub_medic) == "offline"

    await eventually(offline)
    # The other agent's stream is untouched, and the revoked key cannot come back.
    kept.send(HEARTBEAT)
    assert await status_of(hub_medic, "00000000-0000-4000-8000-000000000002") == "online"
    again = FakeAgent(channel, token)
    assert (await again.refused())[0] == StatusCode.UNAUTHENTICATED
    assert await kept.close() == StatusCode.OK


async def test_a_key_that_expires_ends_its_streams(
    hub_medic: Medic, channel: grpc.aio.Channel, clock: FakeClock
) -> None:
    _, token = await hub_medic.keys.create(
        name="short", scopes=["agent"], actor=ME, expires_at=clock.now() + timedelta(minutes=1)
    )
    agent = FakeAgent(channel, token)
    await agent.welcome()
    assert await hub_medic.agents.end_unauthorized() == 0
    clock.advance(61)
    assert await hub_medic.agents.end_unauthorized() == 1
    assert (await agent.refused())[0] == StatusCode.UNAUTHENTICATED


# -- offline detection and the agent_offline alert -----------------------------------------------


async def test_a_silent_agent_goes_offline_then_opens_exactly_one_alert_resolved_on_return(
    hub_medic: Medic, connect: Callable[..., FakeAgent], clock: FakeClock
) -> None:
    agent = connect()
    await agent.welcome()
    clock.advance(89)
    assert (await hub_medic.agents.run_once()).offline == 0
    clock.advance(2)  # 3 x 30 s without a word
    result = await hub_medic.agents.run_once()
    assert (result.offline, result.alerted) == (1, 0)
    # Its stream is ended so that it reconnects.
    assert (await agent.refused())[0] == StatusCode.UNAVAILABLE
    assert await status_of(hub_medic) == "offline"
    assert await offline_alerts(hub_medic) == []
    # Offline since it fell silent (90 s after its Hello): the alert opens 120 s after that.
    clock.advance(118)
    assert (await hub_medic.agents.run_once()).alerted == 0
    clock.advance(1)
    assert (await hub_medic.agents.run_once()).alerted == 1
    clock.advance(3600)
    assert (await hub_medic.agents.run_once()).alerted == 0
    alerts = await offline_alerts(hub_medic)
    assert [(a["cause"], a["state"]) for a in alerts] == [("agent_offline", "open")]
    assert alerts[0]["details"]["agent_id"] == AGENT_ID
    # The monitor leaves the agent's service alone: no missed alert on top.
    assert (await hub_medic.monitor.run_once()).missed == 0

    back = connect()
    await back.welcome()
    alerts = await offline_alerts(hub_medic)
    assert [(a["state"], a["resolution"]) for a in alerts] == [("resolved", "agent back online")]
    assert await status_of(hub_medic) == "online"


async def test_a_disconnected_agent_alerts_after_the_grace_and_reconnecting_resolves(
    hub_medic: Medic, connect: Callable[..., FakeAgent], clock: FakeClock
) -> None:
    agent = connect()
    await agent.welcome()
    await agent.close()
    await hub_medic.agents.settle()

    async def offline() -> bool:
        return await status_of(hub_medic) == "offline"

    await eventually(offline)
    clock.advance(119)
    assert (await hub_medic.agents.run_once()).alerted == 0
    clock.advance(1)
    assert (await hub_medic.agents.run_once()).alerted == 1
    assert len(await offline_alerts(hub_medic)) == 1
    await connect().welcome()
    assert [a["state"] for a in await offline_alerts(hub_medic)] == ["resolved"]


async def test_an_agent_back_within_the_grace_never_alerts(
    hub_medic: Medic, connect: Callable[..., FakeAgent], clock: FakeClock
) -> None:
    agent = connect()
    await agent.welcome()
    await agent.close()

    async def offline() -> bool:
        return await status_of(hub_medic) == "offline"

    await eventually(offline)
    clock.advance(60)
    await connect().welcome()
    clock.advance(80)  # inside the silence limit of the new stream
    assert (await hub_medic.agents.run_once()).alerted == 0
    assert await offline_alerts(hub_medic) == []
    assert await status_of(hub_medic) == "online"


async def test_stopping_medic_ends_streams_unavailable_and_records_agents_offline(
    db_url: str, tmp_path: Path, clock: FakeClock
) -> None:
    app = Medic(make_settings(db_url, tmp_path, grpc_port=free_port()), clock=clock)
    await app.start(monitor=False)
    assert app.agent_endpoint is not None
    _, token = await app.keys.create(name="agents", scopes=["agent"], actor=ME)
    async with grpc.aio.insecure_channel(f"127.0.0.1:{app.agent_endpoint.port}") as channel:
        agent = FakeAgent(channel, token)
        await agent.welcome()
        stopping = asyncio.create_task(app.stop())
        code, _ = await agent.refused()
        await stopping
    assert code == StatusCode.UNAVAILABLE
    db = Database(db_url)
    try:
        async with db.sessions() as session:
            stored = await session.scalar(select(Agent).where(Agent.agent_id == AGENT_ID))
    finally:
        await db.close()
    assert stored is not None and stored.status == "offline"


async def test_after_a_restart_agents_get_a_reconnection_grace(
    db_url: str, tmp_path: Path, clock: FakeClock
) -> None:
    settings = make_settings(db_url, tmp_path, grpc_port=free_port())
    app = Medic(settings, clock=clock)
    await app.start(monitor=False)
    assert app.agent_endpoint is not None
    _, token = await app.keys.create(name="agents", scopes=["agent"], actor=ME)
    async with grpc.aio.insecure_channel(f"127.0.0.1:{app.agent_endpoint.port}") as channel:
        await FakeAgent(channel, token).welcome()
        await app.stop()
    clock.advance(3600)  # the server was down for an hour
    again = Medic(settings, clock=clock)
    await again.start(monitor=False)
    try:
        assert (await again.agents.run_once()).alerted == 0
        clock.advance(120)
        assert (await again.agents.run_once()).alerted == 1
    finally:
        await again.stop()


# -- TLS -----------------------------------------------------------------------------------------


async def _tls_medic(
    db_url: str, tmp_path: Path, clock: FakeClock, ca: trustme.CA, client_ca: trustme.CA | None
) -> Medic:
    server_cert = ca.issue_cert("localhost", "127.0.0.1")
    cert, key = tmp_path / "server.pem", tmp_path / "server.key"
    server_cert.private_key_pem.write_to_path(str(key))
    cert.write_bytes(b"".join(blob.bytes() for blob in server_cert.cert_chain_pems))
    extra: dict[str, Any] = {"grpc_tls_cert": str(cert), "grpc_tls_key": str(key)}
    if client_ca is not None:
        client_ca.cert_pem.write_to_path(str(tmp_path / "clients.pem"))
        extra["grpc_tls_client_ca"] = str(tmp_path / "clients.pem")
    app = Medic(make_settings(db_url, tmp_path, grpc_port=free_port(), **extra), clock=clock)
    await app.start(monitor=False)
    return app


async def test_tls_endpoint_serves_agents_that_trust_its_ca(
    db_url: str, tmp_path: Path, clock: FakeClock
) -> None:
    ca = trustme.CA()
    app = await _tls_medic(db_url, tmp_path, clock, ca, None)
    try:
        assert app.agent_endpoint is not None
        _, token = await app.keys.create(name="agents", scopes=["agent"], actor=ME)
        target = f"localhost:{app.agent_endpoint.port}"
        trusted = grpc.ssl_channel_credentials(root_certificates=ca.cert_pem.bytes())
        async with grpc.aio.secure_channel(target, trusted) as channel:
            assert (await FakeAgent(channel, token).welcome()).session_id
        stranger = grpc.ssl_channel_credentials(root_certificates=trustme.CA().cert_pem.bytes())
        async with grpc.aio.secure_channel(target, stranger) as channel:
            agent = FakeAgent(channel, token)
            agent.send(hello(OTHER_ID))
            assert (await agent.refused())[0] == StatusCode.UNAVAILABLE
        async with grpc.aio.insecure_channel(target) as channel:
            agent = FakeAgent(channel, token)
            agent.send(hello(OTHER_ID))
            assert (await agent.refused())[0] == StatusCode.UNAVAILABLE
    finally:
        await app.stop()


async def test_mutual_tls_requires_a_client_certificate_from_the_configured_ca(
    db_url: str, tmp_path: Path, clock: FakeClock
) -> None:
    ca, clients = trustme.CA(), trustme.CA()
    app = await _tls_medic(db_url, tmp_path, clock, ca, clients)
    try:
        assert app.agent_endpoint is not None
        _, token = await app.keys.create(name="agents", scopes=["agent"], actor=ME)
        target = f"localhost:{app.agent_endpoint.port}"
        root = ca.cert_pem.bytes()
        without = grpc.ssl_channel_credentials(root_certificates=root)
        async with grpc.aio.secure_channel(target, without) as channel:
            agent = FakeAgent(channel, token)
            agent.send(hello())
            assert (await agent.refused())[0] == StatusCode.UNAVAILABLE
        leaf = clients.issue_cert("agent-web-1")
        with_cert = grpc.ssl_channel_credentials(
            root_certificates=root,
            private_key=leaf.private_key_pem.bytes(),
            certificate_chain=leaf.cert_chain_pems[0].bytes(),
        )
        async with grpc.aio.secure_channel(target, with_cert) as channel:
            assert (await FakeAgent(channel, token).welcome()).session_id
    finally:
        await app.stop()


def test_tls_settings_must_come_in_pairs_and_be_readable(tmp_path: Path) -> None:
    def settings(**values: str) -> Any:
        return make_settings("sqlite:///x.db", tmp_path, **values)

    assert ServerTls.from_settings(settings()) is None
    with pytest.raises(ValueError, match="both"):
        ServerTls.from_settings(settings(grpc_tls_cert="a.pem"))
    with pytest.raises(ValueError, match="needs"):
        ServerTls.from_settings(settings(grpc_tls_client_ca="ca.pem"))
    with pytest.raises(ValueError, match="cannot read"):
        ServerTls.from_settings(
            settings(grpc_tls_cert=str(tmp_path / "no.pem"), grpc_tls_key=str(tmp_path / "no"))
        )


# -- REST ----------------------------------------------------------------------------------------


@pytest.fixture
async def rest(hub_medic: Medic) -> AsyncIterator[TestClient[Any, Any]]:
    async with TestClient(TestServer(build_app(hub_medic))) as client:
        yield client


async def test_rest_lists_agents_with_filters_and_cursor_pagination(
    hub_medic: Medic,
    connect: Callable[..., FakeAgent],
    rest: TestClient[Any, Any],
) -> None:
    _, token = await hub_medic.keys.create(name="reader", scopes=["read"], actor=ME)
    await connect().welcome()
    other = connect()
    await other.welcome(hello(OTHER_ID, hostname="db-1", labels={"env": "staging"}))
    await other.close()

    async def settled() -> bool:
        return await status_of(hub_medic, OTHER_ID) == "offline"

    await eventually(settled)

    async def ids(query: str) -> list[str]:
        response = await rest.get(f"/api/v1/agents{query}", headers=auth(token))
        assert response.status == 200, await response.text()
        return [item["id"] for item in (await response.json())["items"]]

    assert await ids("") == [AGENT_ID, OTHER_ID]
    assert await ids("?status=online") == [AGENT_ID]
    assert await ids("?status=offline") == [OTHER_ID]
    assert await ids("?label=env=staging") == [OTHER_ID]
    assert await ids("?label=role") == [AGENT_ID]
    assert await ids("?label=role=db") == []

    first = await (await rest.get("/api/v1/agents?limit=1", headers=auth(token))).json()
    assert [i["id"] for i in first["items"]] == [AGENT_ID]
    second = await (
        await rest.get(f"/api/v1/agents?limit=1&cursor={first['next_cursor']}", headers=auth(token))
    ).json()
    assert [i["id"] for i in second["items"]] == [OTHER_ID]
    assert second["next_cursor"] is None

    bad = await rest.get("/api/v1/agents?status=asleep", headers=auth(token))
    assert bad.status == 422
    bad = await rest.get("/api/v1/agents?label=no%20spaces", headers=auth(token))
    assert bad.status == 422


async def test_rest_gets_one_agent_or_404(
    hub_medic: Medic, connect: Callable[..., FakeAgent], rest: TestClient[Any, Any]
) -> None:
    _, token = await hub_medic.keys.create(name="reader", scopes=["read"], actor=ME)
    welcome = await connect().welcome()
    response = await rest.get(f"/api/v1/agents/{AGENT_ID}", headers=auth(token))
    assert response.status == 200
    body = await response.json()
    assert (body["id"], body["status"], body["session_id"]) == (
        AGENT_ID,
        "online",
        welcome.session_id,
    )
    missing = await rest.get(f"/api/v1/agents/{OTHER_ID}", headers=auth(token))
    assert missing.status == 404
    assert missing.content_type == "application/problem+json"
