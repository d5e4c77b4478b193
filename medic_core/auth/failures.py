"""The budget of failed authentications per client source, spent before any key is looked up.

Anyone who can reach the HTTP or gRPC port can send a key; verifying an unknown key id costs a
database query (the negative cache in ``ApiKeys`` saves only repeats of the same id). The
per-key rate limit cannot help: there is no key yet. So each source (``medic_core.net.inbound``:
an IPv4 address or an IPv6 /64, behind trusted proxies the forwarded client) gets a token
bucket of ``burst`` tokens regaining ``rate`` a second, spent by *failures*: no key on a route
that needs one, a malformed, unknown, revoked or expired key. A source whose bucket is empty is
refused (HTTP 429, gRPC RESOURCE_EXHAUSTED) before its key is looked up, until it refills.
``medic_core.auth.gate`` applies it; this module holds the buckets.

A token is *reserved* when a request is about to start a database query, and given back when
the key turns out valid: charging only after a failed lookup would let a source's concurrent
requests all pass the check before the first failure is counted (40 connections of one source
made 40 queries a second where the budget allows 1).

Charging failures rather than requests is what lets heavy legitimate traffic from one address
(thousands of heartbeats a second, a fleet behind one NAT) through untouched: valid keys never
keep a token, and keys already verified in this process's cache take none. One misconfigured
host behind that NAT can still empty the bucket; then requests whose key the cache alone proves
still pass, so only the clients that would cost a lookup wait.

A refusal is answered after about ``delay`` seconds (``MEDIC_AUTH_FAILURE_DELAY``, 3 s). Refusing
costs no lookup, but a flood of requests answered at once still costs parsing and answering
each: 2,000 connections that resend the moment they are refused keep the process busy and every
other client waits behind them (bench/preauth: held 1 s, ~1,850 refusals a second at 72% of a
core; held 3 s, ~650 at 37-51%). Held, each such connection sends at most one request per hold;
the held request is a sleeping coroutine on a connection the connection caps already count, and
a legitimate client refused this way had been failing anyway.

The table is in memory, per process (a source may spend the budget once per replica), and holds
only sources that failed recently, at most ``max_sources`` of them.
"""

from __future__ import annotations

import asyncio
import random
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
        delay: float = 0.0,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.delay = max(0.0, delay)
        # Sources with lookups under way -> how many (bounded by the requests in flight).
        self._reserved: dict[str, int] = {}
        self._buckets = TokenBuckets[str](
            rate, burst, max_keys=max(1, max_sources), monotonic=monotonic
        )

    @property
    def enabled(self) -> bool:
        return self._buckets.enabled

    def __len__(self) -> int:
        return len(self._buckets)

    def refusal(self, source: str) -> float | None:
        """Seconds ``source`` must wait before its key is looked up again; None: go ahead.

        While lookups of the source are under way their tokens are not counted as spent (they
        come back if the keys are valid): the request may still join one of those lookups, and
        ``reserve`` refuses it if it needs a new one.
        """
        if not self.enabled or source in self._reserved:
            return None
        verdict = self._buckets.peek(source)
        return None if verdict.allowed else verdict.retry_after

    def reserve(self, source: str) -> bool:
        """Take a token for a lookup about to start; False: none left, refuse the request.
        Every reservation is ended by one ``settle``."""
        if not self.enabled:
            return True
        if not self._buckets.take(source).allowed:
            return False
        self._reserved[source] = self._reserved.get(source, 0) + 1
        return True

    def settle(self, source: str, *, valid: bool) -> None:
        """End a reservation: the token comes back if the lookup found a valid key (or could
        not be made); it stays spent if the key was refused."""
        if not self.enabled:
            return
        held = self._reserved.pop(source, 0) - 1
        if held > 0:
            self._reserved[source] = held
        if valid:
            self._buckets.give(source)

    def charge(self, source: str) -> None:
        """Record one failed authentication that reserved nothing (no lookup was needed)."""
        if self.enabled:
            self._buckets.spend(source)

    async def hold(self, source: str) -> float:
        """Wait about ``delay`` before a refusal is answered; then the seconds ``source`` still
        has to wait (at least 1, for ``Retry-After``).

        The wait is drawn between half and one and a half ``delay``: refused together, a flood's
        connections would otherwise come back together, and each wave would hold up everyone
        else while it is answered (seen in bench/preauth as latency spikes every second).
        """
        if self.delay > 0:
            await asyncio.sleep(self.delay * random.uniform(0.5, 1.5))
        return max(1.0, self.refusal(source) or 0.0)
