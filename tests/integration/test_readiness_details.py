"""``/health/ready`` is public, but its details are not.

Without a key (or with a bad one, or one without ``read``) it answers the overall status and
each check's name with ok or failing; targets are one ``targets`` check, so their slugs and
upstream errors stay private. A key granting ``read`` (which already reads every target's check)
sees each check's status, detail and criticality.
"""

from __future__ import annotations

from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from conftest import auth
from medic_core.app import Medic
from medic_core.audit import Actor
from medic_core.plugins.interfaces import HealthResult

ME = Actor("test")
SECRET_DETAIL = "401 from hooks.internal.example: token xoxb-leaky"


@pytest.fixture
def failing_target(medic: Medic) -> None:
    """A notification target whose last background test failed with a telling error."""
    medic.delivery.target_health["pager-internal"] = HealthResult("down", SECRET_DETAIL)


async def ready(client: TestClient, headers: dict[str, str] | None = None) -> dict[str, Any]:
    response = await client.get("/health/ready", headers=headers or {})
    assert response.status == 200, await response.text()
    body: dict[str, Any] = await response.json()
    return body


async def key(medic: Medic, scope: str) -> str:
    _, token = await medic.keys.create(name=f"{scope}-key", scopes=[scope], actor=ME)
    return str(token)


@pytest.mark.usefixtures("failing_target")
async def test_without_a_key_readiness_shows_only_names_and_ok_or_failing(
    client: TestClient,
) -> None:
    body = await ready(client)
    assert body["status"] == "ok"
    assert body["checks"] == {"database": {"status": "ok"}, "targets": {"status": "failing"}}
    text = str(body)
    assert "pager-internal" not in text and "xoxb" not in text and "sqlite" not in text
    assert "'read'" in body["detail"]


@pytest.mark.usefixtures("failing_target")
@pytest.mark.parametrize("scope", ["heartbeat", "agent"])
async def test_a_key_without_read_scope_gets_the_public_view(
    client: TestClient, medic: Medic, scope: str
) -> None:
    body = await ready(client, auth(await key(medic, scope)))
    assert "pager-internal" not in str(body) and "detail" not in body["checks"]["database"]


@pytest.mark.usefixtures("failing_target")
async def test_a_bad_key_gets_the_public_view_not_a_401(client: TestClient) -> None:
    body = await ready(client, auth("medic_0123456789ab_" + "A" * 43))
    assert set(body["checks"]) == {"database", "targets"}


@pytest.mark.usefixtures("failing_target")
@pytest.mark.parametrize("scope", ["read", "admin"])
async def test_a_key_with_read_scope_sees_every_detail(
    client: TestClient, medic: Medic, scope: str
) -> None:
    body = await ready(client, auth(await key(medic, scope)))
    target = body["checks"]["target:pager-internal"]
    assert target == {"status": "down", "detail": SECRET_DETAIL, "critical": False}
    assert body["checks"]["database"]["critical"] is True
    assert body["checks"]["database"]["status"] == "ok"


async def test_an_unready_server_says_so_without_a_key(
    client: TestClient, medic: Medic, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def database_down() -> dict[str, HealthResult]:
        return {"database": HealthResult("down", "OperationalError: db.internal:5432 refused")}

    monkeypatch.setattr(medic, "readiness", database_down)
    response = await client.get("/health/ready")
    assert response.status == 503
    body = await response.json()
    assert body["status"] == "unavailable"
    assert body["checks"] == {"database": {"status": "failing"}}
