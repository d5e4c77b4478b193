"""Without the optional ``redis`` package (the ``medic[redis]`` extra) nothing else breaks.

The package is hidden from imports (``sys.modules`` entries set to None make ``import``
raise ImportError, as if it were not installed) and the plugin is imported afresh.
"""

from __future__ import annotations

import importlib
import sys
from types import SimpleNamespace

import pytest

from medic_core.observability.metrics import Metrics
from medic_core.plugins.manager import PluginManager
from medic_core.settings import Settings

PLUGIN = "medic_plugins.health.redis"


@pytest.fixture
def without_redis(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [m for m in sys.modules if m == "redis" or m.startswith("redis.")]:
        monkeypatch.delitem(sys.modules, name)
    for name in ("redis", "redis.asyncio", "redis.exceptions"):
        monkeypatch.setitem(sys.modules, name, None)
    monkeypatch.delitem(sys.modules, PLUGIN, raising=False)
    with pytest.raises(ImportError):
        importlib.import_module("redis")


@pytest.mark.usefixtures("without_redis")
def test_plugins_load_without_the_redis_package() -> None:
    manager = PluginManager(Metrics())
    assert manager.failures == []
    assert "redis_health" in {p.name for p in manager.describe()}


@pytest.mark.usefixtures("without_redis")
async def test_a_configured_redis_without_the_package_is_down_and_says_what_to_install() -> None:
    manager = PluginManager(Metrics())
    medic = SimpleNamespace(settings=Settings.load({}, redis_url="redis://127.0.0.1:6379/0"))
    check = manager.health_checks(medic)["redis"]
    result = await check.check()
    assert result.status == "down" and "pip install 'medic[redis]'" in result.detail
    assert check.critical is False
    assert manager.health_checks(SimpleNamespace(settings=Settings.load({}))) == {}
