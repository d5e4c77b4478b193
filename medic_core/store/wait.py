"""Waiting for the database at start (``medic serve``).

PostgreSQL and Medic often start together (a compose file, a pod with its database beside it,
a host rebooting): exiting at the first refused connection leaves it to a supervisor to retry,
with nothing in the log saying what Medic is waiting for. ``wait_for_database`` pings until
the database answers, backing off from 0.5 s doubling to 10 s, with one log line per attempt
naming the cause, up to ``limit`` seconds (0: forever); only then do migrations run.

Only an unavailable database is waited for (``store/faults.py``: unreachable, too slow, full,
read-only). A wrong password, a missing database or a malformed URL cannot fix itself: that
error is raised at once.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

from medic_core.backoff import backoff
from medic_core.store.database import Database
from medic_core.store.faults import classify, describe

log = logging.getLogger(__name__)

FIRST_DELAY = 0.5
MAX_DELAY = 10.0


class DatabaseWaitExpired(Exception):
    """The database stayed unavailable for the whole wait."""


async def wait_for_database(
    db: Database,
    *,
    limit: float,
    ping_timeout: float = 3.0,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    monotonic: Callable[[], float] = time.monotonic,
) -> None:
    """Return once ``db`` answers; raise ``DatabaseWaitExpired`` after ``limit`` seconds
    (0: never), or the error itself when it is not one that waiting can cure."""
    started = monotonic()
    attempt = 0
    while True:
        attempt += 1
        try:
            await db.ping(timeout=ping_timeout)
        except Exception as exc:
            cause = classify(exc)
            if cause is None:
                raise
            delay = backoff(attempt, base=FIRST_DELAY, cap=MAX_DELAY)
            waited = monotonic() - started
            if limit > 0 and waited + delay > limit:
                raise DatabaseWaitExpired(
                    f"the database stayed unavailable ({cause}) for {waited:.0f} s "
                    f"(MEDIC_DB_START_WAIT={limit:g}): {describe(exc)}"
                ) from exc
            log.warning(
                "waiting for the database %s (attempt %d, %s: %s); next attempt in %.1f s",
                db.redacted_url(),
                attempt,
                cause,
                describe(exc),
                delay,
                extra={"attempt": attempt, "cause": cause},
            )
            await sleep(delay)
            continue
        if attempt > 1:
            log.warning(
                "the database %s answered after %d attempts (%.1f s)",
                db.redacted_url(),
                attempt,
                monotonic() - started,
            )
        return
