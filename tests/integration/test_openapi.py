"""GET /api/v1/openapi.json is a valid OpenAPI 3.1 document that matches the served router."""

from __future__ import annotations

from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from openapi_spec_validator import OpenAPIV31SpecValidator, validate

from medic_core.server.http.app import route_table
from medic_core.server.http.routing import PUBLIC

METHODS = {"get", "put", "post", "delete", "options", "head", "patch", "trace"}


@pytest.fixture
async def document(client: TestClient) -> dict[str, Any]:
    response = await client.get("/api/v1/openapi.json")  # public: no key
    assert response.status == 200
    assert response.content_type == "application/json"
    return await response.json()


def operations(document: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    return {
        (method.upper(), path): op
        for path, item in document["paths"].items()
        for method, op in item.items()
        if method in METHODS
    }


def served(app: web.Application) -> set[tuple[str, str]]:
    """(method, path) of every route the aiohttp router serves, plugin integrations aside."""
    found = set()
    for route in app.router.routes():
        path = route.resource.canonical if route.resource is not None else ""
        if path.startswith("/integrations/"):
            continue
        found.add((route.method, path))
    return found


async def test_document_is_valid_openapi_3_1(document: dict[str, Any]) -> None:
    assert document["openapi"].startswith("3.1")
    validate(document, cls=OpenAPIV31SpecValidator)  # raises with the first problem found
    errors = list(OpenAPIV31SpecValidator(document).iter_errors())
    assert errors == []


async def test_every_served_route_is_documented_with_its_method(
    client: TestClient, document: dict[str, Any]
) -> None:
    routes = served(client.app)
    assert len(routes) >= 30
    assert routes - set(operations(document)) == set()


async def test_every_documented_operation_is_served(
    client: TestClient, document: dict[str, Any]
) -> None:
    assert set(operations(document)) - served(client.app) == set()


async def test_each_operation_declares_the_scope_its_route_enforces(
    document: dict[str, Any],
) -> None:
    ops = operations(document)
    declared = route_table().routes
    assert {(r.method, r.path) for r in declared} == set(ops)
    for route in declared:
        op = ops[(route.method, route.path)]
        assert op["x-medic-scope"] == route.scope, (route.method, route.path)
        if route.scope == PUBLIC:
            assert "security" not in op
            # A public route has no key to refuse: a 401 only where it says why (a signature).
            assert ("401" in op["responses"]) == ("401" in route.problems)
            if "401" in route.problems:
                assert op["responses"]["401"]["description"] == route.problems["401"]
        else:
            assert op["security"] == [{"bearer": []}, {"apiKeyHeader": []}]
            assert {"401", "403"} <= set(op["responses"])


async def test_operation_ids_are_unique_and_problems_are_referenced(
    document: dict[str, Any],
) -> None:
    ops = operations(document)
    ids = [op["operationId"] for op in ops.values()]
    assert len(ids) == len(set(ids))
    assert "Problem" in document["components"]["schemas"]
    for (method, path), op in ops.items():
        for status, response in op["responses"].items():
            if status.startswith(("4", "5")):
                schema = response["content"]["application/problem+json"]["schema"]
                assert schema == {"$ref": "#/components/schemas/Problem"}, (method, path, status)


async def test_documented_success_status_matches_what_the_route_answers(
    document: dict[str, Any],
) -> None:
    ops = operations(document)
    expected = {
        ("POST", "/api/v1/services"): "201",
        ("DELETE", "/api/v1/services/{slug}"): "204",
        ("POST", "/api/v1/heartbeats"): "201",
        ("POST", "/api/v1/heartbeats:batch"): "200",
        ("POST", "/api/v1/api-keys"): "201",
        ("GET", "/api/v1/ping/{slug}"): "200",
    }
    for key, status in expected.items():
        success = [s for s in ops[key]["responses"] if s.startswith("2")]
        assert success == [status], key
    ping = ops[("GET", "/api/v1/ping/{slug}")]["responses"]["200"]
    assert "text/plain" in ping["content"]
    assert "content" not in ops[("DELETE", "/api/v1/services/{slug}")]["responses"]["204"]


async def test_path_parameters_are_declared(document: dict[str, Any]) -> None:
    for (method, path), op in operations(document).items():
        in_path = {p["name"] for p in op.get("parameters", []) if p["in"] == "path"}
        assert in_path == set(path.replace("}", "{").split("{")[1::2]), (method, path)
