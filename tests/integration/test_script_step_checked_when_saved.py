"""A playbook's ``script`` steps are checked when it is saved (and validated), on SQLite and
PostgreSQL: against the advertised allowlist of each known agent chosen by id (the real
verifier), refused with 422 naming the step, the agent and the reason; agents not known yet,
chosen by labels, or paused are warnings; a template in ``args`` reaching for ``secrets`` is
refused whatever the agents allow.
"""

from __future__ import annotations

from typing import Any

from aiohttp.test_utils import TestClient

from conftest import auth
from medic_core.app import Medic
from support.agent_rows import add_agent

URL = "/api/v1/playbooks/fix-web"


def playbook(**params: Any) -> dict[str, Any]:
    return {
        "slug": "fix-web",
        "steps": [
            {"name": "settle", "type": "wait", "params": {"seconds": 5}},
            {
                "name": "restart",
                "type": "script",
                "params": {
                    "agents": {"ids": ["web-1"]},
                    "script": "restart",
                    "args": ["nginx"],
                    **params,
                },
            },
        ],
    }


async def test_an_allowed_script_is_saved_without_warnings(
    client: TestClient, admin_token: str, medic: Medic
) -> None:
    await add_agent(medic, "web-1")
    answer = await client.put(URL, json=playbook(), headers=auth(admin_token))
    assert answer.status == 201, await answer.text()
    assert (await answer.json())["warnings"] == []


async def test_an_unknown_script_is_refused_at_save_naming_step_agent_and_reason(
    client: TestClient, admin_token: str, medic: Medic
) -> None:
    await add_agent(medic, "web-1")
    for url in (URL, "/api/v1/playbooks:validate"):
        method = client.put if url == URL else client.post
        answer = await method(url, json=playbook(script="rm-rf"), headers=auth(admin_token))
        assert answer.status == 422, await answer.text()
        problem = await answer.json()
        assert problem["field"] == "steps[1].params.script"
        assert "step 'restart'" in problem["detail"]
        assert "agent web-1 refuses (not_allowlisted)" in problem["detail"]
    assert (await client.get(URL, headers=auth(admin_token))).status == 404
    metrics = await (await client.get("/metrics")).text()
    assert 'medic_playbooks_refused_total{reason="refused_by_step_type"} 2.0' in metrics


async def test_arguments_outside_the_rules_are_refused_at_save(
    client: TestClient, admin_token: str, medic: Medic
) -> None:
    await add_agent(medic, "web-1")
    answer = await client.put(URL, json=playbook(args=["apache"]), headers=auth(admin_token))
    assert answer.status == 422
    assert "(arg_not_allowed)" in (await answer.json())["detail"]


async def test_mode_one_is_refused_only_when_no_chosen_agent_allows_it(
    client: TestClient, admin_token: str, medic: Medic
) -> None:
    await add_agent(medic, "web-1", ("other",))
    await add_agent(medic, "web-2")
    both = {"agents": {"ids": ["web-1", "web-2"]}}
    one = await client.put(URL, json=playbook(**both), headers=auth(admin_token))
    assert one.status == 201, await one.text()
    [warning] = (await one.json())["warnings"]
    assert "agent web-1 refuses (not_allowlisted)" in warning
    every = await client.put(URL, json=playbook(**both, mode="all"), headers=auth(admin_token))
    assert every.status == 422
    assert "agent web-1 refuses" in (await every.json())["detail"]


async def test_unknown_agents_labels_and_paused_agents_are_warnings(
    client: TestClient, admin_token: str, medic: Medic
) -> None:
    await add_agent(medic, "web-2", paused=True)
    answer = await client.put(
        URL, json=playbook(agents={"ids": ["web-1", "web-2"]}), headers=auth(admin_token)
    )
    assert answer.status == 201, await answer.text()
    warnings = (await answer.json())["warnings"]
    assert any("no agent web-1 has connected yet" in w for w in warnings), warnings
    assert any("agent web-2 refuses (paused)" in w for w in warnings), warnings
    labelled = await client.put(
        URL, json=playbook(agents={"labels": {"role": "web"}}), headers=auth(admin_token)
    )
    assert labelled.status == 200
    assert any(
        "checked against their allowlists when the step runs" in w
        for w in (await labelled.json())["warnings"]
    )


async def test_templated_arguments_are_checked_for_the_script_only(
    client: TestClient, admin_token: str, medic: Medic
) -> None:
    await add_agent(medic, "web-1")
    templated = playbook(args=["{{ vars.service }}"])
    templated["variables"] = {"service": {"type": "string", "default": "nginx"}}
    assert (await client.put(URL, json=templated, headers=auth(admin_token))).status == 201
    templated["steps"][1]["params"]["script"] = "nope"
    refused = await client.put(URL, json=templated, headers=auth(admin_token))
    assert refused.status == 422
    assert "agent web-1 refuses (not_allowlisted)" in (await refused.json())["detail"]


async def test_secrets_in_arguments_are_refused_at_save(
    client: TestClient, admin_token: str, medic: Medic
) -> None:
    await add_agent(medic, "web-1")
    for arg in ("{{ secrets.DB_PASSWORD }}", "--token={{ secrets['API'] | upper }}"):
        answer = await client.put(URL, json=playbook(args=[arg]), headers=auth(admin_token))
        assert answer.status == 422, arg
        problem = await answer.json()
        assert problem["field"] == "steps[1].params.args[0]"
        assert "secrets may not go in a script's arguments" in problem["detail"]
    # In an env value, a secret is where it belongs.
    in_env = playbook(env={"TOKEN": "{{ secrets.API }}"})
    assert (await client.put(URL, json=in_env, headers=auth(admin_token))).status == 201


async def test_an_argument_longer_than_agents_take_is_refused_at_save(
    client: TestClient, admin_token: str, medic: Medic
) -> None:
    await add_agent(medic, "web-1")
    # 4000 characters fit the schema; 12000 bytes of UTF-8 do not fit the agents' 4096.
    answer = await client.put(URL, json=playbook(args=["é" * 3000]), headers=auth(admin_token))
    assert answer.status == 422, await answer.text()
    problem = await answer.json()
    assert problem["field"] == "steps[1].params.script"
    assert "(invalid_request): args[0] is longer than 4096 bytes" in problem["detail"]
