"""A fleet saying Hello at once with one allowlist costs one compilation and no refusals.

After a restart the verifier's cache is empty and thousands of agents advertise the same
summary within seconds. Each caller used to queue a compilation of its own, so past the first
``max_waiting`` callers every Hello was refused ``verifier_busy`` (and its agent backed off):
callers of a summary already being compiled now share that compilation.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from medic_core.agent.verify import AllowlistVerifier, VerifierBusy


def summary(tag: str, timeout: int = 30) -> dict[str, Any]:
    return {
        "sha256": tag * 64,
        "scripts": [{"name": "restart-nginx", "sha256": "cd" * 32, "timeout_seconds": timeout}],
    }


def counted(verifier: AllowlistVerifier) -> list[str]:
    """The SHA-256 of every summary the verifier starts compiling."""
    started: list[str] = []
    compile_ = verifier._compile

    async def counting(bindings: Any, value: dict[str, Any]) -> Any:
        started.append(str(value["sha256"]))
        return await compile_(bindings, value)

    verifier._compile = counting  # type: ignore[method-assign]
    return started


async def test_a_thousand_hellos_with_one_new_allowlist_compile_it_once_and_none_is_refused() -> (
    None
):
    verifier = AllowlistVerifier(max_waiting=2)
    started = counted(verifier)
    results = await asyncio.gather(
        *(verifier.validate(summary("a")) for _ in range(1000)), return_exceptions=True
    )
    assert results == [None] * 1000
    assert started == ["a" * 64]


async def test_another_summary_under_a_hash_being_compiled_is_compiled_on_its_own() -> None:
    verifier = AllowlistVerifier(max_waiting=4)
    started = counted(verifier)
    first, other = summary("a"), summary("a", timeout=60)  # same hash, other rules
    await asyncio.gather(verifier.validate(first), verifier.validate(other))
    # Each is compiled from its own rules: an agent never borrows another's under a known hash.
    assert started == ["a" * 64, "a" * 64]


async def test_distinct_new_allowlists_still_wait_in_a_bounded_queue() -> None:
    verifier = AllowlistVerifier(max_waiting=2)
    waiting = [asyncio.create_task(verifier.validate(summary(tag))) for tag in "ab"]
    await asyncio.sleep(0)
    # Sharing does not lift the bound: a third distinct summary is refused...
    with pytest.raises(VerifierBusy):
        await verifier.validate(summary("c"))
    # ...and so is another summary under a pending hash (it would be a compilation of its own).
    with pytest.raises(VerifierBusy):
        await verifier.validate(summary("a", timeout=60))
    # while the same summary as a pending one joins it.
    await asyncio.gather(verifier.validate(summary("a")), *waiting)
