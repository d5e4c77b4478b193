"""An outage in a handful of log lines, however many requests it refuses.

A dependency that fails refuses every request for as long as it lasts; one line per refusal was
192,000 lines (24 MB) in a 30-second PostgreSQL outage, the one moment someone reads the log.
``OutageLog`` writes:

- the first failure, with its reason and the error (WARNING);
- then at most one summary every ``every`` seconds, written when something happens after that
  long: "... still failing (unreachable) for 34 s: refused 12,345 requests in the last 10 s
  (unreachable: 12,345)" (WARNING);
- one line when it recovers, with the outage's duration and totals (WARNING, so it is seen
  wherever the first line was).

So an outage of ``d`` seconds costs at most ``d / every + 2`` lines. It knows nothing of
databases: ``subject`` names what fails ("the database"), reasons are free words. Time is
injected (``monotonic``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable


class OutageLog:
    def __init__(
        self,
        logger: logging.Logger,
        subject: str,
        *,
        every: float = 10.0,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._log = logger
        self._subject = subject
        self._every = max(0.001, every)
        self._monotonic = monotonic
        self._since: float | None = None
        self._reason = ""
        self._last_line = 0.0
        self._window: dict[str, int] = {}  # reason -> requests refused since the last line
        self._refused = 0
        self._failures = 0

    @property
    def ongoing(self) -> bool:
        return self._since is not None

    def failed(self, reason: str, error: str) -> None:
        """A failure of the subject, for ``reason`` (the first one is logged with ``error``)."""
        now = self._monotonic()
        self._failures += 1
        if self._since is None:
            self._since, self._last_line, self._reason = now, now, reason
            self._window = {}
            self._refused = 0
            self._failures = 1
            self._log.warning(
                "%s is failing (%s): %s; requests are refused until it recovers (a summary "
                "at most every %g s)",
                self._subject,
                reason,
                error,
                self._every,
                extra={"outage": reason},
            )
            return
        self._reason = reason
        self._summarise(now)

    def refused(self, reason: str, count: int = 1) -> None:
        """``count`` requests were refused because of the outage."""
        if self._since is None or count <= 0:
            return
        self._window[reason] = self._window.get(reason, 0) + count
        self._refused += count
        self._summarise(self._monotonic())

    def recovered(self) -> None:
        """The subject works again: one line with the outage's duration (nothing if none)."""
        if self._since is None:
            return
        now = self._monotonic()
        self._log.warning(
            "%s recovered after %.1f s (%s): %s requests refused, %s failures seen",
            self._subject,
            now - self._since,
            self._reason,
            f"{self._refused:,}",
            f"{self._failures:,}",
            extra={"outage": self._reason, "outage_seconds": round(now - self._since, 3)},
        )
        self._since = None
        self._window = {}

    def _summarise(self, now: float) -> None:
        if self._since is None or now - self._last_line < self._every:
            return
        refused = sum(self._window.values())
        by_reason = ", ".join(f"{r}: {n:,}" for r, n in sorted(self._window.items())) or "none"
        self._log.warning(
            "%s still failing (%s) for %.0f s: refused %s requests in the last %.0f s (%s)",
            self._subject,
            self._reason,
            now - self._since,
            f"{refused:,}",
            now - self._last_line,
            by_reason,
            extra={"outage": self._reason},
        )
        self._last_line = now
        self._window = {}
