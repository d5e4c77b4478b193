"""The ``database`` health check: the database answers a trivial query."""

from __future__ import annotations

from typing import Any

from medic_core.plugins import hookimpl
from medic_core.plugins.context import PluginContext
from medic_core.plugins.interfaces import HealthCheck, HealthResult


class DatabaseCheck:
    name = "database"
    critical = True

    def __init__(self, db: Any) -> None:
        self._db = db

    async def check(self) -> HealthResult:
        try:
            await self._db.ping(timeout=2.0)
        except Exception as exc:
            return HealthResult("down", f"{type(exc).__name__}: {exc}"[:300])
        return HealthResult("ok", self._db.dialect)


@hookimpl
def medic_health_checks(medic: PluginContext) -> list[HealthCheck]:
    return [DatabaseCheck(medic.db)]
