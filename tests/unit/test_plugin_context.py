"""Hooks receive the documented plugin context — every member of it, and nothing of Medic's insides.

A probe plugin records what each hook that takes ``medic`` receives while a real Medic (SQLite in
a temporary directory) is built, serves its HTTP application, starts and stops.
"""

from __future__ import annotations

import types
from pathlib import Path
from typing import Any

import pytest

from conftest import START
from medic_core.app import Medic
from medic_core.audit import Actor
from medic_core.clock import FakeClock
from medic_core.errors import Conflict, NotFound
from medic_core.heartbeats import HeartbeatIn
from medic_core.plugins import hookimpl
from medic_core.plugins.context import PluginContext
from medic_core.plugins.interfaces import HealthResult
from medic_core.readiness import DatabaseCheck
from medic_core.server.http.app import build_app
from medic_core.settings import Settings

MEMBERS = {name for name, value in vars(PluginContext).items() if isinstance(value, property)}


def test_the_context_declares_the_documented_members() -> None:
    documented = {
        "settings", "clock", "db", "bus", "metrics", "alerts", "services", "agents", "messages"
    }
    assert documented == MEMBERS


def _public(obj: object) -> set[str]:
    return {name for name in dir(obj) if not name.startswith("_")}


async def test_every_hook_receives_the_plugin_context_and_nothing_else(tmp_path: Path) -> None:
    seen: dict[str, Any] = {}

    def recorder(hook: str, result: Any = None) -> Any:
        def implementation(medic: Any) -> Any:
            seen[hook] = medic
            return result

        return hookimpl(implementation)

    probe = types.SimpleNamespace(
        medic_notifiers=recorder("medic_notifiers", []),
        medic_health_checks=recorder("medic_health_checks", []),
        medic_integrations=recorder("medic_integrations", []),
        medic_startup=recorder("medic_startup"),
        medic_shutdown=recorder("medic_shutdown"),
    )
    settings = Settings.load({}, data_dir=str(tmp_path), auto_migrate=True, notifiers="")
    medic = Medic(settings, entry_points=False, plugins=[("probe", probe)])
    await medic.prepare()
    build_app(medic)
    await medic.start(monitor=False)
    await medic.stop()

    assert medic.plugins.failures == []
    assert set(seen) == {
        "medic_notifiers",
        "medic_health_checks",
        "medic_integrations",
        "medic_startup",
        "medic_shutdown",
    }
    context = medic.plugin_context
    assert all(received is context for received in seen.values())
    assert _public(context) == MEMBERS  # not the application: no keys, no agents, no plugins
    assert context.settings is medic.settings and context.db is medic.db
    assert context.clock is medic.clock and context.bus is medic.bus
    assert context.metrics is medic.metrics


async def test_the_context_acts_on_alerts_and_reads_services_as_the_api_does(
    tmp_path: Path,
) -> None:
    clock = FakeClock(START)
    settings = Settings.load({}, data_dir=str(tmp_path), auto_migrate=True, notifiers="")
    medic = Medic(settings, clock=clock, entry_points=False)
    await medic.prepare()
    await medic.start(monitor=False)
    try:
        context: PluginContext = medic.plugin_context
        expectation = {"kind": "interval", "period": 60}
        await medic.services.create(
            {"slug": "backup", "name": "Backup", "expectation": expectation}, actor=Actor("test")
        )
        assert (await context.services.get("backup"))["name"] == "Backup"
        with pytest.raises(NotFound):
            await context.services.get("nope")
        await medic.writer.submit(HeartbeatIn("backup"))
        clock.advance(61)
        assert (await medic.monitor.run_once()).missed == 1
        [alert] = (await medic.alerts.list(service="backup")).items
        actor = Actor("plugin:probe", "req-1")

        acknowledged = await context.alerts.acknowledge(alert["id"], actor=actor)
        assert acknowledged["state"] == "acknowledged"
        assert acknowledged["acknowledged_by"] == "plugin:probe"
        resolved = await context.alerts.resolve(alert["id"], actor=actor, note="fixed")
        assert resolved["state"] == "resolved"
        with pytest.raises(Conflict):
            await context.alerts.resolve(alert["id"], actor=actor)
    finally:
        await medic.stop()


async def test_the_database_check_is_medics_own_and_no_plugin_replaces_it(tmp_path: Path) -> None:
    class Impostor:
        name = "database"
        critical = False

        async def check(self) -> HealthResult:
            return HealthResult("ok", "all is well, honestly")

    @hookimpl
    def medic_health_checks(medic: Any) -> list[Any]:
        return [Impostor()]

    plugin = types.SimpleNamespace(medic_health_checks=medic_health_checks)
    settings = Settings.load({}, data_dir=str(tmp_path), auto_migrate=True, notifiers="")
    medic = Medic(settings, entry_points=False, plugins=[("impostor", plugin)])
    assert isinstance(medic.health_checks["database"], DatabaseCheck)
    assert list(medic.health_checks) == ["database"]
    await medic.db.close()
