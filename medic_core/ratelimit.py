"""Token buckets: per API key (requests) and per client address (failed authentications).

A bucket holds up to ``burst`` tokens and regains ``rate`` tokens per second; a request takes
one. Buckets live in memory, per process: with N replicas a key may reach N times the rate. That
is the usual trade (no shared store on the hot path) and is documented in docs/api.md.

``max_keys`` bounds the table for keys an outsider chooses (client addresses): past it the
bucket used least recently is forgotten, which is the same as forgiving it early (a missing
bucket is a full one). Time is injected (``monotonic``) so tests hold it still.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)


@dataclass(slots=True)
class _Bucket:
    tokens: float
    updated: float


@dataclass(frozen=True, slots=True)
class Verdict:
    allowed: bool
    limit: int
    remaining: int
    reset: int  # seconds until the bucket is full again
    retry_after: float

    def headers(self) -> dict[str, str]:
        """The IETF ``RateLimit-*`` response headers."""
        return {
            "RateLimit-Limit": str(self.limit),
            "RateLimit-Remaining": str(self.remaining),
            "RateLimit-Reset": str(self.reset),
        }


class TokenBuckets(Generic[K]):
    def __init__(
        self,
        rate: float,
        burst: int,
        *,
        max_keys: int | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.rate = rate
        self.burst = max(1, burst)
        self._max_keys = max_keys
        self._monotonic = monotonic
        self._buckets: OrderedDict[K, _Bucket] = OrderedDict()

    @property
    def enabled(self) -> bool:
        return self.rate > 0

    def __len__(self) -> int:
        return len(self._buckets)

    def take(self, key: K, cost: float = 1.0) -> Verdict:
        """Take ``cost`` tokens from ``key``'s bucket if it holds them; say what happened."""
        bucket = self._refilled(key, create=True)
        assert bucket is not None
        allowed = bucket.tokens >= cost
        if allowed:
            bucket.tokens -= cost
        return self._verdict(bucket.tokens, allowed, cost)

    def spend(self, key: K, cost: float = 1.0) -> None:
        """Take up to ``cost`` tokens (what the bucket holds, at most): a charge for something
        that already happened, which cannot be refused."""
        bucket = self._refilled(key, create=True)
        assert bucket is not None
        bucket.tokens = max(0.0, bucket.tokens - cost)

    def give(self, key: K, amount: float = 1.0) -> None:
        """Return ``amount`` tokens taken earlier (never above ``burst``)."""
        bucket = self._refilled(key, create=False)
        if bucket is not None:
            bucket.tokens = min(float(self.burst), bucket.tokens + amount)

    def peek(self, key: K, cost: float = 1.0) -> Verdict:
        """Would ``take(key, cost)`` be allowed? Takes nothing and creates no bucket."""
        bucket = self._refilled(key, create=False)
        tokens = float(self.burst) if bucket is None else bucket.tokens
        return self._verdict(tokens, tokens >= cost, cost)

    def _refilled(self, key: K, *, create: bool) -> _Bucket | None:
        now = self._monotonic()
        bucket = self._buckets.get(key)
        if bucket is None:
            if not create:
                return None
            bucket = self._buckets[key] = _Bucket(float(self.burst), now)
            if self._max_keys is not None and len(self._buckets) > self._max_keys:
                self._buckets.popitem(last=False)
        elif self._max_keys is not None:
            self._buckets.move_to_end(key)
        bucket.tokens = min(self.burst, bucket.tokens + (now - bucket.updated) * self.rate)
        bucket.updated = now
        return bucket

    def _verdict(self, tokens: float, allowed: bool, cost: float) -> Verdict:
        reset = math.ceil((self.burst - tokens) / self.rate) if self.rate > 0 else 0
        retry = 0.0 if allowed or self.rate <= 0 else (cost - tokens) / self.rate
        return Verdict(allowed, self.burst, int(tokens), reset, retry)
