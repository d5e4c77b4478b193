"""Authentication as both ports do it: the caller's source budget first, its key second.

``AuthGate.authenticate`` is the one path from "a request carrying (or lacking) a key, from
this source" to a ``Principal``, shared by the HTTP middleware and the agent gRPC endpoint, so
the two cannot drift apart:

1. A source over its budget of failed authentications (``medic_core.auth.failures``) gets a
   principal only if this process's cache alone proves its key (``ApiKeys.verified``, no
   query); otherwise ``RateLimited`` after the budget's hold, before any lookup.
2. Otherwise the key is checked; a lookup that would start a database query first reserves one
   of the source's tokens (refused with ``RateLimited`` when none is left), given back when the
   key is valid. A failure that needed no query (no key, a malformed one, an id the negative
   cache knows) is charged afterwards. Failures raise ``Unauthorized``.

The transports map ``RateLimited`` to HTTP 429 and gRPC RESOURCE_EXHAUSTED, ``Unauthorized`` to
401 and UNAUTHENTICATED. Counted: ``medic_auth_failures_total{transport}`` and
``medic_preauth_refusals_total{transport,reason="source_budget"}``.
"""

from __future__ import annotations

from medic_core.auth.failures import AuthFailureBudget
from medic_core.auth.keys import ApiKeys, Principal
from medic_core.errors import RateLimited, Unauthorized
from medic_core.observability.metrics import Metrics


class _NoToken(Exception):
    """The source has no token left for the lookup this request would start."""


class AuthGate:
    def __init__(self, keys: ApiKeys, budget: AuthFailureBudget, metrics: Metrics) -> None:
        self.keys = keys
        self.budget = budget
        self._metrics = metrics

    async def authenticate(
        self, token: str | None, source: str, *, transport: str, missing: str
    ) -> Principal:
        """The principal of ``token`` sent from ``source``; ``missing`` is the ``Unauthorized``
        message for a request without a usable key."""
        budget = self.budget
        if budget.refusal(source) is not None:
            principal = self.keys.verified(token) if token else None
            if principal is not None:
                return principal
            raise await self._refuse(source, transport)
        reserved = False

        def reserve() -> None:
            nonlocal reserved
            if not budget.reserve(source):
                raise _NoToken
            reserved = True

        try:
            if not token:
                raise Unauthorized(missing)
            principal = await self.keys.authenticate(token, before_query=reserve)
        except _NoToken:
            raise await self._refuse(source, transport) from None
        except Unauthorized:
            if reserved:
                budget.settle(source, valid=False)
            else:
                budget.charge(source)
            self._metrics.auth_failures.labels(transport).inc()
            raise
        except Exception:
            if reserved:  # the database failed, not the caller
                budget.settle(source, valid=True)
            raise
        except BaseException:
            # Cancelled (the client hung up): the query runs on for the others waiting for it,
            # so the token stays spent -- or hanging up at once would make queries free.
            if reserved:
                budget.settle(source, valid=False)
            raise
        if reserved:
            budget.settle(source, valid=True)
        return principal

    async def _refuse(self, source: str, transport: str) -> RateLimited:
        self._metrics.preauth_refusals.labels(transport, "source_budget").inc()
        wait = await self.budget.hold(source)
        return RateLimited(
            "too many failed authentications from your address; "
            f"retry in {round(wait)} s with a valid API key",
            retry_after=wait,
        )
