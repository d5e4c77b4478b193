"""A frozen PostgreSQL (SIGSTOP: connections stay open, nothing answers) is failed fast.

Before the fix a request was held up to ~17 s (the 15 s statement timeout, then 3 s connect
timeouts) and ``/health/ready`` took more than 3 s. Now a heartbeat or a key lookup waits at
most ``MEDIC_DB_REQUEST_TIMEOUT`` (1 s here) and is answered 503 "database too slow", later
requests are refused at once by the breaker, and readiness answers within
``MEDIC_DB_PROBE_TIMEOUT`` (0.5 s here). The clients' own timeouts (5 s, readiness 3 s) are the
bounds checked: before the fix they fired first. When the cluster resumes, ingest recovers.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient, TestServer

from conftest import START, auth, make_settings
from medic_core.app import Medic
from medic_core.audit import Actor
from medic_core.clock import FakeClock
from medic_core.server.http.app import build_app
from medic_core.store import Database
from medic_core.store.migrate import upgrade
from support.postgres import PgCluster

CLIENT_TIMEOUT = aiohttp.ClientTimeout(total=5)
READY_TIMEOUT = aiohttp.ClientTimeout(total=3)
HEARTBEATS = "/api/v1/heartbeats"


@pytest.fixture
def cluster() -> Iterator[PgCluster]:
    # Its own cluster (not the session one: this test freezes it).
    pg = PgCluster()
    try:
        pg.init()
        pg.start()
        pg.create_database("medic")
        yield pg
    finally:
        pg.thaw()
        pg.destroy()


@pytest.fixture
async def medic(cluster: PgCluster, tmp_path: Path) -> AsyncIterator[Medic]:
    url = cluster.url("medic")
    db = Database(url)
    await upgrade(db)
    await db.close()
    settings = make_settings(
        url, tmp_path, db_request_timeout=1.0, db_probe_timeout=0.5, key_cache_ttl=600.0
    )
    app = Medic(settings, clock=FakeClock(START))
    await app.start(monitor=False)
    try:
        yield app
    finally:
        cluster.thaw()
        await app.stop()


async def test_a_frozen_postgres_gets_503s_within_the_bounded_wait_and_readiness_answers(
    medic: Medic, cluster: PgCluster
) -> None:
    admin = await medic.ensure_admin_key()
    assert admin is not None
    _, uncached = await medic.keys.create(name="second", scopes=["heartbeat"], actor=Actor("t"))
    await medic.services.create(
        {"slug": "backup", "expectation": {"kind": "interval", "period": 60}}, actor=Actor("t")
    )
    async with TestClient(TestServer(build_app(medic)), timeout=CLIENT_TIMEOUT) as client:
        first = await client.post(HEARTBEATS, json={"service": "backup"}, headers=auth(admin))
        assert first.status in (201, 202), await first.text()  # the admin key is now cached

        cluster.freeze()

        async def beat(token: str) -> tuple[int, dict[str, Any], str | None]:
            response = await client.post(
                HEARTBEATS, json={"service": "backup"}, headers=auth(token)
            )
            return response.status, await response.json(), response.headers.get("Retry-After")

        # The writer's commit hangs: each waits at most 1 s, then 503 "too slow".
        answers = await asyncio.gather(*(beat(admin) for _ in range(8)))
        for status, body, retry_after in answers:
            assert status == 503, body
            assert body["type"] == "urn:medic:problem:database-too-slow", body
            assert retry_after is not None and int(retry_after) >= 1
        # The breaker is open: refused at once, whatever the key (no lookup is started).
        status, body, _ = await beat(uncached)
        assert status == 503 and body["cause"] in ("slow", "unreachable"), body

        ready = await client.get("/health/ready", timeout=READY_TIMEOUT)
        assert ready.status == 503
        assert (await ready.json())["checks"]["database"] == {"status": "failing"}
        assert medic.metrics.database_failures.labels("slow")._value.get() >= 1

        cluster.thaw()
        recovered = None
        for _ in range(150):  # up to ~30 s for the pool and the breaker's probe
            status, body, _ = await beat(uncached)
            if status in (201, 202):
                recovered = body
                break
            await asyncio.sleep(0.2)
        assert recovered is not None, "ingest did not recover after the cluster resumed"
        ready = await client.get("/health/ready", timeout=READY_TIMEOUT)
        assert ready.status == 200, await ready.text()


async def test_readiness_answers_within_its_own_timeout_when_postgres_freezes(
    medic: Medic, cluster: PgCluster
) -> None:
    """The first probe after the freeze (the breaker still closed) pings and is cut off at
    0.5 s, without waiting for the frozen connection to unwind."""
    async with TestClient(TestServer(build_app(medic)), timeout=CLIENT_TIMEOUT) as client:
        assert (await client.get("/health/ready", timeout=READY_TIMEOUT)).status == 200
        cluster.freeze()
        for _ in range(3):
            ready = await client.get("/health/ready", timeout=READY_TIMEOUT)
            assert ready.status == 503
            assert (await ready.json())["checks"]["database"] == {"status": "failing"}
        cluster.thaw()
