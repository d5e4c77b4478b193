"""The ``redis`` health check against a real, private redis-server (with AUTH)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest

from medic_core.settings import Settings
from medic_plugins.health import redis as redis_plugin
from support.postgres import free_port
from support.redis import RedisServer

PASSWORD = "s3cret-redis-pass"


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path_factory.mktemp("redis"), password=PASSWORD)
    try:
        yield server
    finally:
        server.stop()


def _checks(url: str) -> list[redis_plugin.RedisCheck]:
    medic = SimpleNamespace(settings=Settings.load({}, redis_url=url))
    return redis_plugin.medic_health_checks(medic)  # type: ignore[return-value]


def test_no_check_unless_redis_is_configured() -> None:
    assert _checks("") == []


async def test_reachable_redis_is_ok(redis_server: RedisServer) -> None:
    (check,) = _checks(redis_server.url())
    result = await check.check()
    assert result.status == "ok" and result.detail.startswith("redis ")
    assert check.critical is False


async def test_wrong_password_is_down_without_leaking_it(redis_server: RedisServer) -> None:
    (check,) = _checks(redis_server.url(password="not-the-password"))
    result = await check.check()
    assert result.status == "down"
    assert "not-the-password" not in result.detail and PASSWORD not in result.detail


async def test_nothing_listening_is_down() -> None:
    (check,) = _checks(f"redis://127.0.0.1:{free_port()}/0")
    result = await check.check()
    assert result.status == "down" and "Connection" in result.detail


async def test_shown_in_readiness(redis_server: RedisServer, tmp_path: Path) -> None:
    from conftest import make_settings
    from medic_core.app import Medic

    medic = Medic(
        make_settings(f"sqlite:///{tmp_path / 'm.db'}", tmp_path, redis_url=redis_server.url())
    )
    try:
        results = await medic.readiness()
        assert results["redis"].status == "ok"
    finally:
        await medic.db.close()
