"""What the API fuzzing run found the OpenAPI document to say wrongly, each fixed and pinned here.

The fuzzer (tests/integration/test_api_fuzz.py) sends requests that break the document and
expects them refused; where the server rightly accepted them, the document was wrong.
"""

from __future__ import annotations

from typing import Any

from aiohttp.test_utils import TestClient
from jsonschema import Draft202012Validator

from conftest import auth
from medic_core.app import Medic
from medic_core.audit import Actor

ME = Actor("test")


async def body_schema(client: TestClient, method: str, path: str) -> Draft202012Validator:
    document = await (await client.get("/api/v1/openapi.json")).json()
    schema = document["paths"][path][method]["requestBody"]["content"]["application/json"]
    return Draft202012Validator({**schema["schema"], "components": document["components"]})


async def test_mute_documents_that_until_may_be_null(
    client: TestClient, medic: Medic, admin_token: str
) -> None:
    await medic.services.create(
        {"slug": "backup", "expectation": {"kind": "interval", "period": 60}}, actor=ME
    )
    body: dict[str, Any] = {"until": None, "reason": "maintenance"}
    assert (await body_schema(client, "post", "/api/v1/services/{slug}/mute")).is_valid(body)
    response = await client.post(
        "/api/v1/services/backup/mute", json=body, headers=auth(admin_token)
    )
    assert response.status == 200, await response.text()
    assert (await response.json())["muted"] is True


async def test_batch_documents_that_any_item_is_taken_and_judged_on_its_own(
    client: TestClient, admin_token: str
) -> None:
    body = {"heartbeats": ["not an object", {"service": "x", "unknown": 1}]}
    schema = await body_schema(client, "post", "/api/v1/heartbeats:batch")
    assert schema.is_valid(body)
    assert not schema.is_valid({"heartbeats": []})
    response = await client.post("/api/v1/heartbeats:batch", json=body, headers=auth(admin_token))
    assert response.status == 200
    assert [r["ok"] for r in (await response.json())["results"]] == [False, False]


async def test_the_heartbeat_shape_is_still_documented_as_a_component(client: TestClient) -> None:
    document = await (await client.get("/api/v1/openapi.json")).json()
    heartbeat = document["components"]["schemas"]["HeartbeatIn"]
    assert heartbeat["required"] == ["service"]
    assert heartbeat["additionalProperties"] is False


async def test_path_ids_are_documented_as_bounded_integers(client: TestClient) -> None:
    document = await (await client.get("/api/v1/openapi.json")).json()
    (param,) = document["paths"]["/api/v1/alerts/{id}"]["get"]["parameters"]
    assert param["schema"] == {"type": "integer", "minimum": 1, "maximum": 2**63 - 1}
    (slug,) = document["paths"]["/api/v1/teams/{slug}"]["get"]["parameters"]
    assert slug["schema"]["pattern"].startswith("^[a-z0-9]")


async def test_string_query_values_are_documented_as_non_empty(client: TestClient) -> None:
    document = await (await client.get("/api/v1/openapi.json")).json()
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            for param in operation.get("parameters", []):
                schema = param["schema"]
                if param["in"] == "query" and schema.get("type") == "string":
                    assert schema.get("minLength") == 1 or "pattern" in schema, (
                        method,
                        path,
                        param["name"],
                    )
