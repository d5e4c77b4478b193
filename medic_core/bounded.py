"""Waiting at most so long for work that may hang, without waiting for its clean-up.

``asyncio.timeout`` cancels the work and then waits for it to unwind; work holding a database
connection unwinds by talking to the database (a rollback, a close), and a frozen database
never answers -- the "bounded" wait then lasts as long as the driver's own timeouts (seen:
a readiness probe taking > 3 s with a 2 s timeout). ``within`` answers the caller at the bound
and lets the cancelled work unwind on its own (kept referenced until it has, its error
retrieved so nothing is logged as lost).
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")

#: Work given up on that is still unwinding (the event loop only keeps weak references).
_UNWINDING: set[asyncio.Future[Any]] = set()


async def within(timeout: float, work: Coroutine[Any, Any, T], *, what: str) -> T:
    """The result of ``work`` if it ends within ``timeout`` seconds; else ``TimeoutError``
    at the bound (``what`` names the work in its message), the work cancelled."""
    task = asyncio.ensure_future(work)
    try:
        done, _ = await asyncio.wait({task}, timeout=timeout)
    except asyncio.CancelledError:
        _abandon(task)
        raise
    if not done:
        _abandon(task)
        raise TimeoutError(f"{what} did not finish within {timeout:g} s")
    return task.result()


def abandon(future: asyncio.Future[Any]) -> None:
    """Cancel ``future`` and let it unwind without anyone awaiting it."""
    _abandon(future)


def _abandon(future: asyncio.Future[Any]) -> None:
    future.cancel()
    if future.done():
        return
    _UNWINDING.add(future)
    future.add_done_callback(_unwound)


def _unwound(future: asyncio.Future[Any]) -> None:
    _UNWINDING.discard(future)
    if not future.cancelled():
        future.exception()  # retrieved: an error nobody awaits is not logged as lost
