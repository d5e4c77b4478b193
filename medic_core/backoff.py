"""How long to wait before retrying something that failed: the one back-off formula.

Exponential from ``base``, never above ``cap``; the exponent is bounded so an outage of any length
cannot overflow a float (``0.25 * 2**1024`` raises). With ``jitter`` (``random.uniform``) the
delay is drawn between ``base`` and that value: full jitter keeps a crowd of retriers out of step.
"""

from __future__ import annotations

from collections.abc import Callable

#: 2**62 times any sane base is far above every cap; the bound only keeps the arithmetic finite.
_MAX_EXPONENT = 62


def backoff(
    attempt: int,
    *,
    base: float,
    cap: float,
    jitter: Callable[[float, float], float] | None = None,
) -> float:
    """The delay before retry ``attempt`` (1 = the first retry): ``base * 2**(attempt - 1)``,
    at least ``base`` and at most ``cap``."""
    exponent = min(max(attempt - 1, 0), _MAX_EXPONENT)
    delay = max(base, min(cap, base * 2.0**exponent))
    return jitter(base, delay) if jitter is not None else delay
