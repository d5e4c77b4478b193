"""Compiling an advertised allowlist runs off the event loop, one at a time, with few waiting.

Any ``agent`` key can advertise the largest summary the allowlist format allows, whose patterns
take tens of seconds of CPU to compile. The server validates every new summary (``Hello``), so
the compilation must never block the event loop (the bindings release the GIL while compiling,
and the verifier runs them in a worker thread), must not run several at once, and must not let
callers pile up without bound (``VerifierBusy``).
"""

from __future__ import annotations

import asyncio
import sys
from typing import Any

import pytest

from medic_core.agent.verify import AllowlistVerifier, VerifierBusy

HEAVY = "(a|b|c|d|e|f){1,200}[\\w]{1,100}"


def heavy(tag: str, scripts: int = 40) -> dict[str, Any]:
    """A valid summary whose patterns take a while to compile (2,560 of them)."""
    return {
        "sha256": tag * 64,
        "scripts": [
            {
                "name": f"s{n}",
                "sha256": "cd" * 32,
                "timeout_seconds": 30,
                "args": [{"pattern": {"regex": HEAVY, "max_len": 256}} for _ in range(64)],
            }
            for n in range(scripts)
        ],
    }


async def test_the_event_loop_keeps_running_while_a_summary_compiles() -> None:
    verifier = AllowlistVerifier()
    # A thread holding the GIL is asked to drop it only after the switch interval: made huge,
    # the loop gets no turn while the compilation holds the GIL, and many once it released it.
    interval = sys.getswitchinterval()
    sys.setswitchinterval(100.0)
    try:
        task = asyncio.create_task(verifier.validate(heavy("a")))
        turns = 0
        while not task.done():
            await asyncio.sleep(0)
            turns += 1
        await task
    finally:
        sys.setswitchinterval(interval)
    assert turns > 50  # holding the GIL, the loop comes back once or twice, after it


async def test_one_compilation_at_a_time_and_a_bounded_queue() -> None:
    verifier = AllowlistVerifier(max_waiting=2)
    first = asyncio.create_task(verifier.validate(heavy("a")))
    second = asyncio.create_task(verifier.validate(heavy("b")))
    await asyncio.sleep(0)
    with pytest.raises(VerifierBusy, match="try again later"):
        await verifier.validate(heavy("c"))
    # A caller that goes away does not free the turn of a compilation still running.
    first.cancel()
    await asyncio.sleep(0)
    assert verifier._compiling.locked()
    await second
    assert await asyncio.gather(first, return_exceptions=True) != [None]
    # Both were compiled once and are cached: checking them again waits for nothing.
    await verifier.validate(heavy("a"))
    await verifier.validate(heavy("c"))
    assert len(verifier._cache) == 3
