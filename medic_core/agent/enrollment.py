"""Agent identity: the API key an agent id belongs to, and how an admin moves or revokes it.

An agent id is only a name the agent chose; the API key is the credential. Without a binding,
any ``agent`` key could say ``Hello`` with another host's id, push it off its stream, replace
its advertised allowlist and receive its executions (environment secrets included). So:

- **Binding.** An agent id belongs to the key of its first ``Hello`` (``agents.key_id``). A
  ``Hello`` with that id from any other key is refused (``claim``, inside the transaction that
  would store the ``Hello``, so it holds across replicas): nothing of it is stored, the agent's
  current stream is not touched, and the refusal is audited (``agent.hello_refused``, at most
  once a minute per key, id and reason, so a client refused in a loop cannot flood the log) and
  counted (``medic_agent_hello_refusals_total{reason}``). One key may still serve many agents
  (a fleet).
- **Unbound agents** (registered before the binding existed, whose key the migration could not
  recover): the next ``Hello`` binds them, with a warning in the log and the key in the
  ``agent.update`` audit entry.
- **Re-assign** (``reassign``, an admin): the agent now belongs to another active key with the
  ``agent`` scope -- how keys are rotated. A stream open with the old key ends (at once on this
  replica; on another one the next time it says anything, as a replaced stream does), and its
  reconnects with the old key are refused.
- **Revoke** (``revoke``, an admin): every ``Hello`` with the id is refused until it is
  re-assigned; its stream ends the same way; its unfinished executions fail ``agent_revoked``;
  its ``agent_offline`` alert resolves and no new one opens.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from medic_core.agent.executions import Executions
from medic_core.agent.sessions import Session
from medic_core.alerts import AlertBook
from medic_core.audit import Actor, record_audit
from medic_core.auth import grants
from medic_core.clock import Clock, isoformat
from medic_core.errors import Conflict, NotFound, ValidationError
from medic_core.events import EventBus, PendingEvents
from medic_core.observability.metrics import Metrics
from medic_core.store import Database
from medic_core.store.models import Agent, ApiKey, Service

log = logging.getLogger(__name__)

#: Why a ``Hello`` was refused (the label of ``medic_agent_hello_refusals_total``).
HELLO_REFUSALS = ("other_key", "revoked", "no_key")
_AUDIT_EVERY = timedelta(seconds=60)
_AUDIT_MEMORY = 10_000


def key_of(actor: Actor) -> str | None:
    """The key id of an actor ``key:<key_id>`` (what a stream authenticated with), else None."""
    kind, _, key_id = actor.name.partition(":")
    return key_id if kind == "key" and key_id else None


class HelloRefused(Exception):
    """The key of the stream may not speak for the agent id: the stream ends
    ``PERMISSION_DENIED`` with ``detail``; nothing of the ``Hello`` was stored."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


class Enrollment:
    def __init__(
        self,
        db: Database,
        clock: Clock,
        bus: EventBus,
        metrics: Metrics,
        alerts: AlertBook,
        executions: Executions,
        sessions: Callable[[str], Session | None],
        *,
        alert_after: timedelta,
        on_deadline: Callable[[], None],
    ) -> None:
        self._db = db
        self._clock = clock
        self._bus = bus
        self._alerts = alerts
        self._executions = executions
        self._sessions = sessions
        self._alert_after = alert_after
        self._transitions = metrics.agent_transitions
        self._on_deadline = on_deadline
        self._audited: dict[tuple[str, str, str], datetime] = {}
        self._refusals = metrics.agent_hello_refusals
        for reason in HELLO_REFUSALS:
            self._refusals.labels(reason)

    # -- the Hello -----------------------------------------------------------------------------

    def claim(
        self,
        db: AsyncSession,
        agent: Agent | None,
        agent_id: str,
        session: Session,
        now: datetime,
    ) -> HelloRefused | None:
        """Whether the stream's key may speak for ``agent_id`` (``agent``: its row, read with a
        lock, or None for a new agent). Called in the ``Hello``'s transaction before anything
        is written; on a refusal only its audit entry is added. Binds an unbound agent (the
        caller stores ``agent.key_id``)."""
        key_id = key_of(session.actor)
        refusal: HelloRefused | None = None
        if key_id is None:
            refusal = HelloRefused(
                "no_key", "an agent stream needs an API key with the agent scope"
            )
        elif agent is None:
            return None
        elif agent.revoked_at is not None:
            refusal = HelloRefused(
                "revoked",
                f"agent {agent_id} was revoked at {isoformat(agent.revoked_at)}: an admin must "
                "re-assign it to a key (POST /api/v1/agents/{id}/reassign) before it may connect",
            )
        elif agent.key_id is None:
            log.warning(
                "agent %s had no API key bound (registered before identities were bound): "
                "binding it to key %s, the key of this Hello",
                agent_id,
                key_id,
                extra={"agent_id": agent_id, "key_id": key_id},
            )
            return None
        elif agent.key_id != key_id:
            # The owner's key id is not named: it is none of the caller's business.
            refusal = HelloRefused(
                "other_key",
                f"agent id {agent_id} belongs to another API key: key {key_id} cannot speak for "
                "it (an admin can re-assign the agent: POST /api/v1/agents/{id}/reassign)",
            )
        else:
            return None
        if self._audit_due(key_id or session.actor.name, agent_id, refusal.reason, now):
            record_audit(
                db,
                actor=session.actor,
                at=now,
                action="agent.hello_refused",
                resource_type="agent",
                resource_id=agent_id,
                after={"agent_id": agent_id, "key_id": key_id, "reason": refusal.reason},
            )
        return refusal

    def _audit_due(self, key: str, agent_id: str, reason: str, now: datetime) -> bool:
        """At most one audit entry a minute per (key, agent id, reason) in this process."""
        entry = (key, agent_id, reason)
        last = self._audited.get(entry)
        if last is not None and now - last < _AUDIT_EVERY:
            return False
        if len(self._audited) >= _AUDIT_MEMORY:
            self._audited.clear()  # bounded: forgetting only means auditing once more
        self._audited[entry] = now
        return True

    def refused(self, session: Session, agent_id: str, refusal: HelloRefused) -> None:
        """Count and log a refusal (after its transaction committed)."""
        self._refusals.labels(refusal.reason).inc()
        log.warning(
            "refused a Hello for agent %s from key %s: %s",
            agent_id,
            key_of(session.actor),
            refusal.reason,
            extra={"agent_id": agent_id, "key_id": key_of(session.actor)},
        )

    # -- admin: re-assign, revoke --------------------------------------------------------------

    async def reassign(self, agent_id: str, key_id: object, *, actor: Actor) -> None:
        """Bind ``agent_id`` to the key ``key_id`` (active, with the ``agent`` scope), and lift
        a revocation. A stream open with another key ends; the agent must reconnect with this
        key. ``ValidationError`` for a key that does not qualify, ``NotFound`` for an unknown
        agent."""
        if not isinstance(key_id, str) or not 1 <= len(key_id) <= 32:
            raise ValidationError(
                "key_id must be the key id of an API key (the part after medic_ in its token)",
                field="key_id",
            )
        now = self._clock.now()
        pending = PendingEvents()
        async with self._db.transaction() as db:
            key = await db.scalar(select(ApiKey).where(ApiKey.key_id == key_id))
            if key is None:
                raise ValidationError(f"no API key {key_id!r}", field="key_id")
            if key.revoked_at is not None:
                raise ValidationError(f"API key {key_id} is revoked", field="key_id")
            if key.expires_at is not None and key.expires_at <= now:
                raise ValidationError(f"API key {key_id} has expired", field="key_id")
            if not grants(key.scopes, "agent"):
                raise ValidationError(
                    f"API key {key_id} lacks the 'agent' scope: agents can only connect with "
                    "an agent key",
                    field="key_id",
                )
            agent = await self._find(db, agent_id)
            before = _record(agent)
            moved = agent.key_id != key_id
            revoked = agent.revoked_at is not None
            if not moved and not revoked:
                return  # already so
            agent.key_id = key_id
            agent.revoked_at = None
            agent.updated_at = now
            if moved and agent.status == "online":
                self._disconnect(pending, agent, now, "reassigned")
                agent.next_due = now + self._alert_after  # it should be back, with the new key
            elif revoked and agent.next_due is None:
                agent.next_due = now + self._alert_after
            record_audit(
                db,
                actor=actor,
                at=now,
                action="agent.reassign",
                resource_type="agent",
                resource_id=agent_id,
                before=before,
                after=_record(agent),
            )
        pending.publish(self._bus)
        self._on_deadline()
        local = self._sessions(agent_id)
        if moved and local is not None and key_of(local.actor) != key_id:
            local.end("forbidden", f"agent {agent_id} was re-assigned to another API key")

    async def revoke(self, agent_id: str, *, actor: Actor) -> None:
        """Refuse every ``Hello`` with ``agent_id`` until it is re-assigned; end its stream;
        fail its unfinished executions (``agent_revoked``). ``Conflict`` when already revoked."""
        now = self._clock.now()
        pending = PendingEvents()
        async with self._db.transaction() as db:
            agent = await self._find(db, agent_id)
            if agent.revoked_at is not None:
                raise Conflict(f"agent {agent_id} was already revoked")
            before = _record(agent)
            agent.revoked_at = now
            agent.updated_at = now
            if agent.status == "online":
                self._disconnect(pending, agent, now, "revoked")
            agent.next_due = None  # a revoked agent's absence is not an incident
            failed = await self._executions.fail_unfinished(
                db,
                pending,
                agent_id,
                "agent_revoked",
                f"agent revoked by {actor.name}: no result will come from it",
                now,
                actor=actor,
            )
            service = await db.get(Service, agent.service_id) if agent.service_id else None
            if service is not None and service.agent_id == agent_id:
                await self._alerts.resolve_in(
                    db,
                    pending,
                    service,
                    ("agent_offline",),
                    now=now,
                    resolution="agent revoked",
                    actor=actor,
                )
            record_audit(
                db,
                actor=actor,
                at=now,
                action="agent.revoke",
                resource_type="agent",
                resource_id=agent_id,
                before=before,
                after={**_record(agent), "executions_failed": failed},
            )
        pending.publish(self._bus)
        local = self._sessions(agent_id)
        if local is not None:
            local.end("forbidden", f"agent {agent_id} was revoked")

    async def _find(self, db: AsyncSession, agent_id: str) -> Agent:
        query = select(Agent).where(Agent.agent_id == agent_id)
        if self._db.is_postgres:
            query = query.with_for_update()
        agent = await db.scalar(query)
        if agent is None:
            raise NotFound(f"no agent {agent_id!r}")
        return agent

    def _disconnect(self, pending: PendingEvents, agent: Agent, now: datetime, why: str) -> None:
        """Record the agent offline: its stream no longer speaks for it, on any replica (the
        replica holding it finds the session gone the next time the stream says anything, and
        ends it; nothing more is sent on it, since every send is claimed against the session)."""
        agent.status = "offline"
        agent.session_id = None
        agent.offline_since = now
        self._transitions.labels("offline", why).inc()
        pending.add("agent.offline", now, agent_id=agent.agent_id, reason=why)


def _record(agent: Agent) -> dict[str, object]:
    return {
        "key_id": agent.key_id,
        "revoked_at": isoformat(agent.revoked_at),
        "status": agent.status,
    }
