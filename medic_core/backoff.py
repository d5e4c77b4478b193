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
    factor: float = 2.0,
    jitter: Callable[[float, float], float] | None = None,
) -> float:
    """The delay before retry ``attempt`` (1 = the first retry): ``base * factor**(attempt - 1)``
    (``factor`` 2 unless given, 1 to 10), at least ``base`` and at most ``cap``."""
    exponent = min(max(attempt - 1, 0), _MAX_EXPONENT)
    growth = max(1.0, min(factor, 10.0)) ** exponent  # 10**62 is still a finite float
    delay = max(base, min(cap, base * growth))
    return jitter(base, delay) if jitter is not None else delay
