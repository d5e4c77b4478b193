"""Playbooks over the API, on SQLite and PostgreSQL: apply creates, changes make versions,
unchanged definitions make none, old versions stay readable (executions pin them), delete keeps
them, and every error of a definition comes back at once with its path.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml
from aiohttp.test_utils import TestClient

from conftest import auth
from medic_core.app import Medic
from medic_core.events import Event

PLAYBOOK: dict[str, Any] = {
    "slug": "restart-web",
    "name": "Restart web",
    "triggers": [{"kind": "alert", "selector": {"services": ["web-*"], "causes": ["missed"]}}],
    "steps": [
        {
            "name": "restart",
            "type": "script",
            "params": {"agents": {"labels": {"role": "web"}}, "script": "restart-service"},
        },
        {"name": "settle", "type": "wait", "params": {"seconds": 30}},
    ],
}
URL = "/api/v1/playbooks/restart-web"


async def put(client: TestClient, token: str, body: Any, url: str = URL) -> Any:
    return await client.put(url, json=body, headers=auth(token))


async def test_apply_creates_then_versions_and_an_unchanged_definition_makes_no_version(
    client: TestClient, admin_token: str, medic: Medic
) -> None:
    seen: list[Event] = []

    async def record(event: Event) -> None:
        if event.type == "playbook.changed":
            seen.append(event)

    medic.bus.subscribe("test", record)
    first = await put(client, admin_token, PLAYBOOK)
    assert first.status == 201, await first.text()
    body = await first.json()
    assert (body["change"], body["version"]) == ("created", 1)
    assert body["playbook"]["current_version"] == 1

    again = await put(client, admin_token, copy.deepcopy(PLAYBOOK))
    assert again.status == 200
    assert ((await again.json())["change"], (await again.json())["version"]) == ("unchanged", 1)

    edited = copy.deepcopy(PLAYBOOK)
    edited["steps"][1]["params"]["seconds"] = 60
    second = await put(client, admin_token, edited)
    assert second.status == 200
    assert ((await second.json())["change"], (await second.json())["version"]) == ("updated", 2)

    current = await (await client.get(URL, headers=auth(admin_token))).json()
    assert (current["current_version"], current["definition"]) == (2, edited)
    pinned = await client.get(f"{URL}/versions/1", headers=auth(admin_token))
    assert (await pinned.json())["definition"] == PLAYBOOK  # version 1 as it was
    versions = await (await client.get(f"{URL}/versions", headers=auth(admin_token))).json()
    assert [v["version"] for v in versions["items"]] == [2, 1]
    assert versions["items"][0]["created_by"].startswith("key:")

    await medic.bus.drain()
    assert [(e.data["change"], e.data["version"]) for e in seen] == [("created", 1), ("updated", 2)]
    audit = await medic.audit.list(resource_type="playbook")
    assert sorted(entry["action"] for entry in audit.items) == [
        "playbook.create",
        "playbook.version",
    ]


async def test_versions_page_with_a_cursor(client: TestClient, admin_token: str) -> None:
    for seconds in (1, 2, 3):
        edited = copy.deepcopy(PLAYBOOK)
        edited["steps"][1]["params"]["seconds"] = seconds
        assert (await put(client, admin_token, edited)).status in (200, 201)
    first = await (await client.get(f"{URL}/versions?limit=2", headers=auth(admin_token))).json()
    assert [v["version"] for v in first["items"]] == [3, 2]
    rest = await (
        await client.get(
            f"{URL}/versions?limit=2&cursor={first['next_cursor']}", headers=auth(admin_token)
        )
    ).json()
    assert ([v["version"] for v in rest["items"]], rest["next_cursor"]) == ([1], None)
    listed = await (await client.get("/api/v1/playbooks", headers=auth(admin_token))).json()
    assert [p["slug"] for p in listed["items"]] == ["restart-web"]


async def test_delete_keeps_the_versions_and_applying_again_revives_with_a_new_version(
    client: TestClient, admin_token: str, medic: Medic
) -> None:
    await put(client, admin_token, PLAYBOOK)
    deleted = await client.delete(URL, headers=auth(admin_token))
    assert deleted.status == 204
    assert (await client.get(URL, headers=auth(admin_token))).status == 404
    listed = await (await client.get("/api/v1/playbooks", headers=auth(admin_token))).json()
    assert listed["items"] == []
    assert (await client.delete(URL, headers=auth(admin_token))).status == 404

    revived = await put(client, admin_token, PLAYBOOK)
    assert revived.status == 201
    assert ((await revived.json())["change"], (await revived.json())["version"]) == ("created", 2)
    old = await client.get(f"{URL}/versions/1", headers=auth(admin_token))
    assert (await old.json())["definition"] == PLAYBOOK
    actions = [e["action"] for e in (await medic.audit.list(resource_type="playbook")).items]
    assert sorted(actions) == ["playbook.create", "playbook.create", "playbook.delete"]


async def test_yaml_is_accepted_and_reads_back_as_the_same_document(
    client: TestClient, admin_token: str
) -> None:
    text = yaml.safe_dump(PLAYBOOK, sort_keys=False)
    headers = {**auth(admin_token), "Content-Type": "application/yaml"}
    response = await client.put(URL, data=text, headers=headers)
    assert response.status == 201, await response.text()
    current = await (await client.get(URL, headers=auth(admin_token))).json()
    assert current["definition"] == PLAYBOOK
    plain = await client.put(
        URL, data=text, headers={**auth(admin_token), "Content-Type": "text/plain"}
    )
    assert plain.status == 400


async def test_the_slug_of_the_body_must_be_the_urls(client: TestClient, admin_token: str) -> None:
    response = await put(client, admin_token, PLAYBOOK, url="/api/v1/playbooks/other")
    assert response.status == 422
    problem = await response.json()
    assert problem["field"] == "slug" and "must be the same" in problem["detail"]


async def test_an_invalid_definition_gets_every_error_and_nothing_is_saved(
    client: TestClient, admin_token: str
) -> None:
    broken = copy.deepcopy(PLAYBOOK)
    broken["steps"].append({"name": "settle", "type": "teleport", "params": {}})
    broken["steps"][0]["on_failure"] = "goto nowhere"
    for method, url in (("PUT", URL), ("POST", "/api/v1/playbooks:validate")):
        response = await client.request(method, url, json=broken, headers=auth(admin_token))
        assert response.status == 422
        problem = await response.json()
        assert problem["field"] == "steps[2].type"  # the schema's first: as a body check's
        assert {e["field"] for e in problem["errors"]} == {
            "steps[2].type",
            "steps[2].name",
            "steps[0].on_failure",
        }
    assert (await client.get(URL, headers=auth(admin_token))).status == 404


async def test_a_read_key_validates_but_cannot_apply(
    client: TestClient, admin_token: str, medic: Medic
) -> None:
    from medic_core.audit import SYSTEM

    _, reader = await medic.keys.create(name="reader", scopes=["read"], actor=SYSTEM)
    valid = await client.post("/api/v1/playbooks:validate", json=PLAYBOOK, headers=auth(reader))
    assert valid.status == 200
    body = await valid.json()
    assert body["valid"] is True
    # The script step's agents are chosen by labels: checked when it runs, and said so.
    assert [w.split(":")[0] for w in body["warnings"]] == [
        "steps[0].params.agents.labels (step 'restart')"
    ]
    assert (await put(client, reader, PLAYBOOK)).status == 403


async def test_a_definition_over_the_limit_is_a_413_problem(
    client: TestClient, admin_token: str, medic: Medic
) -> None:
    # Over MEDIC_PLAYBOOK_MAX_BYTES (256 KiB), under MEDIC_MAX_BODY_BYTES (1 MiB).
    huge = copy.deepcopy(PLAYBOOK)
    huge["steps"] = PLAYBOOK["steps"] + [
        {"name": f"w{i}", "type": "wait", "params": {"seconds": 1, "until": "x" * 150}}
        for i in range(2000)
    ]
    response = await put(client, admin_token, huge)
    assert response.status == 413
    problem = await response.json()
    assert "MEDIC_PLAYBOOK_MAX_BYTES" in problem["detail"]
    assert "x" * 150 not in problem["detail"]  # nothing of the body is echoed


async def test_the_examples_apply_through_the_api(client: TestClient, admin_token: str) -> None:
    examples = Path(__file__).resolve().parents[2] / "examples" / "playbooks"
    for path in sorted(examples.glob("*.yaml")):
        document = yaml.safe_load(path.read_text())
        response = await put(
            client, admin_token, document, url=f"/api/v1/playbooks/{document['slug']}"
        )
        assert response.status == 201, (path, await response.text())
