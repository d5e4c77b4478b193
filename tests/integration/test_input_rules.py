"""Input rules every route follows: bounded integers, no empty filters, no echo of what was sent.

- An integer from outside (query, path) is bounded to its column (64-bit signed; positive ids),
  and tighter where the route declares it: too large is a 422, never a 500 from the driver.
- An empty query value (``?target=``) is a 422 on every route, never "no filter".
- Error messages quote a value at most ``QUOTE_MAX`` characters long (cut and marked), and never
  a notifier secret (``writeOnly``), whatever its type.
"""

from __future__ import annotations

import inspect
import re
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from conftest import auth
from medic_core.app import Medic
from medic_core.audit import Actor
from medic_core.server.http.app import route_table
from medic_core.server.http.routing import Route
from medic_core.validation import ANNOTATION_KEYWORDS, CHECKED_KEYWORDS, QUOTE_MAX

ME = Actor("test")
ROUTES = route_table().routes
QUERY_ROUTES = [r for r in ROUTES if r.query]
PATH_VALUES = {"slug": "nightly-backup", "id": "4242", "key": "4242", "signal": "start"}
BEYOND_64_BITS = "99999999999999999999999"


def route_id(route: Route) -> str:
    return f"{route.method} {route.path}"


def url(route: Route) -> str:
    return re.sub(r"{(\w+)}", lambda m: PATH_VALUES[m.group(1)], route.path)


async def problem(response: Any, status: int = 422) -> dict[str, Any]:
    assert response.status == status, await response.text()
    assert response.content_type == "application/problem+json"
    body: dict[str, Any] = await response.json()
    return body


# -- integers -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    [
        f"/api/v1/deliveries?alert={BEYOND_64_BITS}",
        f"/api/v1/deliveries?alert={2**63}",
        "/api/v1/deliveries?alert=0",
        f"/api/v1/alerts?limit={BEYOND_64_BITS}",
        f"/api/v1/audit?limit={BEYOND_64_BITS}",
        f"/api/v1/alerts/{BEYOND_64_BITS}",
        f"/api/v1/maintenance-windows/{2**63}",
    ],
)
async def test_an_integer_beyond_its_column_is_a_422_not_a_500(
    client: TestClient, admin_token: str, path: str
) -> None:
    body = await problem(await client.get(path, headers=auth(admin_token)))
    assert body["field"] in ("alert", "limit", "id")


async def test_the_largest_id_is_a_plain_not_found(client: TestClient, admin_token: str) -> None:
    response = await client.get(f"/api/v1/deliveries?alert={2**63 - 1}", headers=auth(admin_token))
    assert response.status == 200
    response = await client.get(f"/api/v1/alerts/{2**63 - 1}", headers=auth(admin_token))
    assert response.status == 404


@pytest.mark.parametrize("value", ["1.5", "+1", "1_000", "٣", " 1", "0x10", "1e3"])
async def test_an_integer_query_value_must_be_plain_decimal_digits(
    client: TestClient, admin_token: str, value: str
) -> None:
    response = await client.get(
        "/api/v1/deliveries", params={"alert": value}, headers=auth(admin_token)
    )
    assert (await problem(response))["field"] == "alert"


# -- empty and repeated query values ------------------------------------------------------------


@pytest.mark.parametrize(
    ("route", "name"),
    [(r, q.name) for r in QUERY_ROUTES for q in r.query],
    ids=lambda x: route_id(x) if isinstance(x, Route) else x,
)
async def test_an_empty_query_value_is_refused_on_every_route(
    client: TestClient, admin_token: str, route: Route, name: str
) -> None:
    response = await client.request(
        route.method, f"{url(route)}?{name}=", headers=auth(admin_token)
    )
    body = await problem(response)
    assert body["field"] == name
    assert "empty" in body["detail"]


async def test_retry_failed_with_an_empty_target_redrives_nothing(
    client: TestClient, medic: Medic, admin_token: str
) -> None:
    calls: list[Any] = []

    async def redrive_failed(**kwargs: Any) -> int:
        calls.append(kwargs)
        return 0

    medic.delivery.redrive_failed = redrive_failed  # type: ignore[method-assign]
    response = await client.post(
        "/api/v1/deliveries:retry-failed?target=", headers=auth(admin_token)
    )
    assert (await problem(response))["field"] == "target"
    assert calls == []  # refused before anything was re-driven


async def test_a_repeated_query_parameter_is_refused(client: TestClient, admin_token: str) -> None:
    response = await client.get("/api/v1/services?team=a&team=b", headers=auth(admin_token))
    body = await problem(response)
    assert body["field"] == "team" and "2 times" in body["detail"]


@pytest.mark.parametrize(
    ("path", "field"),
    [
        ("/api/v1/services?team=Not_A_Slug", "team"),
        ("/api/v1/deliveries:retry-failed?target=UPPER", "target"),
        ("/api/v1/alerts?state=sideways", "state"),
        ("/api/v1/alerts?limit=501", "limit"),
        ("/api/v1/executions/some-id?output=hex", "output"),
        (f"/api/v1/ping/nightly-backup?run_id={'r' * 201}", "run_id"),
    ],
)
async def test_a_query_value_breaking_its_declared_rule_is_a_422(
    client: TestClient, admin_token: str, path: str, field: str
) -> None:
    method = "POST" if "retry-failed" in path else "GET"
    response = await client.request(method, path, headers=auth(admin_token))
    assert (await problem(response))["field"] == field


def test_every_declared_parameter_rule_is_one_the_server_checks() -> None:
    allowed = CHECKED_KEYWORDS | ANNOTATION_KEYWORDS
    for route in ROUTES:
        for schema in [q.schema for q in route.query] + list(route.path_params.values()):
            assert set(schema) <= allowed, (route_id(route), schema)


def test_routes_reading_an_integer_from_the_path_declare_it_as_one() -> None:
    for route in ROUTES:
        source = inspect.getsource(route.handler)
        for name in re.findall(r'path_int\(request, "(\w+)"\)', source):
            declared = route.path_params.get(name, {})
            assert declared.get("type") == "integer", route_id(route)
            assert declared.get("maximum", 2**63) <= 2**63 - 1, route_id(route)


# -- what error messages quote ------------------------------------------------------------------


async def test_an_invalid_long_slug_is_not_echoed_whole(
    client: TestClient, admin_token: str
) -> None:
    slug = "X" * 500_000
    response = await client.post(
        "/api/v1/services",
        json={"slug": slug, "expectation": {"kind": "interval", "period": 60}},
        headers=auth(admin_token),
    )
    body = await problem(response)
    assert body["field"] == "slug"
    assert len(body["detail"]) < QUOTE_MAX + 300
    assert "X" * QUOTE_MAX not in body["detail"].replace("'", "")[QUOTE_MAX:]
    assert "cut: 500000 characters" in body["detail"]


async def test_a_long_unknown_reference_is_not_echoed_whole(
    client: TestClient, admin_token: str
) -> None:
    response = await client.get(
        f"/api/v1/agents/{'a' * 5000}/executions", headers=auth(admin_token)
    )
    body = await problem(response, 404)
    assert len(body["detail"]) < QUOTE_MAX + 100 and "cut: 5000 characters" in body["detail"]


@pytest.mark.parametrize(
    "config",
    [
        {"url": "https://hooks.example.com/x", "secret": 12345678901234567890},
        {"url": "https://hooks.example.com/x", "secret": ["s3cr3t-in-a-list-000"]},
        {"url": "https://hooks.example.com/x", "headers": {"X-Token": 98765432109876543210}},
    ],
    ids=["integer-secret", "list-secret", "integer-in-secret-headers"],
)
async def test_a_secret_of_the_wrong_type_is_not_echoed(
    client: TestClient, admin_token: str, config: dict[str, Any]
) -> None:
    response = await client.post(
        "/api/v1/targets",
        json={"slug": "hook", "notifier": "webhook", "config": config},
        headers=auth(admin_token),
    )
    body = await problem(response)
    for leaked in ("12345678901234567890", "s3cr3t-in-a-list-000", "98765432109876543210"):
        assert leaked not in body["detail"]
    assert "not shown" in body["detail"]


async def test_a_long_non_secret_config_value_is_cut_in_the_error(
    client: TestClient, admin_token: str
) -> None:
    response = await client.post(
        "/api/v1/targets",
        json={"slug": "hook", "notifier": "webhook", "config": {"url": "h" * 100_000}},
        headers=auth(admin_token),
    )
    body = await problem(response)
    assert body["field"].startswith("config")
    assert len(body["detail"]) < 2 * QUOTE_MAX + 300
