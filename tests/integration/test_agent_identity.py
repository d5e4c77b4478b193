"""An agent id belongs to the API key that enrolled it, on both databases, through the real gRPC
endpoint and the REST API (``medic_core/agent/enrollment.py``).

What is proven: a second ``agent`` key cannot take an agent id (refused ``PERMISSION_DENIED``
before anything is stored or any stream replaced, audited, counted, and the agent's executions
still go to the agent); an unbound agent is bound by its next ``Hello``; an admin re-assigns an
agent to another key (key rotation) and revokes it; an agent id never adopts a user's service,
and people cannot create ``agent-`` slugs.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import grpc
import pytest
from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy import select, update
from test_agent_executions import (
    AGENT_ID,
    ALLOWLIST,
    ME,
    RESTART,
    FakeAgent,
    S,
    free_port,
    hello,
)

from conftest import auth, make_settings
from medic_core.app import Medic
from medic_core.clock import FakeClock
from medic_core.server.grpc.proto import agent_pb2
from medic_core.server.http.app import build_app
from medic_core.store.models import Agent, AuditEntry, Service

StatusCode = grpc.StatusCode
IMPOSTOR_ALLOWLIST = agent_pb2.AllowlistSummary(
    sha256="ee" * 32,
    scripts=[agent_pb2.ScriptRules(name="exfiltrate", sha256="ff" * 32, timeout_seconds=60)],
)


def impostor_hello(agent_id: str = AGENT_ID) -> agent_pb2.AgentMessage:
    return hello(agent_id, hostname="evil-1", labels={"owned": "yes"}, allowlist=IMPOSTOR_ALLOWLIST)


@pytest.fixture
async def hub_medic(db_url: str, tmp_path: Path, clock: FakeClock) -> AsyncIterator[Medic]:
    app = Medic(make_settings(db_url, tmp_path, grpc_port=free_port()), clock=clock)
    await app.start(monitor=False)
    try:
        yield app
    finally:
        await app.stop()


class Keys:
    """Agent keys, and streams opened with them."""

    def __init__(self, medic: Medic, channel: grpc.aio.Channel) -> None:
        self.medic = medic
        self.channel = channel
        self.tokens: dict[str, str] = {}
        self.ids: dict[str, str] = {}
        self.streams: list[FakeAgent] = []

    async def create(self, name: str, scopes: list[str] | None = None) -> str:
        key, token = await self.medic.keys.create(name=name, scopes=scopes or ["agent"], actor=ME)
        self.tokens[name], self.ids[name] = token, key.key_id
        return key.key_id

    def connect(self, name: str) -> FakeAgent:
        self.streams.append(FakeAgent(self.channel, self.tokens[name]))
        return self.streams[-1]


@pytest.fixture
async def keys(hub_medic: Medic) -> AsyncIterator[Keys]:
    assert hub_medic.agent_endpoint is not None
    async with grpc.aio.insecure_channel(f"127.0.0.1:{hub_medic.agent_endpoint.port}") as ch:
        keys = Keys(hub_medic, ch)
        await keys.create("owner")
        await keys.create("other")
        yield keys
        for stream in keys.streams:
            stream.reader.cancel()
        await asyncio.gather(*(s.reader for s in keys.streams), return_exceptions=True)


@pytest.fixture
async def rest(hub_medic: Medic) -> AsyncIterator[TestClient[Any, Any]]:
    async with TestClient(TestServer(build_app(hub_medic))) as client:
        yield client


@pytest.fixture
async def admin(hub_medic: Medic) -> dict[str, str]:
    _, token = await hub_medic.keys.create(name="admin", scopes=["admin"], actor=ME)
    return auth(token)


async def refusals(medic: Medic) -> list[AuditEntry]:
    async with medic.db.sessions() as session:
        rows = await session.scalars(
            select(AuditEntry)
            .where(AuditEntry.action == "agent.hello_refused")
            .order_by(AuditEntry.id)
        )
        return list(rows)


def metric(medic: Medic, name: str, **labels: str) -> float:
    return medic.metrics.registry.get_sample_value(name, labels) or 0.0


async def stored_agent(medic: Medic, agent_id: str = AGENT_ID) -> dict[str, Any]:
    return dict(await medic.agents.get(agent_id))


# -- the binding ---------------------------------------------------------------------------------


async def test_a_second_key_cannot_take_an_agent_id(
    hub_medic: Medic, keys: Keys, rest: TestClient[Any, Any], admin: dict[str, str]
) -> None:
    agent = keys.connect("owner")
    welcome = await agent.welcome()
    before = await stored_agent(hub_medic)
    assert before["key_id"] == keys.ids["owner"]

    impostor = keys.connect("other")
    impostor.send(impostor_hello())
    code, details = await impostor.ended()
    assert code == StatusCode.PERMISSION_DENIED
    assert "belongs to another API key" in details
    assert keys.ids["owner"] not in details  # the owner's key is none of the caller's business

    # Nothing of the Hello was stored; the agent's stream was not replaced.
    after = await stored_agent(hub_medic)
    assert after == before
    assert after["session_id"] == welcome.session_id
    assert (after["hostname"], after["labels"]) == ("web-1", {})
    assert after["allowlist"]["sha256"] == ALLOWLIST.sha256
    assert hub_medic.agents.session(AGENT_ID) is not None
    # The agent still gets its executions; the impostor got nothing but its refusal.
    response = await rest.post(f"/api/v1/agents/{AGENT_ID}/executions", json=RESTART, headers=admin)
    assert response.status == 201, await response.text()
    created = await response.json()
    assert created["delivery"] == "sent"
    assert (await agent.execute()).execution_id == created["id"]
    assert impostor.inbox.empty()

    (entry,) = await refusals(hub_medic)
    assert (entry.actor, entry.resource_type, entry.resource_id) == (
        f"key:{keys.ids['other']}",
        "agent",
        AGENT_ID,
    )
    assert entry.after == {"agent_id": AGENT_ID, "key_id": keys.ids["other"], "reason": "other_key"}
    assert metric(hub_medic, "medic_agent_hello_refusals_total", reason="other_key") == 1
    async with hub_medic.db.sessions() as session:
        actions = list(
            await session.scalars(
                select(AuditEntry.action).where(AuditEntry.resource_type == "agent")
            )
        )
    assert actions == ["agent.register", "agent.hello_refused"]


async def test_a_key_can_serve_many_agents_but_each_id_stays_with_its_key(
    hub_medic: Medic, keys: Keys
) -> None:
    other_id = "00000000-0000-4000-8000-000000000002"
    await keys.connect("owner").welcome()
    await keys.connect("owner").welcome(hello(other_id))
    assert (await stored_agent(hub_medic, other_id))["key_id"] == keys.ids["owner"]
    # The other key enrols an id of its own; then neither key may take the other's.
    await keys.connect("other").welcome(hello("00000000-0000-4000-8000-000000000003"))
    stolen = keys.connect("owner")
    stolen.send(hello("00000000-0000-4000-8000-000000000003"))
    assert (await stolen.ended())[0] == StatusCode.PERMISSION_DENIED


async def test_a_repeated_refusal_is_audited_once_a_minute_and_always_counted(
    hub_medic: Medic, keys: Keys, clock: FakeClock
) -> None:
    await keys.connect("owner").welcome()
    for _ in range(3):
        impostor = keys.connect("other")
        impostor.send(impostor_hello())
        assert (await impostor.ended())[0] == StatusCode.PERMISSION_DENIED
    assert len(await refusals(hub_medic)) == 1
    clock.advance(61)
    impostor = keys.connect("other")
    impostor.send(impostor_hello())
    assert (await impostor.ended())[0] == StatusCode.PERMISSION_DENIED
    assert len(await refusals(hub_medic)) == 2
    assert metric(hub_medic, "medic_agent_hello_refusals_total", reason="other_key") == 4


async def test_an_unbound_agent_is_bound_by_its_next_hello_and_then_kept(
    hub_medic: Medic, keys: Keys
) -> None:
    first = keys.connect("owner")
    await first.welcome()
    await first.close()
    # As after the upgrade, when the migration could not tell the agent's key.
    async with hub_medic.db.transaction() as session:
        await session.execute(update(Agent).values(key_id=None))
    await keys.connect("other").welcome()
    assert (await stored_agent(hub_medic))["key_id"] == keys.ids["other"]
    async with hub_medic.db.sessions() as session:
        entry = await session.scalar(
            select(AuditEntry)
            .where(AuditEntry.action == "agent.update")
            .order_by(AuditEntry.id.desc())
        )
    assert entry is not None and entry.actor == f"key:{keys.ids['other']}"
    assert (entry.before or {})["key_id"] is None
    assert (entry.after or {})["key_id"] == keys.ids["other"]
    late = keys.connect("owner")
    late.send(hello())
    assert (await late.ended())[0] == StatusCode.PERMISSION_DENIED


async def test_a_refused_hello_on_an_open_stream_ends_only_that_stream(
    hub_medic: Medic, keys: Keys, admin: dict[str, str], rest: TestClient[Any, Any]
) -> None:
    """The stream's first Hello was accepted; the agent was re-assigned meanwhile, so its next
    Hello (an allowlist reload) is refused and changes nothing."""
    agent = keys.connect("owner")
    await agent.welcome()
    async with hub_medic.db.transaction() as session:  # as another replica's reassign would
        await session.execute(update(Agent).values(key_id=keys.ids["other"]))
    agent.send(impostor_hello())
    assert (await agent.ended())[0] == StatusCode.PERMISSION_DENIED
    stored = await stored_agent(hub_medic)
    assert stored["allowlist"]["sha256"] == ALLOWLIST.sha256


# -- re-assign and revoke ------------------------------------------------------------------------


async def test_reassigning_moves_the_agent_to_another_key(
    hub_medic: Medic, keys: Keys, rest: TestClient[Any, Any], admin: dict[str, str]
) -> None:
    agent = keys.connect("owner")
    await agent.welcome()
    response = await rest.post(
        f"/api/v1/agents/{AGENT_ID}/reassign", json={"key_id": keys.ids["other"]}, headers=admin
    )
    assert response.status == 200, await response.text()
    body = await response.json()
    assert (body["key_id"], body["status"], body["session_id"]) == (
        keys.ids["other"],
        "offline",
        None,
    )
    code, details = await agent.ended()
    assert code == StatusCode.PERMISSION_DENIED and "re-assigned" in details
    old = keys.connect("owner")
    old.send(hello())
    assert (await old.ended())[0] == StatusCode.PERMISSION_DENIED
    await keys.connect("other").welcome()
    assert (await stored_agent(hub_medic))["status"] == "online"
    async with hub_medic.db.sessions() as session:
        entry = await session.scalar(
            select(AuditEntry).where(AuditEntry.action == "agent.reassign")
        )
    assert entry is not None and entry.actor.startswith("key:")
    assert (entry.before or {})["key_id"] == keys.ids["owner"]
    assert (entry.after or {})["key_id"] == keys.ids["other"]
    # Listing by key finds what a rotation has to move.
    page = await rest.get(f"/api/v1/agents?key={keys.ids['other']}", headers=admin)
    assert [a["id"] for a in (await page.json())["items"]] == [AGENT_ID]
    page = await rest.get(f"/api/v1/agents?key={keys.ids['owner']}", headers=admin)
    assert (await page.json())["items"] == []


async def test_an_agent_can_only_be_reassigned_to_an_active_agent_key(
    hub_medic: Medic,
    keys: Keys,
    rest: TestClient[Any, Any],
    admin: dict[str, str],
    clock: FakeClock,
) -> None:
    await keys.connect("owner").welcome()
    revoked = await keys.create("revoked")
    await hub_medic.keys.revoke(revoked, actor=ME)
    expiring, _ = await hub_medic.keys.create(
        name="expiring", scopes=["agent"], actor=ME, expires_at=clock.now() + timedelta(seconds=5)
    )
    writer = await keys.create("writer", ["write"])
    admin_key = await keys.create("admin2", ["admin"])
    clock.advance(10)
    cases = {
        "nope": "no API key",
        revoked: "revoked",
        expiring.key_id: "expired",
        writer: "lacks the 'agent' scope",
        admin_key: "lacks the 'agent' scope",
    }
    for key_id, message in cases.items():
        response = await rest.post(
            f"/api/v1/agents/{AGENT_ID}/reassign", json={"key_id": key_id}, headers=admin
        )
        assert response.status == 422, key_id
        assert message in (await response.json())["detail"], key_id
    for body in ({}, {"key_id": 5}, {"key_id": "x" * 33}, {"key_id": "a", "more": 1}):
        response = await rest.post(f"/api/v1/agents/{AGENT_ID}/reassign", json=body, headers=admin)
        assert response.status in (400, 422), body
    missing = await rest.post(
        "/api/v1/agents/nobody/reassign", json={"key_id": keys.ids["other"]}, headers=admin
    )
    assert missing.status == 404
    assert (await stored_agent(hub_medic))["key_id"] == keys.ids["owner"]


async def test_revoking_an_agent_refuses_every_key_and_fails_its_unfinished_executions(
    hub_medic: Medic, keys: Keys, rest: TestClient[Any, Any], admin: dict[str, str]
) -> None:
    agent = keys.connect("owner")
    await agent.welcome()
    url = f"/api/v1/agents/{AGENT_ID}/executions"
    running = await (await rest.post(url, json=RESTART, headers=admin)).json()
    await agent.execute()
    agent.update(running["id"], S.EXECUTION_STATE_RUNNING)
    queued = await (await rest.post(url, json=RESTART, headers=admin)).json()
    await agent.execute()

    response = await rest.post(f"/api/v1/agents/{AGENT_ID}/revoke", headers=admin)
    assert response.status == 200, await response.text()
    body = await response.json()
    assert body["revoked_at"] is not None and body["status"] == "offline"
    code, details = await agent.ended()
    assert code == StatusCode.PERMISSION_DENIED and "revoked" in details
    for eid in (running["id"], queued["id"]):
        execution = await hub_medic.agents.executions.get(eid)
        assert (execution["state"], execution["reason"]) == ("failed", "agent_revoked"), eid
        assert "revoked by key:" in execution["detail"]
    for name in ("owner", "other"):
        again = keys.connect(name)
        again.send(hello())
        code, details = await again.ended()
        assert code == StatusCode.PERMISSION_DENIED and "revoked" in details
    assert metric(hub_medic, "medic_agent_hello_refusals_total", reason="revoked") == 2
    refused = await rest.post(url, json=RESTART, headers=admin)
    assert refused.status == 409
    assert (await refused.json())["reason"] == "agent_revoked"
    assert (await rest.post(f"/api/v1/agents/{AGENT_ID}/revoke", headers=admin)).status == 409
    # No agent_offline alert opens for a revoked agent.
    assert (await stored_agent(hub_medic))["status"] == "offline"
    async with hub_medic.db.sessions() as session:
        due = await session.scalar(select(Agent.next_due))
    assert due is None

    # Re-assigning lifts the revocation.
    response = await rest.post(
        f"/api/v1/agents/{AGENT_ID}/reassign", json={"key_id": keys.ids["owner"]}, headers=admin
    )
    assert response.status == 200
    assert (await response.json())["revoked_at"] is None
    await keys.connect("owner").welcome()
    actions = [e.action for e in await _agent_audit(hub_medic)]
    assert actions == [
        "agent.register",
        "agent.revoke",
        "agent.hello_refused",
        "agent.hello_refused",
        "agent.reassign",
    ]


async def _agent_audit(medic: Medic) -> list[AuditEntry]:
    async with medic.db.sessions() as session:
        rows = await session.scalars(
            select(AuditEntry)
            .where(AuditEntry.resource_type == "agent", AuditEntry.action.startswith("agent."))
            .order_by(AuditEntry.id)
        )
        return list(rows)


async def test_reassign_and_revoke_need_the_admin_scope(
    hub_medic: Medic, keys: Keys, rest: TestClient[Any, Any]
) -> None:
    await keys.connect("owner").welcome()
    _, writer = await hub_medic.keys.create(name="writer", scopes=["write"], actor=ME)
    for path, body in (("reassign", {"key_id": keys.ids["other"]}), ("revoke", None)):
        for token in (writer, keys.tokens["owner"]):
            response = await rest.post(
                f"/api/v1/agents/{AGENT_ID}/{path}", json=body, headers=auth(token)
            )
            assert response.status == 403, (path, await response.text())
    assert (await stored_agent(hub_medic))["revoked_at"] is None


# -- services: no adoption, no agent- slugs --------------------------------------------------------


async def test_an_agent_id_never_adopts_a_users_service(
    hub_medic: Medic, keys: Keys, rest: TestClient[Any, Any], admin: dict[str, str]
) -> None:
    # A user's service holding the slug an agent id "collide" would take (made before such
    # slugs were reserved).
    async with hub_medic.db.transaction() as session:
        session.add(
            Service(
                slug="agent-collide",
                name="payroll export",
                tags=["finance"],
                priority="p1",
                description="",
                expectation={"kind": "interval", "period": 60},
                grace=0,
                state="new",
                recent_beats=[],
                muted=False,
                created_at=hub_medic.clock.now(),
                updated_at=hub_medic.clock.now(),
            )
        )
    agent = keys.connect("owner")
    await agent.welcome(hello("collide"))
    stored = await stored_agent(hub_medic, "collide")
    assert stored["service"] == "agent-collide-2"
    theirs = await hub_medic.services.get("agent-collide")
    assert (theirs["name"], theirs["tags"]) == ("payroll export", ["finance"])
    ours = await hub_medic.services.get("agent-collide-2")
    assert ours["tags"] == ["agent"]
    # Its alerts land on its own service, again after a reconnect.
    await agent.close()
    await keys.connect("owner").welcome(hello("collide"))
    assert (await stored_agent(hub_medic, "collide"))["service"] == "agent-collide-2"
    async with hub_medic.db.sessions() as session:
        marked = dict((await session.execute(select(Service.slug, Service.agent_id))).all())
    assert marked == {"agent-collide": None, "agent-collide-2": "collide"}


async def test_people_cannot_create_agent_slugs_but_existing_ones_keep_working(
    hub_medic: Medic, rest: TestClient[Any, Any], admin: dict[str, str]
) -> None:
    body = {"slug": "agent-collide", "expectation": {"kind": "interval", "period": 60}}
    response = await rest.post("/api/v1/services", json=body, headers=admin)
    assert response.status == 422
    problem = await response.json()
    assert "reserved" in problem["detail"] and problem.get("field") == "slug"
    ok = await rest.post("/api/v1/services", json={**body, "slug": "agentless"}, headers=admin)
    assert ok.status == 201
    async with hub_medic.db.transaction() as session:
        await session.execute(update(Service).values(slug="agent-legacy"))
    changed = await rest.patch(
        "/api/v1/services/agent-legacy", json={"name": "still mine"}, headers=admin
    )
    assert changed.status == 200, await changed.text()
    assert (await rest.delete("/api/v1/services/agent-legacy", headers=admin)).status == 204
