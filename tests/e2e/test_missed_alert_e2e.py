"""The whole loop through the real server process: a service misses its deadline, exactly one
``missed`` alert opens, and the next heartbeat resolves it. Plus the admin-key banner."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from support.server import TOKEN_RE, ServerProcess, fresh_postgres_url

pytestmark = pytest.mark.e2e

SLUG = "e2e-job"
PERIOD = 2
MAX_SLEEP = 0.5


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest) -> str:
    if request.param == "sqlite":
        return ""  # the server's default: SQLite in its data dir
    return fresh_postgres_url(request.getfixturevalue("pg_cluster"), "e2e_missed")


@pytest.fixture
def server(database_url: str, tmp_path: Path) -> Iterator[ServerProcess]:
    process = ServerProcess(
        tmp_path, database_url=database_url, env={"MEDIC_MONITOR_MAX_SLEEP": str(MAX_SLEEP)}
    )
    process.start()
    try:
        yield process
    finally:
        process.close()


def instant(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


async def get_json(http: aiohttp.ClientSession, path: str, **params: Any) -> Any:
    async with http.get(path, params=params) as response:
        body = await response.json(content_type=None)
        assert response.status == 200, (path, response.status, body)
        return body


async def missed_alerts(http: aiohttp.ClientSession) -> list[dict[str, Any]]:
    page = await get_json(http, "/api/v1/alerts", service=SLUG, cause="missed")
    return list(page["items"])


async def beat(http: aiohttp.ClientSession) -> dict[str, Any]:
    async with http.post("/api/v1/heartbeats", json={"service": SLUG}) as response:
        body = await response.json(content_type=None)
        assert response.status == 201, body
        return dict(body)


async def test_missed_alert_opens_once_and_heartbeat_resolves_it(server: ServerProcess) -> None:
    # MEDIC_ADMIN_KEY was supplied: the banner must not echo it, nor may the logs.
    assert server.admin_key
    assert "Medic is running at" in server.stdout
    assert server.admin_key not in server.stdout
    assert server.admin_key not in server.stderr
    assert TOKEN_RE.search(server.stdout) is None, server.stdout
    wrong = server.admin_key[:-1] + ("A" if server.admin_key[-1] != "A" else "B")
    assert await status_with(server.url, wrong) == 401

    async with aiohttp.ClientSession(server.url, headers=server.headers) as http:
        async with http.post(
            "/api/v1/services",
            json={
                "slug": SLUG,
                "name": "E2E job",
                "expectation": {"kind": "interval", "period": PERIOD},
            },
        ) as response:
            assert response.status == 201, await response.text()
        assert (await get_json(http, f"/api/v1/services/{SLUG}"))["state"] == "new"

        for _ in range(2):
            assert (await beat(http))["service_state"] == "up"
            await asyncio.sleep(0.2)
        due = instant((await get_json(http, f"/api/v1/services/{SLUG}"))["next_due"])
        assert await missed_alerts(http) == []

        # Stop sending: the monitor must open one missed alert shortly after the deadline.
        deadline = time.monotonic() + PERIOD + 10
        alerts: list[dict[str, Any]] = []
        while not alerts:
            assert time.monotonic() < deadline, "no missed alert within 10 s after the deadline"
            await asyncio.sleep(0.2)
            alerts = await missed_alerts(http)
        assert len(alerts) == 1, alerts
        alert = alerts[0]
        assert alert["state"] == "open"
        assert alert["service"]["slug"] == SLUG
        opened = instant(alert["opened_at"])
        assert opened >= due, f"alert opened at {opened}, before the deadline {due}"
        lag = (opened - due).total_seconds()
        assert lag < MAX_SLEEP + 3, f"alert opened {lag:.1f}s after the deadline"
        assert (await get_json(http, f"/api/v1/services/{SLUG}"))["state"] == "down"

        # ... and it stays exactly one while the service remains silent (several monitor passes).
        stable_until = time.monotonic() + PERIOD + 0.5
        while time.monotonic() < stable_until:
            await asyncio.sleep(0.5)
            again = await missed_alerts(http)
            assert [(a["id"], a["state"]) for a in again] == [(alert["id"], "open")], again

        # A heartbeat brings the service back: the alert resolves by itself.
        sent = time.monotonic()
        assert (await beat(http))["service_state"] == "up"
        resolved = await get_json(http, f"/api/v1/alerts/{alert['id']}")
        assert resolved["state"] == "resolved", resolved
        assert resolved["resolved_by"] == "system"
        assert resolved["resolved_at"] is not None
        state = (await get_json(http, f"/api/v1/services/{SLUG}"))["state"]
        if time.monotonic() - sent < PERIOD:  # (later it may rightly be late again)
            assert state == "up"
        unresolved = await get_json(http, "/api/v1/alerts", service=SLUG, unresolved="true")
        assert [a["id"] for a in unresolved["items"] if a["id"] == alert["id"]] == []

    assert server.stop() == 0, server.stderr


async def status_with(url: str, token: str, path: str = "/api/v1/services") -> int:
    headers = {"Authorization": f"Bearer {token}"}
    async with aiohttp.ClientSession(url) as http, http.get(path, headers=headers) as response:
        return response.status


async def test_generated_admin_key_is_printed_once_then_never_again(tmp_path: Path) -> None:
    server = ServerProcess(tmp_path, set_admin_key=False)
    try:
        server.start()
        tokens = set(TOKEN_RE.findall(server.stdout))
        assert len(tokens) == 1, f"expected one generated key in the banner:\n{server.stdout}"
        token = tokens.pop()
        assert token in [line.strip() for line in server.stdout.splitlines()], server.stdout
        assert "shown ONCE" in server.stdout
        assert token not in server.stderr, "the generated admin key must never be logged"
        assert await status_with(server.url, token, "/api/v1/api-keys") == 200
        assert server.stop() == 0, server.stderr

        server.start()  # same database: the key exists, nothing is generated or printed
        assert "Medic is running at" in server.stdout
        assert TOKEN_RE.search(server.stdout) is None, server.stdout
        assert token not in server.stderr
        assert await status_with(server.url, token, "/api/v1/api-keys") == 200
        assert server.stop() == 0, server.stderr
    finally:
        server.close()
