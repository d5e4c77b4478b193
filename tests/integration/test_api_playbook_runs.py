"""Playbook runs over the API, on SQLite and PostgreSQL: a run starts (201, pending) and the
engine -- not the request -- advances it; variables are checked; a playbook with a step that
cannot run yet is refused naming it; one active run per playbook; runs are listed, read with
their step runs, cancelled; start and cancel are audited with their actor; a read key cannot
start or cancel a run.
"""

from __future__ import annotations

from typing import Any

from aiohttp.test_utils import TestClient

from conftest import auth
from medic_core.app import Medic
from medic_core.audit import Actor

RUNNABLE: dict[str, Any] = {
    "slug": "pause",
    "variables": {
        "seconds": {"type": "integer", "default": 5},
        "host": {"type": "string", "required": True},
    },
    "steps": [{"name": "pause", "type": "wait", "params": {"seconds": 60}}],
}


async def start(client: TestClient, token: str, slug: str, body: Any) -> Any:
    return await client.post(f"/api/v1/playbooks/{slug}/runs", json=body, headers=auth(token))


async def test_a_run_starts_pending_and_the_engine_advances_it(
    client: TestClient, admin_token: str, medic: Medic
) -> None:
    await medic.playbooks.apply(RUNNABLE, actor=Actor("test"))
    answer = await start(client, admin_token, "pause", {"variables": {"host": "web-1"}})
    assert answer.status == 201, await answer.text()
    run = await answer.json()
    assert (run["state"], run["steps"], run["version"]) == ("pending", [], 1)
    assert run["variables"] == {"seconds": 5, "host": "web-1"}
    assert run["created_by"].startswith("key:")

    await medic.engine.run_once()
    got = await (
        await client.get(f"/api/v1/playbook-runs/{run['id']}", headers=auth(admin_token))
    ).json()
    assert got["state"] == "waiting"
    assert [(s["name"], s["state"], s["attempt"]) for s in got["steps"]] == [
        ("pause", "running", 1)
    ]

    listed = await client.get(
        "/api/v1/playbook-runs?playbook=pause&state=waiting", headers=auth(admin_token)
    )
    assert [r["id"] for r in (await listed.json())["items"]] == [run["id"]]
    none = await client.get("/api/v1/playbook-runs?state=succeeded", headers=auth(admin_token))
    assert (await none.json())["items"] == []

    cancelled = await client.post(
        f"/api/v1/playbook-runs/{run['id']}/cancel", headers=auth(admin_token)
    )
    assert cancelled.status == 200
    assert (await cancelled.json())["state"] == "cancelled"
    again = await client.post(
        f"/api/v1/playbook-runs/{run['id']}/cancel", headers=auth(admin_token)
    )
    assert again.status == 409
    audit = await medic.audit.list(resource_type="playbook_execution")
    assert sorted((e["action"], e["actor"].startswith("key:")) for e in audit.items) == [
        ("playbook.cancel", True),
        ("playbook.run", True),
    ]


async def test_variables_are_checked_against_the_definition(
    client: TestClient, admin_token: str, medic: Medic
) -> None:
    await medic.playbooks.apply(RUNNABLE, actor=Actor("test"))
    cases = [
        ({"variables": {"host": "a", "nope": 1}}, "variables.nope"),
        ({"variables": {"host": 3}}, "variables.host"),
        ({"variables": {"host": "a", "seconds": "5"}}, "variables.seconds"),
        ({"variables": {"host": "a", "seconds": True}}, "variables.seconds"),
        ({}, "variables.host"),
    ]
    for body, field in cases:
        answer = await start(client, admin_token, "pause", body)
        assert answer.status == 422, body
        assert (await answer.json())["field"] == field, body
    unknown_key = await start(client, admin_token, "pause", {"vars": {}})
    assert unknown_key.status == 422


async def test_a_playbook_whose_steps_cannot_all_run_is_refused_naming_them(
    client: TestClient, admin_token: str, medic: Medic
) -> None:
    definition = {
        "slug": "later",
        "steps": [
            {"name": "pause", "type": "wait", "params": {"seconds": 1}},
            {"name": "ask", "type": "approval", "params": {"message": "go?"}},
        ],
    }
    await medic.playbooks.apply(definition, actor=Actor("test"))
    answer = await start(client, admin_token, "later", {})
    assert answer.status == 409
    problem = await answer.json()
    assert "ask (approval)" in problem["detail"]
    assert problem["steps"] == ["ask (approval)"]


async def test_one_active_run_per_playbook_names_the_active_run(
    client: TestClient, admin_token: str, medic: Medic
) -> None:
    await medic.playbooks.apply(RUNNABLE, actor=Actor("test"))
    first = await (await start(client, admin_token, "pause", {"variables": {"host": "a"}})).json()
    second = await start(client, admin_token, "pause", {"variables": {"host": "b"}})
    assert second.status == 409
    problem = await second.json()
    assert problem["active_execution"] == first["id"]
    assert str(first["id"]) in problem["detail"]
    missing = await start(client, admin_token, "nope", {})
    assert missing.status == 404


async def test_a_read_key_cannot_start_or_cancel_a_run(
    client: TestClient, admin_token: str, medic: Medic
) -> None:
    await medic.playbooks.apply(RUNNABLE, actor=Actor("test"))
    _, reader = await medic.keys.create(name="r", scopes=["read"], actor=Actor("test"))
    refused = await start(client, reader, "pause", {"variables": {"host": "a"}})
    assert refused.status == 403
    run = await (await start(client, admin_token, "pause", {"variables": {"host": "a"}})).json()
    cancel = await client.post(f"/api/v1/playbook-runs/{run['id']}/cancel", headers=auth(reader))
    assert cancel.status == 403
    readable = await client.get(f"/api/v1/playbook-runs/{run['id']}", headers=auth(reader))
    assert readable.status == 200
