"""Every route declares its scope; this walks the route table and proves each one is enforced.

Also: oversized bodies (413), per-key rate limits (429 and RateLimit-* headers), unknown routes
and methods, and unexpected errors (500 without a stack trace) -- all as problem documents.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from conftest import auth, make_settings
from medic_core.app import Medic
from medic_core.audit import Actor
from medic_core.auth import SCOPES, grants
from medic_core.clock import FakeClock
from medic_core.server.http.app import build_app, route_table
from medic_core.server.http.routing import PUBLIC, Route

PROBLEM = "application/problem+json"
ME = Actor("test")
ROUTES = route_table().routes
PROTECTED = [r for r in ROUTES if r.scope != PUBLIC]
#: Public routes that authenticate by a signature instead of a key (their own tests attack it:
#: tests/integration/test_playbook_inbound_webhook.py).
SIGNED = {"POST /api/v1/playbooks/{slug}/webhook"}
PUBLIC_ROUTES = [r for r in ROUTES if r.scope == PUBLIC and f"{r.method} {r.path}" not in SIGNED]
# Plausible values for path parameters; none of them exists, so a request that gets past
# authentication can only fail later (404, 400, 422), never change anything.
PATH_VALUES = {
    "slug": "nightly-backup", "id": "4242", "key": "4242", "signal": "start", "version": "1",
    "name": "NOTHING_HERE",
}  # fmt: skip
UNKNOWN_TOKEN = "medic_0123456789ab_" + "A" * 43
MALFORMED = [
    {"Authorization": "Bearer not-a-medic-key"},
    {"Authorization": "Basic dXNlcjpwYXNz"},
    {"Authorization": "Bearer "},
    {"Authorization": "Bearer medic_only-one-part"},
    {"X-Api-Key": "letmein"},
]


def route_id(route: Route) -> str:
    return f"{route.method} {route.path}"


def url(route: Route) -> str:
    return re.sub(r"{(\w+)}", lambda m: PATH_VALUES[m.group(1)], route.path)


def weaker_scope(required: str) -> str:
    """A scope that does not grant ``required`` (``agent`` grants nothing but itself)."""
    candidates = ["agent", *SCOPES]
    return next(s for s in candidates if not grants([s], required))


async def call(client: TestClient, route: Route, headers: dict[str, str]) -> Any:
    kwargs: dict[str, Any] = {"headers": headers}
    if route.method in ("POST", "PATCH"):
        kwargs["json"] = {}
    return await client.request(route.method, url(route), **kwargs)


async def problem_of(response: Any, status: int) -> dict[str, Any]:
    assert response.status == status, await response.text()
    assert response.content_type == PROBLEM
    body = await response.json()
    assert body["status"] == status
    assert body["title"] and body["detail"]
    return body


def test_route_table_covers_the_api_and_every_route_declares_a_known_scope() -> None:
    assert len(PROTECTED) >= 30
    assert {r.scope for r in ROUTES} <= {PUBLIC, *SCOPES}
    assert {route_id(r) for r in PUBLIC_ROUTES} == {
        "GET /health", "GET /health/ready", "GET /metrics", "GET /api/v1/openapi.json"
    }
    assert {route_id(r) for r in ROUTES if r.scope == PUBLIC} - {
        route_id(r) for r in PUBLIC_ROUTES
    } == SIGNED
    assert all(m in PATH_VALUES for r in ROUTES for m in re.findall(r"{(\w+)}", r.path))
    # Every protected route must be refusable by some scope, or the 403 walk proves nothing.
    assert all(weaker_scope(r.scope) for r in PROTECTED)


# -- authentication and authorization on every route --------------------------------------------


@pytest.mark.parametrize("route", PROTECTED, ids=route_id)
async def test_protected_route_refuses_a_request_without_a_key(
    client: TestClient, route: Route
) -> None:
    response = await call(client, route, {})
    body = await problem_of(response, 401)
    assert response.headers["WWW-Authenticate"] == 'Bearer realm="medic"'
    assert route.scope in body["detail"]


@pytest.mark.parametrize("route", PROTECTED, ids=route_id)
async def test_protected_route_refuses_malformed_and_unknown_keys(
    client: TestClient, medic: Medic, admin_token: str, route: Route
) -> None:
    for headers in [*MALFORMED, auth(UNKNOWN_TOKEN), {"X-Api-Key": UNKNOWN_TOKEN},
                    auth(admin_token[:-1] + ("B" if admin_token[-1] != "B" else "C"))]:
        response = await call(client, route, headers)
        await problem_of(response, 401)
        assert response.headers["WWW-Authenticate"].startswith("Bearer"), headers


@pytest.mark.parametrize("route", PROTECTED, ids=route_id)
async def test_protected_route_refuses_a_key_without_its_scope(
    client: TestClient, medic: Medic, admin_token: str, route: Route
) -> None:
    scope = weaker_scope(route.scope)
    _, token = await medic.keys.create(name="too weak", scopes=[scope], actor=ME)
    response = await call(client, route, auth(token))
    body = await problem_of(response, 403)
    assert repr(route.scope) in body["detail"]


@pytest.mark.parametrize("route", PROTECTED, ids=route_id)
async def test_protected_route_admits_a_key_with_exactly_its_scope(
    client: TestClient, medic: Medic, admin_token: str, route: Route
) -> None:
    _, token = await medic.keys.create(name="just enough", scopes=[route.scope], actor=ME)
    for headers in (auth(token), {"X-Api-Key": token}):
        response = await call(client, route, headers)
        # Past auth the request fails on the made-up resource or empty body, or succeeds.
        assert response.status not in (401, 403, 405, 500), (route_id(route), response.status)


@pytest.mark.parametrize("route", PUBLIC_ROUTES, ids=route_id)
async def test_public_route_answers_without_a_key(client: TestClient, route: Route) -> None:
    response = await call(client, route, {})
    assert response.status == 200, await response.text()
    assert "WWW-Authenticate" not in response.headers


async def test_bearer_scheme_is_case_insensitive(client: TestClient, admin_token: str) -> None:
    response = await client.get("/api/v1/services",
                                headers={"Authorization": f"bearer {admin_token}"})
    assert response.status == 200


# -- body size -----------------------------------------------------------------------------------


@asynccontextmanager
async def serving(
    db_url: str, tmp_path: Path, clock: FakeClock, **settings: Any
) -> AsyncIterator[tuple[Medic, TestClient, str]]:
    medic = Medic(make_settings(db_url, tmp_path, **settings), clock=clock)
    await medic.start(monitor=False)
    try:
        token = await medic.ensure_admin_key()
        assert token is not None
        async with TestClient(TestServer(build_app(medic))) as client:
            yield medic, client, token
    finally:
        await medic.stop()


async def test_body_over_max_body_bytes_is_a_413_problem(
    db_url: str, tmp_path: Path, clock: FakeClock
) -> None:
    async with serving(db_url, tmp_path, clock, max_body_bytes=1024) as (medic, client, token):
        big = {"slug": "svc", "expectation": {"kind": "interval", "period": 60},
               "description": "x" * 2000}
        response = await client.post("/api/v1/services", json=big, headers=auth(token))
        await problem_of(response, 413)
        assert (await medic.services.list()).items == []
        small = {**big, "description": "x" * 500}
        assert (await client.post("/api/v1/services", json=small,
                                  headers=auth(token))).status == 201
        batch = {"heartbeats": [{"service": "svc"}] * 100}
        response = await client.post("/api/v1/heartbeats:batch", json=batch,
                                     headers=auth(token))
        await problem_of(response, 413)


# -- rate limits ---------------------------------------------------------------------------------


async def test_rate_limit_per_key_answers_429_with_retry_after_and_ratelimit_headers(
    db_url: str, tmp_path: Path, clock: FakeClock
) -> None:
    async with serving(db_url, tmp_path, clock, rate_limit=1, rate_burst=2) as (
        medic, client, token
    ):
        first = await client.get("/api/v1/services", headers=auth(token))
        second = await client.get("/api/v1/services", headers=auth(token))
        third = await client.get("/api/v1/services", headers=auth(token))
        for response, remaining in ((first, "1"), (second, "0")):
            assert response.status == 200
            assert response.headers["RateLimit-Limit"] == "2"
            assert response.headers["RateLimit-Remaining"] == remaining
            assert int(response.headers["RateLimit-Reset"]) >= 1
        body = await problem_of(third, 429)
        assert "rate limit" in body["detail"]
        assert third.headers["Retry-After"] == "1"
        assert third.headers["RateLimit-Limit"] == "2"
        assert third.headers["RateLimit-Remaining"] == "0"
        assert int(third.headers["RateLimit-Reset"]) >= 1

        # The limit is per key: another key still gets through.
        _, other = await medic.keys.create(name="other", scopes=["read"], actor=ME)
        response = await client.get("/api/v1/services", headers=auth(other))
        assert response.status == 200
        assert response.headers["RateLimit-Remaining"] == "1"
        # Public routes are not counted and carry no RateLimit headers.
        health = await client.get("/health")
        assert health.status == 200 and "RateLimit-Limit" not in health.headers


# -- unknown routes, wrong methods, crashes ------------------------------------------------------


@pytest.mark.parametrize("path", ["/api/v1/nothing-here", "/api/v2/services", "/"])
async def test_unknown_route_is_a_404_problem(client: TestClient, path: str) -> None:
    response = await client.get(path)
    body = await problem_of(response, 404)
    assert "openapi.json" in body["detail"]
    assert body["request_id"] == response.headers["X-Request-Id"]


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [("PUT", "/api/v1/services", {"GET", "POST"}),
     ("DELETE", "/api/v1/alerts", {"GET"}),
     ("POST", "/health", {"GET"})],
)
async def test_wrong_method_is_a_405_problem_with_allow(
    client: TestClient, method: str, path: str, allowed: set[str]
) -> None:
    response = await client.request(method, path)
    await problem_of(response, 405)
    assert set(response.headers["Allow"].split(",")) == allowed


async def test_unexpected_exception_is_a_500_problem_without_a_stack_trace(
    client: TestClient, medic: Medic, admin_token: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def explode(**_kwargs: Any) -> None:
        raise RuntimeError("db password is hunter2 at /srv/medic/registry.py line 42")

    monkeypatch.setattr(medic.services, "list", explode)
    response = await client.get(
        "/api/v1/services", headers={**auth(admin_token), "X-Request-Id": "trace-me-500"}
    )
    body = await problem_of(response, 500)
    text = await response.text()
    for leak in ("Traceback", "RuntimeError", "hunter2", "registry.py", 'File "'):
        assert leak not in text
    assert body["request_id"] == "trace-me-500" == response.headers["X-Request-Id"]
    # The process is fine: the next request is served.
    monkeypatch.undo()
    assert (await client.get("/api/v1/services", headers=auth(admin_token))).status == 200


@pytest.mark.parametrize(
    "path",
    ["/api/v1/services/a%00b", "/api/v1/services?q=a%00b", "/api/v1/audit?actor=x%00",
     "/api/v1/ping/svc?run_id=r%00", "/api/v1/services?%00=1"],
)
async def test_nul_in_the_url_is_a_400_problem_not_a_500(
    client: TestClient, admin_token: str, path: str
) -> None:
    response = await client.get(path, headers=auth(admin_token))
    assert "NUL" in (await problem_of(response, 400))["detail"]


async def test_nul_in_a_json_body_is_a_422_naming_the_field(
    client: TestClient, admin_token: str
) -> None:
    body = {"slug": "svc", "expectation": {"kind": "interval", "period": 60},
            "description": "line one\x00", "tags": ["ok"]}
    response = await client.post("/api/v1/services", json=body, headers=auth(admin_token))
    assert (await problem_of(response, 422))["field"] == "description"
    body = {"name": "w", "selector": {"services": ["svc", "b\x00"]},
            "starts_at": "2026-03-01T00:00:00Z", "ends_at": "2026-03-02T00:00:00Z"}
    response = await client.post("/api/v1/maintenance-windows", json=body,
                                 headers=auth(admin_token))
    assert (await problem_of(response, 422))["field"] == "selector.services[1]"


async def test_deeply_nested_json_is_refused_cleanly(client: TestClient, admin_token: str) -> None:
    nested = "[" * 5000 + "]" * 5000
    response = await client.post(
        "/api/v1/services", data=f'{{"slug": "svc", "description": {nested}}}'.encode(),
        headers={**auth(admin_token), "Content-Type": "application/json"},
    )
    assert response.status in (400, 422)
    assert response.content_type == PROBLEM


async def test_every_response_carries_a_request_id(client: TestClient, admin_token: str) -> None:
    for response in (await client.get("/health"),
                     await client.get("/api/v1/services"),
                     await client.get("/api/v1/services", headers=auth(admin_token))):
        assert len(response.headers["X-Request-Id"]) >= 16
    echoed = await client.get("/health", headers={"X-Request-Id": "abc-123"})
    assert echoed.headers["X-Request-Id"] == "abc-123"
