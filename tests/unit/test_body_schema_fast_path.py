"""The fast path of body checks may only skip work: it never accepts what jsonschema refuses."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator

from medic_core.server.http import schemas
from medic_core.server.http.app import route_table
from medic_core.server.http.bodies import FORMATS, BodySchema, fast_eligible

BODIES: dict[str, dict[str, Any]] = {
    f"{route.method} {route.path}": route.body
    for route in route_table().routes
    if route.body is not None and fast_eligible(route.body)
}
BODIES["heartbeat batch item"] = schemas.HEARTBEAT
COMPILED = {
    name: (BodySchema(schema), Draft202012Validator(schema, format_checker=FORMATS))
    for name, schema in BODIES.items()
}


def _names(schema: Any) -> set[str]:
    """Every property name the schema mentions, at any depth: keys the values will use."""
    found: set[str] = set()
    if isinstance(schema, dict):
        found.update(schema.get("properties", {}))
        for value in schema.values():
            found |= _names(value)
    elif isinstance(schema, list):
        for value in schema:
            found |= _names(value)
    return found


def _values(schema: dict[str, Any]) -> st.SearchStrategy[Any]:
    enums = [v for v in _enum_values(schema) if isinstance(v, str | int | float | bool)]
    scalars = st.one_of(
        st.none(),
        st.booleans(),
        st.integers(min_value=-(2**64), max_value=2**64),
        st.floats(allow_nan=False),
        st.sampled_from([0, 1, -1, 1.0, 0.0, 2**31, -(2**31) - 1, 2**31 - 1, True, False]),
        st.text(max_size=12),
        st.from_regex(r"[a-z0-9][a-z0-9._-]{0,8}", fullmatch=True),
        st.sampled_from(["", " ", "A", "-x", "x" * 101, "a\n", "ok", "fail"]),
        *([st.sampled_from(enums)] if enums else []),
    )
    keys = st.sampled_from(sorted(_names(schema) | {"other"}))
    return st.recursive(
        scalars,
        lambda inner: st.one_of(
            st.lists(inner, max_size=4),
            st.dictionaries(keys, inner, max_size=6),
        ),
        max_leaves=12,
    )


def _enum_values(schema: Any) -> list[Any]:
    found: list[Any] = []
    if isinstance(schema, dict):
        found.extend(schema.get("enum", []))
        if "const" in schema:
            found.append(schema["const"])
        for value in schema.values():
            found.extend(_enum_values(value))
    elif isinstance(schema, list):
        for value in schema:
            found.extend(_enum_values(value))
    return found


def test_the_ingest_bodies_have_a_fast_path() -> None:
    assert fast_eligible(schemas.HEARTBEAT) and fast_eligible(schemas.HEARTBEAT_BATCH)
    assert {"POST /api/v1/heartbeats", "POST /api/v1/heartbeats:batch"} <= set(BODIES)


def test_a_schema_with_a_format_has_no_fast_path() -> None:
    schema = {"type": "object", "properties": {"at": {"type": "string", "format": "date-time"}}}
    assert not fast_eligible(schema)
    assert BodySchema(schema).fast_accepts({"at": "yesterday"}) is False


@pytest.mark.parametrize("name", sorted(BODIES))
@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_the_fast_path_accepts_nothing_jsonschema_refuses(name: str, data: st.DataObject) -> None:
    schema = BODIES[name]
    body, strict = COMPILED[name]
    value = data.draw(
        st.one_of(
            _values(schema),
            st.fixed_dictionaries(
                {key: _values(schema) for key in schema.get("required", [])},
                optional={
                    key: _values(schema)
                    for key in schema.get("properties", {})
                    if key not in schema.get("required", [])
                },
            ),
        )
    )
    if body.fast_accepts(value):
        assert strict.is_valid(value), (name, value)
