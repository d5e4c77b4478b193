"""The OpenAPI document names every answer, so generated clients get a model for each.

- every JSON success response is a ``$ref`` to a named component (no inline or bare ``object``);
  list answers are pages whose ``items`` are a named component;
- every object component declares ``required`` (and nullability in its types);
- operationIds are the stable camelCase names of the route table;
- X-Request-Id is declared on every answer, Retry-After on 429/503, WWW-Authenticate on 401;
- every ``limit`` is bounded and every integer id is typed as an integer.

That the components match what the server writes is proven by every API test: the ``client``
fixture checks each success against them (tests/support/response_check.py).
"""

from __future__ import annotations

from typing import Any

from aiohttp.test_utils import TestClient

METHODS = {"get", "post", "patch", "put", "delete"}
REF = "#/components/schemas/"


async def fetch(client: TestClient) -> dict[str, Any]:
    response = await client.get("/api/v1/openapi.json")
    assert response.status == 200
    return await response.json()


def operations(document: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (method.upper(), path, op)
        for path, item in document["paths"].items()
        for method, op in item.items()
        if method in METHODS
    ]


def component(document: dict[str, Any], ref: str) -> dict[str, Any]:
    assert ref.startswith(REF), ref
    found: dict[str, Any] = document["components"]["schemas"][ref.removeprefix(REF)]
    return found


async def test_every_json_success_is_a_named_component(client: TestClient) -> None:
    document = await fetch(client)
    for method, path, op in operations(document):
        for status, response in op["responses"].items():
            if not status.startswith("2") or "content" not in response:
                continue
            content = response["content"]
            if "application/json" not in content:
                assert set(content) <= {"text/plain"}, (method, path)
                continue
            schema = content["application/json"]["schema"]
            assert set(schema) == {"$ref"}, (method, path, schema)
            named = component(document, schema["$ref"])
            if schema["$ref"].endswith("Page"):
                items = named["properties"]["items"]["items"]
                assert set(items) == {"$ref"}, (method, path)
                component(document, items["$ref"])


async def test_every_object_component_declares_required_properties(client: TestClient) -> None:
    document = await fetch(client)
    for name, schema in document["components"]["schemas"].items():
        if schema.get("type") == "object" and "properties" in schema:
            assert "required" in schema, name
            assert set(schema["required"]) <= set(schema["properties"]), name


async def test_the_main_resources_are_components(client: TestClient) -> None:
    names = set((await fetch(client))["components"]["schemas"])
    assert {
        "Service", "Alert", "Heartbeat", "HeartbeatAccepted", "BatchResult", "Run", "ApiKey",
        "ApiKeyCreated", "AuditEntry", "Team", "MaintenanceWindow", "Schedule",
        "EscalationPolicy", "Target", "Delivery", "Agent", "Execution", "Problem", "HeartbeatIn",
    } <= names  # fmt: skip


async def test_operation_ids_are_the_stable_names(client: TestClient) -> None:
    document = await fetch(client)
    ids = {(method, path): op["operationId"] for method, path, op in operations(document)}
    assert ids[("POST", "/api/v1/services")] == "createService"
    assert ids[("POST", "/api/v1/heartbeats")] == "sendHeartbeat"
    assert ids[("POST", "/api/v1/heartbeats:batch")] == "sendHeartbeatBatch"
    assert ids[("POST", "/api/v1/alerts/{id}/ack")] == "acknowledgeAlert"
    assert ids[("POST", "/api/v1/alerts/{id}/resolve")] == "resolveAlert"
    assert all(name[0].islower() and name.isalnum() for name in ids.values())
    assert len(set(ids.values())) == len(ids)


async def test_headers_are_declared(client: TestClient) -> None:
    document = await fetch(client)
    assert {"X-Request-Id", "Retry-After", "WWW-Authenticate"} <= set(
        document["components"]["headers"]
    )
    for method, path, op in operations(document):
        for status, response in op["responses"].items():
            headers = response["headers"]
            assert "X-Request-Id" in headers, (method, path, status)
            if status in ("429", "503"):
                assert "Retry-After" in headers, (method, path, status)
            if status == "401":
                assert "WWW-Authenticate" in headers, (method, path, status)


async def test_every_limit_is_bounded_and_integer_ids_are_integers(client: TestClient) -> None:
    document = await fetch(client)
    limits = 0
    for method, path, op in operations(document):
        for param in op.get("parameters", []):
            schema = param["schema"]
            if param["name"] == "limit":
                limits += 1
                assert (schema["type"], schema["minimum"]) == ("integer", 1), (method, path)
                assert schema["maximum"] <= 500, (method, path)
            if param["name"] in ("id", "alert") and "string" not in str(schema.get("type")):
                assert schema["type"] == "integer", (method, path)
    assert limits >= 10
    for name, schema in document["components"]["schemas"].items():
        for key in ("id", "alert_id"):
            prop = schema.get("properties", {}).get(key)
            if prop is None or name in ("Agent",) or name.startswith("Execution"):
                continue
            if name.startswith("PlaybookRun") and key == "alert_id":
                # A run started by hand has no alert: an integer or null.
                assert prop["type"] == ["integer", "null"], (name, key)
            else:
                assert prop["type"] == "integer", (name, key)
