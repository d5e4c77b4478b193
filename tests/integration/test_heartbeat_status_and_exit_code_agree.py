"""A heartbeat's status and exit code never disagree, and no schema default decides for the client.

The Heartbeat schema has no ``default`` for ``status``: a generated client that filled it in
would send ``ok`` for a job that exited 3. Left out, the server decides (``ok``, or the exit
code's ``success``/``fail``); given, a status the exit code contradicts is a 422.
"""

from __future__ import annotations

from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from sqlalchemy import func, select

from conftest import auth
from medic_core.app import Medic
from medic_core.audit import Actor
from medic_core.store.models import Heartbeat

HEARTBEATS = "/api/v1/heartbeats"
BATCH = "/api/v1/heartbeats:batch"


@pytest.fixture
async def token(medic: Medic, admin_token: str) -> str:
    await medic.services.create(
        {"slug": "backup", "expectation": {"kind": "interval", "period": 60}}, actor=Actor("t")
    )
    _, beat = await medic.keys.create(name="cron", scopes=["heartbeat"], actor=Actor("t"))
    return beat


async def stored(medic: Medic) -> int:
    async with medic.db.sessions() as session:
        return int(await session.scalar(select(func.count()).select_from(Heartbeat)) or 0)


async def test_the_documented_status_has_no_default(client: TestClient) -> None:
    document = await (await client.get("/api/v1/openapi.json")).json()
    status = document["components"]["schemas"]["HeartbeatIn"]["properties"]["status"]
    assert "default" not in status


@pytest.mark.parametrize(
    ("status", "exit_code", "meant"),
    [("ok", 3, "fail"), ("success", 1, "fail"), ("fail", 0, "success"), ("start", 0, "success")],
)
async def test_a_status_the_exit_code_contradicts_is_a_422_and_nothing_is_stored(
    client: TestClient, medic: Medic, token: str, status: str, exit_code: int, meant: str
) -> None:
    body = {"service": "backup", "status": status, "exit_code": exit_code}
    response = await client.post(HEARTBEATS, json=body, headers=auth(token))
    assert response.status == 422, await response.text()
    problem = await response.json()
    assert problem["field"] == "status"
    assert f"contradicts exit_code {exit_code}" in problem["detail"]
    assert f"send status {meant!r}" in problem["detail"]
    assert await stored(medic) == 0


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ({"exit_code": 0}, "success"),
        ({"exit_code": 3}, "fail"),
        ({"status": "fail", "exit_code": 3}, "fail"),
        ({"status": "success", "exit_code": 0}, "success"),
        ({"status": "ok", "exit_code": 0}, "ok"),
        ({}, "ok"),
    ],
)
async def test_agreeing_or_derived_statuses_are_stored(
    client: TestClient, token: str, body: dict[str, Any], status: str
) -> None:
    response = await client.post(
        HEARTBEATS, json={"service": "backup", **body}, headers=auth(token)
    )
    assert response.status == 201, await response.text()
    assert (await response.json())["status"] == status


async def test_a_contradicting_batch_item_is_refused_alone(
    client: TestClient, medic: Medic, token: str
) -> None:
    items = [
        {"service": "backup", "status": "ok", "exit_code": 2},
        {"service": "backup", "exit_code": 2},
    ]
    response = await client.post(BATCH, json={"heartbeats": items}, headers=auth(token))
    assert response.status == 200
    first, second = (await response.json())["results"]
    assert (first["ok"], first["error"]["status"], first["error"]["field"]) == (
        False,
        422,
        "heartbeats[0].status",
    )
    assert second["heartbeat"]["status"] == "fail"
    assert await stored(medic) == 1
