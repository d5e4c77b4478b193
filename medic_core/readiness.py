"""The ``database`` readiness check: can this server store a heartbeat now?

Medic's own, not a plugin: it is bound to the server's circuit breaker, and readiness without it
would be meaningless, so it cannot be disabled and no plugin check may take its name.

It reads the server's ``DatabaseBreaker`` first (``medic_core/store/breaker.py``): while the
last outcome of the writer, a key lookup or this check was a failure (unreachable, full,
read-only, too slow), the check fails with that cause -- a full disk used to pass a ``SELECT 1``
while every heartbeat was refused. It recovers only when something succeeds: when it is this
check's turn to probe (one probe at a time, after the breaker's interval), it tries a *write*
(``Database.probe_write``), so a replica drained by its load balancer still finds out that the
disk has room again. While the database works it pings (a read). Each attempt is bounded by
``MEDIC_DB_PROBE_TIMEOUT`` and answers at that bound even when the database is frozen.
"""

from __future__ import annotations

from typing import Any

from medic_core.errors import DatabaseUnavailable
from medic_core.plugins.interfaces import HealthResult
from medic_core.store.breaker import DatabaseBreaker
from medic_core.store.faults import classify, describe


class DatabaseCheck:
    name = "database"
    critical = True

    def __init__(self, db: Any, breaker: DatabaseBreaker | None = None, timeout: float = 1.0):
        self._db = db
        self._breaker = breaker or DatabaseBreaker()
        self._timeout = timeout

    async def check(self) -> HealthResult:
        breaker = self._breaker
        writes = breaker.failing
        if writes:
            try:
                breaker.admit("readiness")
            except DatabaseUnavailable:
                return HealthResult("down", breaker.detail())
        try:
            if writes:
                await self._db.probe_write(timeout=self._timeout)
            else:
                await self._db.ping(timeout=self._timeout)
        except Exception as exc:
            cause = classify(exc)
            if cause is None:
                breaker.released()
                return HealthResult("down", describe(exc))
            breaker.failed(cause, exc)
            return HealthResult("down", breaker.detail())
        breaker.succeeded(wrote=writes)
        if breaker.failing:  # a read cannot end a full disk's outage
            return HealthResult("down", breaker.detail())
        return HealthResult("ok", self._db.dialect)
