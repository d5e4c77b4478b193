"""The plugin manager: discovery, listing and failure isolation."""

from __future__ import annotations

import types
from typing import Any

import pytest

from medic_core.events import Event
from medic_core.observability.metrics import Metrics
from medic_core.plugins import hookimpl
from medic_core.plugins.interfaces import HealthResult, Notification
from medic_core.plugins.manager import PluginManager


def _errors(metrics: Metrics, plugin: str, hook: str) -> float:
    value = metrics.registry.get_sample_value(
        "medic_plugin_errors_total", {"plugin": plugin, "hook": hook}
    )
    return value or 0.0


class GoodNotifier:
    name = "good"
    config_schema: dict[str, Any] = {}

    def __init__(self) -> None:
        self.sent: list[Notification] = []

    async def send(self, notification: Notification) -> None:
        self.sent.append(notification)


def test_builtins_are_found_through_the_entry_point_group() -> None:
    manager = PluginManager(Metrics())
    names = {p.name for p in manager.describe()}
    assert {"log_notifier", "redis_health"} <= names
    builtin = next(p for p in manager.describe() if p.name == "log_notifier")
    assert builtin.distribution == "medic"
    assert builtin.hooks == ("medic_notifiers",)


def test_disabled_plugins_are_not_loaded() -> None:
    manager = PluginManager(Metrics(), disabled=["log_notifier"])
    assert "log" not in manager.notifiers(medic=None)


def test_a_raising_hook_is_isolated_logged_and_counted(caplog: pytest.LogCaptureFixture) -> None:
    metrics = Metrics()
    good = GoodNotifier()
    broken = types.SimpleNamespace(
        medic_notifiers=hookimpl(lambda: (_ for _ in ()).throw(RuntimeError("boom")))
    )
    fine = types.SimpleNamespace(medic_notifiers=hookimpl(lambda: [good]))
    manager = PluginManager(
        metrics, entry_points=False, plugins=[("broken", broken), ("fine", fine)]
    )
    notifiers = manager.notifiers(medic=None)
    assert notifiers == {"good": good}
    assert _errors(metrics, "broken", "medic_notifiers") == 1
    assert "plugin broken failed in medic_notifiers" in caplog.text


def test_wrong_objects_and_duplicate_names_are_refused() -> None:
    metrics = Metrics()
    first, second = GoodNotifier(), GoodNotifier()
    plugin_a = types.SimpleNamespace(medic_notifiers=hookimpl(lambda: [first, "not a notifier"]))
    plugin_b = types.SimpleNamespace(medic_notifiers=hookimpl(lambda: [second]))
    manager = PluginManager(metrics, entry_points=False, plugins=[("a", plugin_a), ("b", plugin_b)])
    found = manager.notifiers(medic=None)
    assert list(found) == ["good"]
    assert _errors(metrics, "a", "medic_notifiers") + _errors(metrics, "b", "medic_notifiers") == 2


async def test_async_event_hooks_are_awaited_and_failures_isolated() -> None:
    metrics = Metrics()
    seen: list[str] = []

    async def record(event: Event) -> None:
        seen.append(event.type)

    async def explode(event: Event) -> None:
        raise ValueError("nope")

    manager = PluginManager(
        metrics,
        entry_points=False,
        plugins=[
            ("recorder", types.SimpleNamespace(medic_event=hookimpl(record))),
            ("exploder", types.SimpleNamespace(medic_event=hookimpl(explode))),
        ],
    )
    from medic_core.clock import FakeClock

    results = await manager.acall("medic_event", event=Event("alert.opened", FakeClock().now()))
    assert seen == ["alert.opened"]
    assert [name for name, _ in results] == ["recorder"]
    assert _errors(metrics, "exploder", "medic_event") == 1


def test_a_plugin_that_fails_to_import_is_recorded(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.metadata

    class BadEntryPoint:
        name = "bad"
        dist = None

        def load(self) -> object:
            raise ImportError("missing dependency")

    real = importlib.metadata.entry_points
    monkeypatch.setattr(
        importlib.metadata,
        "entry_points",
        lambda group: [*real(group=group), BadEntryPoint()],
    )
    metrics = Metrics()
    manager = PluginManager(metrics)
    assert [f.name for f in manager.failures] == ["bad"]
    assert "missing dependency" in manager.failures[0].error
    assert _errors(metrics, "bad", "load") == 1
    assert "log" in manager.notifiers(medic=None)


async def test_health_check_plugin_reports_database_state(tmp_path: Any) -> None:
    from medic_core.readiness import DatabaseCheck
    from medic_core.store import Database

    db = Database(f"sqlite:///{tmp_path}/x.db")
    try:
        assert await DatabaseCheck(db).check() == HealthResult("ok", "sqlite")
    finally:
        await db.close()
    down = Database("postgresql://nobody@127.0.0.1:1/none", connect_timeout=0.5)
    try:
        result = await DatabaseCheck(down).check()
        assert result.status == "down" and result.detail
    finally:
        await down.close()


def test_a_list_hook_that_is_async_or_returns_a_non_list_is_a_counted_failure() -> None:
    async def async_notifiers() -> list[Any]:
        return [GoodNotifier()]

    metrics = Metrics()
    manager = PluginManager(
        metrics,
        entry_points=False,
        plugins=[
            ("async-one", types.SimpleNamespace(medic_notifiers=hookimpl(async_notifiers))),
            ("single", types.SimpleNamespace(medic_notifiers=hookimpl(lambda: GoodNotifier()))),
            ("fine", types.SimpleNamespace(medic_notifiers=hookimpl(lambda: [GoodNotifier()]))),
        ],
    )
    assert list(manager.notifiers(medic=None)) == ["good"]
    assert _errors(metrics, "async-one", "medic_notifiers") == 1
    assert _errors(metrics, "single", "medic_notifiers") == 1


def test_an_integration_with_broken_routes_is_left_out_and_the_server_builds(
    tmp_path: Any,
) -> None:
    from medic_core.app import Medic
    from medic_core.server.http.app import build_app
    from medic_core.settings import Settings

    async def hello(request: Any) -> Any:
        from aiohttp import web

        return web.Response(text="hi")

    class Raising:
        name = "raising"

        def routes(self) -> list[Any]:
            raise RuntimeError("boom")

    class BadMethod:
        name = "bad-method"

        def routes(self) -> list[Any]:
            return [("GET", "ok", hello), ("NOT A METHOD", "x", hello)]

    class Good:
        name = "good"

        def routes(self) -> list[Any]:
            return [("GET", "hello", hello)]

    plugin = types.SimpleNamespace(
        medic_integrations=hookimpl(lambda: [Raising(), BadMethod(), Good()])
    )
    medic = Medic(
        Settings.load({}, data_dir=str(tmp_path), notifiers=""),
        entry_points=False,
        plugins=[("integrations", plugin)],
    )
    app = build_app(medic)
    paths = {r.resource.canonical for r in app.router.routes() if r.resource is not None}
    assert "/integrations/good/hello" in paths
    assert not any(
        p.startswith(("/integrations/raising", "/integrations/bad-method")) for p in paths
    )
    assert _errors(medic.metrics, "raising", "routes") == 1
    assert _errors(medic.metrics, "bad-method", "routes") == 1
