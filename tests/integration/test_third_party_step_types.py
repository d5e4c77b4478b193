"""A third party's step type is validated through its own ``params_schema`` with no change to
Medic, and shows in ``GET /api/v1/step-types`` and in the served OpenAPI document."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from conftest import auth, make_settings
from medic_core.app import Medic
from medic_core.clock import FakeClock
from medic_core.playbooks import StepTypeError
from medic_core.plugins import hookimpl
from medic_core.server.http.app import build_app
from support.response_check import ResponseCheck


class RestartUnit:
    name = "acme.systemd_restart"
    description = "Restart a systemd unit (the ACME way)."
    params_schema: dict[str, Any] = {
        "type": "object",
        "required": ["unit"],
        "properties": {"unit": {"type": "string", "pattern": r"^[\w@.-]+\.service$"}},
        "additionalProperties": False,
    }


class Acme:
    @hookimpl
    def medic_step_types(self) -> list[Any]:
        return [RestartUnit()]


@pytest.fixture
async def acme_client(db_url: str, tmp_path: Path, clock: FakeClock) -> AsyncIterator[Any]:
    medic = Medic(make_settings(db_url, tmp_path), clock=clock, plugins=[("acme", Acme())])
    await medic.start(monitor=False)
    token = await medic.ensure_admin_key()
    app = build_app(medic)
    check = ResponseCheck()
    app.middlewares.append(check.middleware)
    try:
        async with TestClient(TestServer(app)) as client:
            yield client, token
    finally:
        await medic.stop()
    assert check.failures == []


def playbook(params: dict[str, Any]) -> dict[str, Any]:
    return {
        "slug": "acme-restart",
        "steps": [{"name": "restart", "type": "acme.systemd_restart", "params": params}],
    }


async def test_a_third_party_step_is_checked_by_its_own_schema(acme_client: Any) -> None:
    client, token = acme_client
    good = await client.put(
        "/api/v1/playbooks/acme-restart",
        json=playbook({"unit": "web.service"}),
        headers=auth(token),
    )
    assert good.status == 201, await good.text()
    bad = await client.post(
        "/api/v1/playbooks:validate", json=playbook({"unit": "rm -rf /"}), headers=auth(token)
    )
    assert bad.status == 422
    problem = await bad.json()
    assert problem["field"] == "steps[0].params.unit"
    assert "is not valid" in problem["detail"]


async def test_it_is_listed_in_step_types_and_in_the_openapi_document(acme_client: Any) -> None:
    client, token = acme_client
    listed = await (await client.get("/api/v1/step-types", headers=auth(token))).json()
    mine = next(t for t in listed["items"] if t["name"] == "acme.systemd_restart")
    assert (mine["plugin"], mine["params_schema"]) == ("acme", RestartUnit.params_schema)
    assert {"webhook", "wait", "condition", "script", "notify", "approval"} <= {
        t["name"] for t in listed["items"]
    }
    document = await (await client.get("/api/v1/openapi.json")).json()
    definition = document["components"]["schemas"]["PlaybookIn"]
    step = definition["properties"]["steps"]["items"]
    assert "acme.systemd_restart" in step["properties"]["type"]["enum"]
    clause = next(
        c for c in step["allOf"] if c["if"]["properties"]["type"]["const"] == "acme.systemd_restart"
    )
    assert (
        clause["then"]["properties"]["params"]["properties"]
        == RestartUnit.params_schema["properties"]
    )
    body = document["paths"]["/api/v1/playbooks/{slug}"]["put"]["requestBody"]
    assert body["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/PlaybookIn"
    }


def test_a_third_party_step_type_named_like_a_built_in_stops_medic(
    tmp_path: Path, clock: FakeClock
) -> None:
    class Clash:
        @hookimpl
        def medic_step_types(self) -> list[Any]:
            step = RestartUnit()
            step.name = "script"
            return [step]

    settings = make_settings(f"sqlite:///{tmp_path}/m.db", tmp_path)
    with pytest.raises(StepTypeError, match="'script' is offered by two plugins") as raised:
        Medic(settings, clock=clock, plugins=[("x", Clash())])
    assert "'steps'" in str(raised.value) and "'x'" in str(raised.value)
