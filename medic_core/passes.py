"""The background loop of the deadline-driven services (the monitor, the delivery service).

Each runs one *pass* at a time: do what is due, and say whether more is due at once and when the
next deadline is. Between passes the loop sleeps until that deadline, at most ``max_sleep``
(changes made by other processes are seen that late at worst), or until ``wake()``. A failing
pass is logged and retried with a growing back-off (database outages heal by themselves).
``stop()`` lets the current pass finish -- cancelling mid-transaction leaves a rollback half done
-- and cancels only when it overruns its timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime

from medic_core.backoff import backoff
from medic_core.clock import Clock
from medic_core.store import is_transient_db_error

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Pass:
    more: bool  # more is due now: run again without sleeping
    next_deadline: datetime | None  # when to look again (None: only on wake or max_sleep)


class PassLoop:
    def __init__(
        self,
        name: str,
        step: Callable[[], Awaitable[Pass]],
        clock: Clock,
        *,
        max_sleep: float,
    ) -> None:
        self._name = name
        self._step = step
        self._clock = clock
        self._max_sleep = max_sleep
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        #: The deadline the loop is sleeping towards (None: none known).
        self.target: datetime | None = None

    def wake(self) -> None:
        self._wake.set()

    async def start(self) -> None:
        self._stopping = False
        self._task = asyncio.create_task(self._run(), name=self._name)

    async def stop(self, timeout: float) -> None:
        if self._task is None:
            return
        self._stopping = True
        self._wake.set()
        try:
            await asyncio.wait_for(asyncio.shield(self._task), timeout)
        except TimeoutError:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        self._task = None

    async def _run(self) -> None:
        failures = 0
        while not self._stopping:
            self._wake.clear()
            try:
                result = await self._step()
                failures = 0
            except Exception as exc:
                failures += 1
                delay = backoff(failures + 1, base=0.25, cap=5.0)
                if is_transient_db_error(exc):
                    log.warning(
                        "%s: database unreachable, retrying in %.1fs: %s", self._name, delay, exc
                    )
                else:
                    log.exception("%s pass failed, retrying in %.1fs", self._name, delay)
                await self._sleep(delay)
                continue
            if result.more:
                continue
            self.target = result.next_deadline
            sleep = self._max_sleep
            if result.next_deadline is not None:
                ahead = (result.next_deadline - self._clock.now()).total_seconds()
                sleep = min(sleep, max(0.0, ahead))
            if sleep > 0:
                await self._sleep(sleep)

    async def _sleep(self, seconds: float) -> None:
        """Sleep, waking early for ``wake()`` or ``stop()``."""
        if self._stopping:
            return
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self._wake.wait()
