"""The outbox survives a crash: an alert opens while its webhook receiver is down, the server is
killed (SIGKILL), the receiver comes back, the server restarts -- and the notification arrives
exactly once, signed as the docs say."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import aiohttp
import pytest
from sqlalchemy import select

from medic_core.store import Database
from medic_core.store.models import Delivery, NotificationTarget
from support.fakes.webhook_receiver import WebhookReceiver
from support.postgres import free_port
from support.server import ServerProcess, fresh_postgres_url

pytestmark = pytest.mark.e2e

SECRET = "restart-test-secret-0123456789"
ENV = {
    "MEDIC_OUTBOUND_ALLOW_NETWORKS": "127.0.0.1/32",
    "MEDIC_DELIVERY_BACKOFF": "0.3",
    "MEDIC_DELIVERY_BACKOFF_MAX": "1",
    "MEDIC_NOTIFY_TIMEOUT": "2",
}


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest) -> str:
    if request.param == "sqlite":
        return ""
    return fresh_postgres_url(request.getfixturevalue("pg_cluster"), "e2e_outbox")


async def _deliveries(url: str) -> list[Delivery]:
    db = Database(url)
    try:
        async with db.sessions() as session:
            return list((await session.scalars(select(Delivery).order_by(Delivery.id))).all())
    finally:
        await db.close()


async def _add_target(url: str, hook: str) -> None:
    from datetime import UTC, datetime

    db = Database(url)
    try:
        async with db.transaction() as session:
            now = datetime.now(UTC)
            session.add(
                NotificationTarget(
                    slug="ops-hook",
                    name="ops hook",
                    notifier="webhook",
                    config={"url": hook, "secret": SECRET},
                    min_priority="p5",
                    period="always",
                    enabled=True,
                    created_at=now,
                    updated_at=now,
                )
            )
    finally:
        await db.close()


async def _wait_for(condition, timeout: float, what: str):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = await condition()
        if value:
            return value
        await asyncio.sleep(0.1)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


async def test_notification_survives_a_crash_and_arrives_exactly_once(
    database_url: str, tmp_path: Path
) -> None:
    port = free_port()  # the receiver's port: nothing listens there yet
    hook = f"http://127.0.0.1:{port}/hook"
    server = ServerProcess(tmp_path, database_url=database_url, env=ENV)
    server.start()
    try:
        url = server.database_url
        await _add_target(url, hook)
        async with aiohttp.ClientSession(server.url, headers=server.headers) as http:
            async with http.post(
                "/api/v1/services",
                json={"slug": "backup", "expectation": {"kind": "interval", "period": 3600}},
            ) as response:
                assert response.status == 201, await response.text()
            async with http.post(
                "/api/v1/heartbeats", json={"service": "backup", "status": "fail", "exit_code": 2}
            ) as response:
                assert response.status == 201, await response.text()

        async def tried() -> list[Delivery] | None:
            rows = await _deliveries(url)
            return rows if rows and rows[0].attempts >= 2 and rows[0].status == "pending" else None

        (delivery,) = await _wait_for(tried, 20, "two failed attempts while the receiver is down")
        assert "Connect" in (delivery.last_error or "") or "refused" in (delivery.last_error or "")
        server.kill()

        async with WebhookReceiver(secret=SECRET, port=port) as receiver:
            server.start()

            async def sent() -> list[Delivery] | None:
                rows = await _deliveries(url)
                return rows if rows and rows[0].status == "sent" else None

            # A kill during an attempt leaves the delivery leased (2 x notify timeout + 5 s = 9 s).
            (delivery,) = await _wait_for(sent, 45, "the delivery to be sent after the restart")
            await asyncio.sleep(1.5)  # time for a duplicate to show up, if there were one
            assert len(receiver.requests) == 1
            (request,) = receiver.requests
            assert request.verified is True
            body = request.json()
            assert body["event"] == "alert.opened" and body["alert"]["service"]["slug"] == "backup"
            assert request.headers["X-Medic-Delivery"] == str(delivery.id)
    finally:
        server.close()
