"""API keys: shown once, stored hashed, found in O(1).

A token reads ``medic_<key_id>_<secret>``. ``key_id`` is the public half and the unique lookup
index, so authentication is one index probe, never a scan. The secret is 256 random bits, so a
single SHA-256 is the right hash: a slow password hash protects low-entropy secrets and would
only cost every request time here. The digest is compared in constant time.

Verified keys are cached for a few seconds to keep the database off the ingest hot path; a
revocation made through this process evicts the entry at once, one made elsewhere takes effect
within ``cache_ttl``. A known key id presented with a wrong secret is refused from that cache
too (the digests are compared in constant time), so it costs no query either.

Key ids that are not in the database (or whose key is revoked) are remembered as unknown for
``negative_ttl`` seconds in a separate, bounded table (``negative_size`` ids, the oldest
forgotten first), so repeating an unknown id costs no query. It is separate so that a flood
of made-up ids can neither grow memory without bound nor push the verified keys out of their
cache. A key created through this process removes its id from that table at once; a key created
on another replica (or by ``medic apikey create``) is accepted here at most ``negative_ttl``
seconds after its id was last refused. Fresh made-up ids still cost one query each: the budget of
failed authentications per source (``medic_core.auth.failures``) bounds how many a caller gets.

``medic_api_key_lookups_total{result}`` counts how each lookup was answered: ``hit`` (verified
cache), ``negative_hit`` (unknown-id cache), ``query`` (a database query was started) or
``joined`` (waited for a query already under way for the same id). ``last_used_at`` is written
back in the background, at most once a minute per key.

A lookup goes through the server's ``DatabaseBreaker`` (``medic_core/store/breaker.py``): while
the database is unreachable or too slow a query is not even started (503 at once), and a
request waits at most ``timeout`` seconds for one (503 "database too slow"; the query runs on
for whoever joins it). A full or read-only database still serves lookups: they only read.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError

from medic_core.audit import Actor, record_audit
from medic_core.clock import Clock, isoformat
from medic_core.errors import (
    Conflict,
    NotFound,
    Unauthorized,
    ValidationError,
    database_unavailable,
)
from medic_core.observability.metrics import Metrics
from medic_core.store import Database
from medic_core.store.breaker import DatabaseBreaker
from medic_core.store.faults import classify
from medic_core.store.models import ApiKey
from medic_core.validation import MAX_ID, quote

SCOPES = ("read", "write", "admin", "heartbeat", "agent")
# What each scope carries with it: admin can do what write can, write what read can, and both
# may send heartbeats. ``agent`` stands alone: an agent key can do nothing else.
_IMPLIES: dict[str, frozenset[str]] = {
    "admin": frozenset({"admin", "write", "read", "heartbeat"}),
    "write": frozenset({"write", "read", "heartbeat"}),
    "read": frozenset({"read"}),
    "heartbeat": frozenset({"heartbeat"}),
    "agent": frozenset({"agent"}),
}
_PREFIX = "medic_"
_NOT_CHECKED = "the API key could not be checked, retry shortly"
_LAST_USED_EVERY = timedelta(seconds=60)
_CACHE_MAX = 10_000


def grants(scopes: frozenset[str] | set[str] | list[str], required: str) -> bool:
    return any(required in _IMPLIES.get(s, frozenset()) for s in scopes)


@dataclass(frozen=True, slots=True)
class Principal:
    """The authenticated caller."""

    id: int
    key_id: str
    name: str
    scopes: frozenset[str]
    expires_at: datetime | None

    @property
    def actor_name(self) -> str:
        return f"key:{self.key_id}"


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def parse_token(token: str) -> tuple[str, str]:
    if not token.startswith(_PREFIX):
        raise Unauthorized("malformed API key: Medic keys start with 'medic_'")
    key_id, sep, secret = token[len(_PREFIX) :].partition("_")
    if not sep or not key_id or not secret or len(key_id) > 32:
        raise Unauthorized("malformed API key: expected medic_<key id>_<secret>")
    return key_id, secret


def key_to_dict(key: ApiKey) -> dict[str, Any]:
    return {
        "id": key.id,
        "key_id": key.key_id,
        "name": key.name,
        "scopes": list(key.scopes),
        "created_at": isoformat(key.created_at),
        "created_by": key.created_by,
        "expires_at": isoformat(key.expires_at),
        "revoked_at": isoformat(key.revoked_at),
        "last_used_at": isoformat(key.last_used_at),
    }


class ApiKeys:
    def __init__(
        self,
        db: Database,
        clock: Clock,
        *,
        cache_ttl: float = 5.0,
        negative_ttl: float = 10.0,
        negative_size: int = 10_000,
        metrics: Metrics | None = None,
        monotonic: Callable[[], float] = time.monotonic,
        breaker: DatabaseBreaker | None = None,
        timeout: float = 2.0,
    ) -> None:
        self._db = db
        self._breaker = breaker or DatabaseBreaker()
        self._timeout = timeout
        self._clock = clock
        self._cache_ttl = cache_ttl
        self._negative_ttl = negative_ttl
        self._negative_size = max(1, negative_size)
        self._monotonic = monotonic
        # key id -> (when loaded, stored hash, principal): keys that exist and are not revoked.
        self._cache: dict[str, tuple[float, str, Principal]] = {}
        # key id -> when the database last said it is missing (or revoked), oldest first.
        self._unknown: OrderedDict[str, float] = OrderedDict()
        self._loading: dict[str, asyncio.Future[tuple[str, Principal | None]]] = {}
        # Bumped by every creation and revocation: a load that began before one must not cache
        # what it read.
        self._generation = 0
        self._used: dict[int, datetime] = {}
        self._written: dict[int, datetime] = {}
        self._lookups = (
            {
                result: metrics.api_key_lookups.labels(result)
                for result in ("hit", "negative_hit", "query", "joined")
            }
            if metrics is not None
            else None
        )

    def _count(self, result: str) -> None:
        if self._lookups is not None:
            self._lookups[result].inc()

    async def create(
        self,
        *,
        name: str,
        scopes: list[str],
        actor: Actor,
        expires_at: datetime | None = None,
        token: str | None = None,
    ) -> tuple[ApiKey, str]:
        """Create a key; return it with its token, which is never retrievable again."""
        name = name.strip()
        if not name or len(name) > 200:
            raise ValidationError("a key needs a name of 1 to 200 characters", field="name")
        unknown = sorted(set(scopes) - set(SCOPES))
        if not scopes or unknown:
            raise ValidationError(
                f"scopes must be a non-empty subset of {', '.join(SCOPES)}"
                + (f"; unknown: {', '.join(unknown)}" if unknown else ""),
                field="scopes",
            )
        now = self._clock.now()
        if expires_at is not None and expires_at <= now:
            raise ValidationError("expires_at must be in the future", field="expires_at")
        if token is None:
            key_id = secrets.token_hex(6)
            secret = secrets.token_urlsafe(32)
            token = f"{_PREFIX}{key_id}_{secret}"
        else:
            try:
                key_id, secret = parse_token(token)
            except Unauthorized as exc:
                raise ValidationError(str(exc), field="token") from None
            if len(secret) < 32:
                raise ValidationError("a supplied key's secret needs at least 32 characters")
        key = ApiKey(
            key_id=key_id,
            secret_hash=_hash(secret),
            name=name,
            scopes=sorted(set(scopes)),
            created_at=now,
            created_by=actor.name,
            expires_at=expires_at,
        )
        taken = Conflict(f"an API key with id {quote(key_id)} already exists")
        try:
            async with self._db.transaction() as session:
                exists = await session.scalar(select(ApiKey.id).where(ApiKey.key_id == key_id))
                if exists is not None:
                    raise taken
                session.add(key)
                await session.flush()
                record_audit(
                    session,
                    actor=actor,
                    at=now,
                    action="apikey.create",
                    resource_type="apikey",
                    resource_id=key.id,
                    after=key_to_dict(key),
                )
        except IntegrityError:
            # The check above cannot see a key another process is inserting at the same moment
            # (two replicas bootstrapping one MEDIC_ADMIN_KEY): the unique index refuses the
            # second. That is the same conflict -- but only if the key is there now; any other
            # integrity error is a bug and stays one.
            if await self._exists(key_id):
                raise taken from None
            raise
        # Usable here at once, even if its id was refused as unknown a moment ago.
        self._unknown.pop(key_id, None)
        self._generation += 1
        return key, token

    async def _exists(self, key_id: str) -> bool:
        async with self._db.sessions() as session:
            found = await session.scalar(select(ApiKey.id).where(ApiKey.key_id == key_id))
        return found is not None

    async def count(self) -> int:
        async with self._db.sessions() as session:
            return len((await session.scalars(select(ApiKey.id).limit(1))).all())

    async def list(self, *, include_revoked: bool = False) -> list[ApiKey]:
        async with self._db.sessions() as session:
            query = select(ApiKey).order_by(ApiKey.id)
            if not include_revoked:
                query = query.where(ApiKey.revoked_at.is_(None))
            return list((await session.scalars(query)).all())

    async def get(self, ident: int | str) -> ApiKey:
        async with self._db.sessions() as session:
            return await self._find(session, ident)

    async def _find(self, session: Any, ident: int | str) -> ApiKey:
        """Find a key by its public key id or, failing that, by its numeric row id."""
        key = None
        if isinstance(ident, str):
            # A key id may be all digits too: the key id is tried first, as it is what people
            # copy from a token.
            key = await session.scalar(select(ApiKey).where(ApiKey.key_id == ident))
        if key is None and str(ident).isdigit() and 0 < int(ident) <= MAX_ID:
            key = await session.get(ApiKey, int(ident))
        if key is None:
            raise NotFound(f"no API key {quote(ident)}")
        assert isinstance(key, ApiKey)
        return key

    async def revoke(self, ident: int | str, *, actor: Actor) -> ApiKey:
        now = self._clock.now()
        async with self._db.transaction() as session:
            key = await self._find(session, ident)
            if key.revoked_at is not None:
                raise Conflict(f"API key {key.key_id} was already revoked")
            before = key_to_dict(key)
            key.revoked_at = now
            record_audit(
                session,
                actor=actor,
                at=now,
                action="apikey.revoke",
                resource_type="apikey",
                resource_id=key.id,
                before=before,
                after=key_to_dict(key),
            )
        self._cache.pop(key.key_id, None)
        self._loading.pop(key.key_id, None)
        self._generation += 1
        return key

    async def authenticate(
        self, token: str, *, before_query: Callable[[], None] | None = None
    ) -> Principal:
        """The principal of ``token``, or ``Unauthorized``.

        ``before_query`` is called just before this call would start a database query (not when
        a cache answers or a query for the same id is already under way); it may raise to
        refuse the query (``medic_core.auth.gate`` reserves the caller's budget there).
        """
        key_id, secret = parse_token(token)
        stored_hash, principal = self._cached(key_id) or await self._lookup(key_id, before_query)
        return self._accept(key_id, secret, stored_hash, principal)

    def verified(self, token: str) -> Principal | None:
        """The principal of ``token`` if this process's cache alone proves it valid, else None.

        Never queries the database: what a caller whose source is over its budget of failed
        authentications may still get (``medic_core.auth.failures``).
        """
        try:
            key_id, secret = parse_token(token)
        except Unauthorized:
            return None
        cached = self._cached(key_id)
        if cached is None:
            return None
        try:
            return self._accept(key_id, secret, *cached)
        except Unauthorized:
            return None

    def _accept(
        self, key_id: str, secret: str, stored_hash: str, principal: Principal | None
    ) -> Principal:
        # Compare even when the key is unknown, so timing does not reveal which key ids exist.
        matches = hmac.compare_digest(_hash(secret), stored_hash or "0" * 64)
        if principal is None or not matches:
            raise Unauthorized("invalid or revoked API key")
        now = self._clock.now()
        if principal.expires_at is not None and principal.expires_at <= now:
            raise Unauthorized(f"API key {key_id} expired at {isoformat(principal.expires_at)}")
        self._used[principal.id] = now
        return principal

    def _cached(self, key_id: str) -> tuple[str, Principal | None] | None:
        """What the caches know of ``key_id`` (``("", None)``: unknown), or None: ask the
        database."""
        now = self._monotonic()
        cached = self._cache.get(key_id)
        if cached is not None and now - cached[0] < self._cache_ttl:
            self._count("hit")
            return cached[1], cached[2]
        refused_at = self._unknown.get(key_id)
        if refused_at is not None:
            if now - refused_at < self._negative_ttl:
                self._count("negative_hit")
                return "", None
            del self._unknown[key_id]
        return None

    async def _lookup(
        self, key_id: str, before_query: Callable[[], None] | None = None
    ) -> tuple[str, Principal | None]:
        """The stored hash and principal of ``key_id`` (``""``, None when unknown or revoked),
        from the database.

        When several requests need the same id, one query loads it and every request waits
        for that one (single flight): at thousands of requests per second a cache expiry
        otherwise sent every in-flight request to the database at once.
        """
        loading = self._loading.get(key_id)
        if loading is None:
            self._breaker.admit(_NOT_CHECKED, writes=False)
            if before_query is not None:
                before_query()
            self._count("query")
            loading = asyncio.ensure_future(self._load(key_id))
            self._loading[key_id] = loading
            loading.add_done_callback(lambda done: self._loaded(key_id, done))
        else:
            self._count("joined")
        # wait(), not wait_for(): a client that hangs up, or whose wait runs out, must not
        # cancel the load the others are waiting for.
        await asyncio.wait({loading}, timeout=self._timeout)
        if not loading.done():
            self._breaker.failed("slow", f"an API-key lookup took over {self._timeout:g} s")
            raise database_unavailable("slow", _NOT_CHECKED, retry_after=self._breaker.retry_after)
        error = loading.exception()
        cause = None if error is None else classify(error)
        if cause is not None:
            raise database_unavailable(cause, _NOT_CHECKED, retry_after=1) from error
        return loading.result()

    def _loaded(self, key_id: str, done: asyncio.Future[tuple[str, Principal | None]]) -> None:
        self._loading.pop(key_id, None)
        if done.cancelled():
            self._breaker.released()
            return
        # Retrieved here, so an error nobody awaited is not logged as lost; the breaker hears
        # of each query once, however many requests waited for it.
        error = done.exception()
        cause = None if error is None else classify(error)
        if error is None:
            self._breaker.succeeded(wrote=False)
        elif cause is not None:
            self._breaker.failed(cause, error)
        else:
            self._breaker.released()

    async def _load(self, key_id: str) -> tuple[str, Principal | None]:
        mono, generation = self._monotonic(), self._generation
        async with self._db.sessions() as session:
            key = await session.scalar(select(ApiKey).where(ApiKey.key_id == key_id))
        current = generation == self._generation
        if key is None or key.revoked_at is not None:
            if current and self._negative_ttl > 0:
                self._unknown[key_id] = mono
                self._unknown.move_to_end(key_id)
                while len(self._unknown) > self._negative_size:
                    self._unknown.popitem(last=False)
            return "", None
        principal = Principal(
            id=key.id,
            key_id=key.key_id,
            name=key.name,
            scopes=frozenset(key.scopes),
            expires_at=key.expires_at,
        )
        if current:
            if len(self._cache) >= _CACHE_MAX:
                # Only keys that exist land here, so this takes more keys than anyone creates;
                # it is a bound, not an eviction policy.
                self._cache.clear()
            self._cache[key_id] = (mono, key.secret_hash, principal)
        return key.secret_hash, principal

    async def flush_last_used(self) -> int:
        """Write ``last_used_at`` for keys used since the last flush (at most once a minute)."""
        due = {
            key: at
            for key, at in self._used.items()
            if key not in self._written or at - self._written[key] >= _LAST_USED_EVERY
        }
        if not due:
            return 0
        async with self._db.transaction() as session:
            for key, at in due.items():
                await session.execute(
                    update(ApiKey).where(ApiKey.id == key).values(last_used_at=at)
                )
        self._written.update(due)
        for key in due:
            self._used.pop(key, None)
        return len(due)
