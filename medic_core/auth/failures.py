"""The budget of failed authentications per client source, spent before any key is looked up.

Anyone who can reach the HTTP or gRPC port can send a key; verifying an unknown key id costs a
database query (the negative cache in ``ApiKeys`` saves only repeats of the same id). The
per-key rate limit cannot help: there is no key yet. So each source (``medic_core.net.inbound``:
an IPv4 address or an IPv6 /64, behind trusted proxies the forwarded client) gets a token
bucket charged by *failures* only -- no key on a route that needs one, a malformed, unknown,
revoked or expired key. A source whose bucket is empty is refused (HTTP 429, gRPC
RESOURCE_EXHAUSTED) before its key is looked up, until the bucket refills.

Charging failures rather than requests is what lets heavy legitimate traffic from one address
(thousands of heartbeats a second, a fleet behind one NAT) through untouched: valid keys never
spend the budget. One misconfigured host behind that NAT can still empty it; then requests whose
key this process has already verified (``ApiKeys.verified``: the cache answers, no query) still
pass, so only the clients that would cost a lookup wait.

The table is in memory, per process (a source may spend the budget once per replica), and holds
only sources that failed recently, at most ``max_sources`` of them.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from medic_core.ratelimit import TokenBuckets


class AuthFailureBudget:
    def __init__(
        self,
        rate: float,
        burst: int,
        *,
        max_sources: int,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._buckets = TokenBuckets[str](
            rate, burst, max_keys=max(1, max_sources), monotonic=monotonic
        )

    @property
    def enabled(self) -> bool:
        return self._buckets.enabled

    @property
    def rate(self) -> float:
        return self._buckets.rate

    @property
    def burst(self) -> int:
        return self._buckets.burst

    def __len__(self) -> int:
        return len(self._buckets)

    def refusal(self, source: str) -> float | None:
        """Seconds ``source`` must wait before its key is looked up again; None: go ahead."""
        if not self.enabled:
            return None
        verdict = self._buckets.peek(source)
        return None if verdict.allowed else verdict.retry_after

    def charge(self, source: str) -> None:
        """Record one failed authentication of ``source``."""
        if self.enabled:
            self._buckets.spend(source)
