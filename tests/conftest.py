"""Shared fixtures.

Every test that touches storage takes ``db_url`` and so runs twice: on SQLite and on a real
PostgreSQL server (a private cluster started once per session, or MEDIC_TEST_POSTGRES_URL).
"""

from __future__ import annotations

import asyncio
import os
import shutil
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy import text

from medic_core.app import Medic
from medic_core.clock import FakeClock
from medic_core.server.http.app import build_app
from medic_core.settings import Settings
from medic_core.store import Database
from medic_core.store.migrate import upgrade
from medic_core.store.models import Base
from support.postgres import PgCluster
from support.response_check import ResponseCheck

START = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def _migrate(url: str) -> None:
    async def run() -> None:
        db = Database(url)
        try:
            await upgrade(db)
        finally:
            await db.close()

    asyncio.run(run())


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[PgCluster | None]:
    if os.environ.get("MEDIC_TEST_POSTGRES_URL"):
        yield None
        return
    cluster = PgCluster()
    cluster.init()
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.destroy()


@pytest.fixture(scope="session")
def pg_url(pg_cluster: PgCluster | None) -> str:
    if pg_cluster is None:
        url = os.environ["MEDIC_TEST_POSTGRES_URL"]
    else:
        pg_cluster.create_database("medic_test")
        url = pg_cluster.url("medic_test")
    _migrate(url)
    return url


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("template") / "medic.db"
    _migrate(f"sqlite:///{path}")
    return path


def _truncate(url: str) -> None:
    async def run() -> None:
        db = Database(url)
        try:
            async with db.engine.begin() as conn:
                tables = ", ".join(t.name for t in Base.metadata.sorted_tables)
                await conn.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
        finally:
            await db.close()

    asyncio.run(run())


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A migrated, empty database: SQLite (a copy of a migrated template) or PostgreSQL."""
    if request.param == "sqlite":
        template: Path = request.getfixturevalue("sqlite_template")
        target = tmp_path / "medic.db"
        shutil.copy(template, target)
        return f"sqlite:///{target}"
    url: str = request.getfixturevalue("pg_url")
    _truncate(url)
    return url


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(START)


def make_settings(db_url: str, tmp_path: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "database_url": db_url,
        "data_dir": str(tmp_path),
        "auto_migrate": False,
        "key_cache_ttl": 0.0,
        "rate_limit": 0.0,
        # The 2 s bound on a heartbeat's commit is a promise to clients in production; on a
        # loaded 2-core test machine a healthy SQLite commit can take longer. Tests of the
        # bound set it themselves (test_frozen_postgres.py).
        "db_request_timeout": 30.0,
    }
    values.update(overrides)
    return Settings.load({}, **values)


@pytest.fixture
async def medic(db_url: str, tmp_path: Path, clock: FakeClock) -> AsyncIterator[Medic]:
    """A Medic with its writer and event bus running, the monitor loop not (tests step it)."""
    app = Medic(make_settings(db_url, tmp_path), clock=clock)
    await app.start(monitor=False)
    try:
        yield app
    finally:
        await app.stop()


@pytest.fixture
async def admin_token(medic: Medic) -> str:
    token = await medic.ensure_admin_key()
    assert token is not None
    return token


@pytest.fixture
async def client(medic: Medic) -> AsyncIterator[TestClient[Any, Any]]:
    """A client of the app; every success it gets is checked against the documented response
    schema (tests/support/response_check.py), and a mismatch fails the test."""
    app = build_app(medic)
    check = ResponseCheck()
    app.middlewares.append(check.middleware)
    server = TestServer(app)
    async with TestClient(server) as test_client:
        yield test_client
    assert check.failures == [], "answers the OpenAPI document does not describe"


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}
