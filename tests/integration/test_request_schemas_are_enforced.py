"""Every route's documented request schema is the one the server enforces.

For each operation with a request body in the served OpenAPI document: a body valid by that
schema (built from the schema itself) passes the schema check, and bodies that break it -- one
per property with a value of a wrong kind, and one with an unknown field -- are refused with the
422 problem the *documented* schema's validator produces (same detail, same field), before the
handler runs (the path names nothing that exists: a handler would answer 404).
"""

from __future__ import annotations

import re
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from jsonschema import Draft202012Validator

from conftest import auth
from medic_core.errors import ValidationError
from medic_core.server.http.bodies import FORMATS, BodySchema

#: Values of every JSON kind: a property is broken with the first its schema refuses.
WRONG_KINDS: tuple[Any, ...] = ({"unexpected": [1]}, [{"unexpected": 1}], 1.5, True, "", None)
PATH_VALUES = {"slug": "nothing-here", "id": "4242", "key": "4242", "name": "NOTHING_HERE"}
METHODS = ("post", "patch", "put")


@pytest.fixture(params=["sqlite"])
def db_url(request: pytest.FixtureRequest, tmp_path: Any) -> str:
    # The schema check runs before any database access: one database is enough.
    import shutil

    template = request.getfixturevalue("sqlite_template")
    target = tmp_path / "medic.db"
    shutil.copy(template, target)
    return f"sqlite:///{target}"


def minimal(schema: dict[str, Any]) -> Any:
    """The smallest instance the schema accepts (enough of the keywords Medic's schemas use)."""
    if "examples" in schema:
        return schema["examples"][0]
    if "const" in schema:
        return schema["const"]
    if "enum" in schema:
        return next(value for value in schema["enum"] if value is not None)
    if "oneOf" in schema:
        return minimal(schema["oneOf"][0])
    kind = schema.get("type")
    kind = next(k for k in kind if k != "null") if isinstance(kind, list) else kind
    if kind == "object" or "properties" in schema:
        props = schema.get("properties", {})
        return {name: minimal(props[name]) for name in schema.get("required", [])}
    if kind == "array":
        return [minimal(schema.get("items", {}))] * schema.get("minItems", 0)
    if kind == "integer":
        return max(schema.get("minimum", 1), 1)
    if kind == "boolean":
        return True
    if schema.get("format") == "date-time":
        return "2026-03-01T02:00:00Z"
    if kind == "string":
        return "a" * max(schema.get("minLength", 1), 1)
    return {}


def cases(document: dict[str, Any]) -> list[tuple[str, str, dict[str, Any], Any]]:
    """(method, path, documented schema, a body breaking it) for every operation with a body."""
    found = []
    for path, item in document["paths"].items():
        for method, operation in item.items():
            if method not in METHODS or "requestBody" not in operation:
                continue
            schema = operation["requestBody"]["content"]["application/json"]["schema"]
            if "$ref" in schema:  # a named request body: HeartbeatIn
                name = schema["$ref"].removeprefix("#/components/schemas/")
                schema = document["components"]["schemas"][name]
            checker = Draft202012Validator(schema, format_checker=FORMATS)
            base = minimal(schema)
            assert checker.is_valid(base), (method, path, base)
            for name in schema.get("properties", {}):
                for wrong in WRONG_KINDS:
                    broken = {**base, name: wrong}
                    if not checker.is_valid(broken):
                        found.append((method, path, schema, broken))
                        break
                else:
                    raise AssertionError(f"{method} {path}: nothing breaks {name!r}")
            found.append((method, path, schema, {**base, "not_a_field": 1}))
    return found


def expected_problem(schema: dict[str, Any], body: Any) -> ValidationError:
    with pytest.raises(ValidationError) as raised:
        BodySchema(schema).check(body)
    return raised.value


async def test_a_body_breaking_the_documented_schema_gets_that_schemas_422(
    client: TestClient, admin_token: str
) -> None:
    document = await (await client.get("/api/v1/openapi.json")).json()
    checked = cases(document)
    routes_with_bodies = {(method, path) for method, path, _, _ in checked}
    assert len(routes_with_bodies) >= 15
    for method, path, schema, body in checked:
        url = re.sub(r"{(\w+)}", lambda m: PATH_VALUES[m.group(1)], path)
        response = await client.request(method, url, json=body, headers=auth(admin_token))
        where = f"{method.upper()} {path} {body}"
        assert response.status == 422, (where, await response.text())
        problem = await response.json()
        expected = expected_problem(schema, body)
        assert (problem["detail"], problem.get("field")) == (expected.message, expected.field), (
            where
        )
        assert problem["field"], where  # every refusal names the field


async def test_an_optional_body_may_be_left_out(client: TestClient, admin_token: str) -> None:
    document = await (await client.get("/api/v1/openapi.json")).json()
    mute = document["paths"]["/api/v1/services/{slug}/mute"]["post"]["requestBody"]
    resolve = document["paths"]["/api/v1/alerts/{id}/resolve"]["post"]["requestBody"]
    assert (mute["required"], resolve["required"]) == (False, False)
    # No body: past the schema check to the handler, which knows no such service.
    response = await client.post("/api/v1/services/nothing-here/mute", headers=auth(admin_token))
    assert response.status == 404
