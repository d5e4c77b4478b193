"""The database circuit breaker: when the database fails, refuse at once instead of waiting.

One ``DatabaseBreaker`` is shared by everything on the request path that needs the database
(the heartbeat writer, API-key lookups, the readiness probe; the HTTP middleware reports the
faults other handlers meet), so an outage seen by one is known to all:

- **closed** (normal): everything goes through. ``failures`` consecutive failures (a fault
  ``classify`` names, or a wait that ran out: ``slow``) open it.
- **open**: requests are refused at once (``DatabaseUnavailable`` for the last cause: 503 with
  Retry-After) for an interval starting at 0.25 s and doubling on each failed probe up to
  ``max_interval``.
- **half-open**: after the interval, the first caller is the probe; everyone else is still
  refused until the probe's outcome is known. A probe that never reports within
  ``probe_timeout`` counts as a ``slow`` failure. Any success closes it.

Causes are not all alike. A full disk or a read-only database still answers reads: callers
that only read (``writes=False``, key lookups) are not refused for them, and only a successful
*write* ends such an outage (a read proves nothing about space). While the breaker is not
closed, ``failing`` is true: readiness reports it (``medic_core/readiness.py``).

An outage is logged by an ``OutageLog`` (first failure, a summary every ``log_every`` s, the
recovery) and counted: ``medic_database_failures_total{cause}``,
``medic_database_refusals_total{cause}``, ``medic_database_failing`` (1 while not closed).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Literal

from medic_core.backoff import backoff
from medic_core.errors import (
    DATABASE_CAUSES,
    DatabaseCause,
    DatabaseUnavailable,
    database_unavailable,
)
from medic_core.observability.metrics import Metrics
from medic_core.observability.outages import OutageLog
from medic_core.store.faults import describe

log = logging.getLogger(__name__)

State = Literal["closed", "open", "half_open"]
FIRST_INTERVAL = 0.25
#: Causes after which reads still work: only a write ends them.
_WRITES_ONLY: frozenset[DatabaseCause] = frozenset({"full", "read_only"})


class DatabaseBreaker:
    def __init__(
        self,
        *,
        failures: int = 1,
        max_interval: float = 2.0,
        probe_timeout: float = 2.0,
        log_every: float = 10.0,
        subject: str = "the database",
        metrics: Metrics | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._threshold = max(1, failures)
        self._max_interval = max(FIRST_INTERVAL, max_interval)
        self._probe_timeout = probe_timeout
        self._monotonic = monotonic
        self.outage = OutageLog(log, subject, every=log_every, monotonic=monotonic)
        self._state: State = "closed"
        self._cause: DatabaseCause | None = None
        self._error = ""
        self._consecutive = 0
        self._interval = 0.0
        self._opened = 0  # times opened in a row this outage: the back-off's attempt
        self._refuse_until = 0.0
        self._probing_since: float | None = None
        self._failures = self._refusals = None
        self._failing_gauge = None
        if metrics is not None:
            self._failures = {c: metrics.database_failures.labels(c) for c in DATABASE_CAUSES}
            self._refusals = {c: metrics.database_refusals.labels(c) for c in DATABASE_CAUSES}
            self._failing_gauge = metrics.database_failing

    # -- what callers read ---------------------------------------------------------------------

    @property
    def state(self) -> State:
        return self._state

    @property
    def failing(self) -> bool:
        """The last outcome was a failure: not closed until something succeeds."""
        return self._state != "closed"

    @property
    def cause(self) -> DatabaseCause | None:
        """Why it is failing (None when closed)."""
        return self._cause if self.failing else None

    @property
    def interval(self) -> float:
        """The current refusal interval (0 when closed)."""
        return self._interval

    @property
    def refusing(self) -> bool:
        """Open, within the refusal interval."""
        return self._state == "open" and self._monotonic() < self._refuse_until

    @property
    def retry_after(self) -> int:
        """Whole seconds to tell a refused client (at least 1)."""
        return max(1, round(self._refuse_until - self._monotonic()))

    def detail(self) -> str:
        """What readiness shows: the cause and the error that started it."""
        if not self.failing:
            return "ok"
        return f"{self._cause}: {self._error}"[:300]

    def error(self, what: str) -> DatabaseUnavailable:
        """The error refusing a request now; ``what`` says what it means for the request."""
        return database_unavailable(
            self._cause or "unreachable", what, retry_after=self.retry_after
        )

    # -- the requests' side --------------------------------------------------------------------

    def admit(self, what: str, *, writes: bool = True) -> bool:
        """Let a request use the database, or raise its ``DatabaseUnavailable`` at once.

        Returns True when the request is the probe: it must then report ``succeeded``,
        ``failed`` or ``released``. ``writes=False``: the request only reads (not refused for a
        full or read-only database, and never the probe of one)."""
        if self._state == "closed":
            return False
        if not writes and self._cause in _WRITES_ONLY:
            return False
        now = self._monotonic()
        if self._state == "open" and now >= self._refuse_until:
            self._state, self._probing_since = "half_open", None
        if self._state == "half_open":
            if self._probing_since is not None and now - self._probing_since > self._probe_timeout:
                self.failed("slow", "the probe did not report within its timeout")
            elif self._probing_since is None:
                self._probing_since = now
                return True
        self.refused(self._cause or "unreachable")
        raise self.error(what)

    def refused(self, cause: DatabaseCause, count: int = 1) -> None:
        """``count`` requests were refused for ``cause`` (counted, summarised in the log)."""
        if self._refusals is not None:
            self._refusals[cause].inc(count)
        self.outage.refused(cause, count)

    def succeeded(self, *, wrote: bool) -> None:
        """The database did what was asked (``wrote``: a write committed)."""
        self._probing_since = None
        self._consecutive = 0
        if self._state == "closed":
            return
        if not wrote and self._cause in _WRITES_ONLY:
            return  # a read proves nothing about space or writability
        self._state, self._cause, self._interval = "closed", None, 0.0
        self.outage.recovered()
        if self._failing_gauge is not None:
            self._failing_gauge.set(0)

    def failed(self, cause: DatabaseCause, error: BaseException | str) -> None:
        """The database failed a request for ``cause``."""
        if self._failures is not None:
            self._failures[cause].inc()
        text = error if isinstance(error, str) else describe(error)
        now = self._monotonic()
        if self._state == "closed":
            self._consecutive += 1
            if self._consecutive < self._threshold:
                return
            self._opened = 1
        elif self._state == "half_open":
            self._opened += 1
        else:
            # Open already: a request that was under way when it opened. It tells nothing new
            # about recovery, so the interval stays; the log counts it.
            self._cause = cause
            self.outage.failed(cause, text)
            return
        self._interval = backoff(self._opened, base=FIRST_INTERVAL, cap=self._max_interval)
        self._state, self._cause, self._error = "open", cause, text
        self._refuse_until = now + self._interval
        self._probing_since = None
        self.outage.failed(cause, text)
        if self._failing_gauge is not None:
            self._failing_gauge.set(1)

    def released(self) -> None:
        """The probe ended without a verdict on the database (it failed for its own reasons,
        or was given up before it asked): the next request may probe."""
        self._probing_since = None
