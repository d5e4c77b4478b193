"""The one back-off formula, and the pass loop that must outlive any database outage."""

from __future__ import annotations

import asyncio

import pytest
from hypothesis import given
from hypothesis import strategies as st

from medic_core.backoff import backoff
from medic_core.clock import FakeClock
from medic_core.passes import Pass, PassLoop


def test_doubles_from_base_up_to_cap() -> None:
    assert [backoff(n, base=0.25, cap=5.0) for n in range(1, 8)] == [
        0.25,
        0.5,
        1.0,
        2.0,
        4.0,
        5.0,
        5.0,
    ]


@given(attempt=st.integers(min_value=-10, max_value=10**9))
def test_any_attempt_count_gives_a_delay_within_base_and_cap(attempt: int) -> None:
    assert 0.25 <= backoff(attempt, base=0.25, cap=5.0) <= 5.0


def test_jitter_draws_between_base_and_the_exponential_delay() -> None:
    bounds: list[tuple[float, float]] = []

    def draw(low: float, high: float) -> float:
        bounds.append((low, high))
        return low

    assert backoff(4, base=1.0, cap=30.0, jitter=draw) == 1.0
    assert bounds == [(1.0, 8.0)]


class _InstantLoop(PassLoop):
    """Sleeps take no time and are recorded, so hours of outage pass in a moment."""

    delays: list[float]

    async def _sleep(self, seconds: float) -> None:
        self.delays.append(seconds)
        await asyncio.sleep(0)


async def test_the_pass_loop_keeps_retrying_through_an_outage_of_any_length() -> None:
    # Thousands of consecutive failures (85 minutes at 5 s each is ~1,024) once overflowed the
    # delay maths and killed the loop: no more alerts or deliveries until a restart.
    failing = 1_500
    calls = 0
    done = asyncio.Event()

    async def step() -> Pass:
        nonlocal calls
        calls += 1
        if calls <= failing:
            raise RuntimeError("database down")
        done.set()
        return Pass(more=False, next_deadline=None)

    loop = _InstantLoop("test", step, FakeClock(), max_sleep=60.0)
    loop.delays = []
    await loop.start()
    await asyncio.wait_for(done.wait(), timeout=30)
    await loop.stop(timeout=5)
    assert calls > failing  # it came back after the outage
    assert loop.delays[:failing] == [backoff(n, base=0.25, cap=5.0) for n in range(2, failing + 2)]
    assert max(loop.delays[:failing]) == pytest.approx(5.0)
