"""The agent hub: which agents exist, which are connected here, and which have gone quiet.

``AgentHub`` is the agent domain's one entry point (the gRPC endpoint, the HTTP handlers and
``Medic`` use it); it builds the parts, each in a module of its own, and wires them together:

- **Sessions** (``sessions.py``, in process): each open agent stream is a ``Session``; one per
  agent id -- once its ``Hello`` is stored (``hello`` below): a ``Hello`` is first validated
  (its fields, ``info.py``, and its allowlist summary by the Rust verifier, ``verify.py``) and
  its key checked against the key the agent id belongs to (``enrollment.py``), inside the
  transaction that stores it (``hellos.py``: a fleet reconnecting after a restart says Hello
  all at once, so Hellos are stored in groups); a refused ``Hello`` changes nothing, and
  replaces no stream.
- **Presence** (``presence.py``, in the database): ``online`` with its session id,
  ``last_seen``, ``offline`` when the stream ends; batched, and conditional on the session id.
- **The offline watch** (``watch.py``): silent agents go ``offline``, agents away for
  ``alert_after`` get an ``agent_offline`` alert on their own service row (``services.py``);
  executions unanswered past the agent's memory window fail.
- **The dispatch pass** (``dispatch.py``), on every replica agents connect to: sends what was
  stored for the agents connected here and not sent yet; ends streams whose key was revoked.

Executions (allow-listed scripts run on agents) are their own component (``executions.py``,
``hub.executions``), lent the lookup of open streams; identity (which key an agent id belongs
to, re-assign and revoke) is ``enrollment.py`` (``hub.enrollment``); the bounds of what a
stream may send are ``limits.py``. The hub itself keeps the ``Hello`` (the one step that
touches every part) and the reading of agents.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import timedelta
from typing import Any

from sqlalchemy import select

from medic_core.agent import limits
from medic_core.agent.dispatch import DispatchPass
from medic_core.agent.enrollment import Enrollment, HelloRefused
from medic_core.agent.executions import Executions
from medic_core.agent.hellos import HelloWriter, Replaced
from medic_core.agent.info import LABEL_KEY_RE, AgentInfo
from medic_core.agent.limits import ProtocolRefusals
from medic_core.agent.presence import Presence
from medic_core.agent.records import agent_to_dict
from medic_core.agent.services import AgentServices
from medic_core.agent.sessions import Session, Sessions
from medic_core.agent.verify import AllowlistVerifier, VerifierBusy
from medic_core.agent.watch import OfflineWatch, WatchPass
from medic_core.alerts import AlertBook
from medic_core.audit import Actor
from medic_core.clock import Clock
from medic_core.errors import NotFound, Unavailable, ValidationError
from medic_core.events import EventBus
from medic_core.observability.metrics import Metrics
from medic_core.store import Database
from medic_core.store.models import Agent, Service
from medic_core.store.pagination import Page, check_limit, keyset, rows_page

log = logging.getLogger(__name__)

STATUSES = ("online", "offline")


class AgentHub:
    def __init__(
        self,
        db: Database,
        clock: Clock,
        bus: EventBus,
        metrics: Metrics,
        alerts: AlertBook,
        *,
        heartbeat_interval: int = 30,
        missed_heartbeats: int = 3,
        alert_after: int = 120,
        batch_size: int = 500,
        max_sleep: float = 10.0,
        dispatch_interval: float = 1.0,
        busy_retries: int = 10,
        seen_every: float = 1.0,
        max_output_bytes: int = limits.DEFAULT_MAX_OUTPUT_BYTES,
        hello_queue: int = 10_000,
        hello_batch: int = 500,
        verifier: AllowlistVerifier | None = None,
    ) -> None:
        if heartbeat_interval < 1 or missed_heartbeats < 1 or alert_after < 0:
            raise ValueError(
                "MEDIC_AGENT_HEARTBEAT_INTERVAL and MEDIC_AGENT_MISSED_HEARTBEATS must be at "
                "least 1, MEDIC_AGENT_OFFLINE_ALERT_AFTER at least 0"
            )
        if not dispatch_interval > 0:
            raise ValueError("MEDIC_AGENT_DISPATCH_INTERVAL must be more than 0")
        self._db = db
        self.heartbeat_interval = heartbeat_interval
        silence = timedelta(seconds=heartbeat_interval * missed_heartbeats)
        self._silence = silence
        alert_after_ = timedelta(seconds=alert_after)
        self._sessions = Sessions(metrics)
        # One verifier (and its cache of compiled rules) checks both the summaries of Hellos
        # and the requests against them.
        self._verifier = verifier or AllowlistVerifier()
        self._protocol = ProtocolRefusals(metrics)
        #: Scripts run on agents: dispatch, redelivery, updates, output (``executions.py``).
        self.executions = Executions(
            db,
            clock,
            bus,
            metrics,
            self.session,
            verifier=self._verifier,
            refusals=self._protocol,
            max_output_bytes=limits.check_max_output_bytes(max_output_bytes),
            busy_retries=limits.check_busy_retries(busy_retries),
            batch_size=batch_size,
            # An execution that ends or is handed back frees a slot on its agent: send what
            # waits for it now, not at the next interval.
            on_slot_freed=self._slot_freed,
        )
        self._dispatch = DispatchPass(
            db, clock, self._sessions, self.executions, interval=dispatch_interval
        )
        self._presence = Presence(
            db,
            clock,
            bus,
            metrics,
            self._sessions,
            silence=silence,
            alert_after=alert_after_,
            seen_every=seen_every,
            on_offline=self._deadline_moved,
        )
        #: The service row each agent's alerts hang on (``services.py``).
        self._services = AgentServices(db, silence=silence)
        self._watch = OfflineWatch(
            db,
            clock,
            bus,
            metrics,
            alerts,
            self._sessions,
            self._presence,
            self._services,
            self.executions,
            silence=silence,
            alert_after=alert_after_,
            batch_size=batch_size,
            max_sleep=max_sleep,
        )
        #: Which key each agent id belongs to; re-assign and revoke (``enrollment.py``).
        self.enrollment = Enrollment(
            db,
            clock,
            bus,
            metrics,
            alerts,
            self.executions,
            self.session,
            alert_after=alert_after_,
            on_deadline=self._deadline_moved,
        )
        #: Hellos are stored in groups (``hellos.py``): a fleet reconnects all at once.
        self.hellos = HelloWriter(
            db,
            clock,
            bus,
            metrics,
            alerts,
            self.enrollment,
            self.executions,
            self._services,
            silence=silence,
            queue_size=hello_queue,
            max_batch=hello_batch,
        )

    def _slot_freed(self) -> None:
        self._dispatch.wake()

    def _deadline_moved(self) -> None:
        self._watch.wake()

    @property
    def silence_seconds(self) -> int:
        """How long a connected agent may say nothing before it counts as offline."""
        return int(self._silence.total_seconds())

    async def execute(
        self,
        agent_id: str,
        script: str,
        args: Sequence[str],
        env: Mapping[str, str],
        timeout_seconds: int | None,
        actor: Actor,
    ) -> dict[str, Any]:
        """Run an allow-listed script on an agent (see ``Executions.execute``)."""
        return await self.executions.execute(
            agent_id, script, list(args), dict(env), timeout_seconds, actor=actor
        )

    # -- sessions ------------------------------------------------------------------------------

    def session(self, agent_id: str) -> Session | None:
        """The stream speaking for ``agent_id`` in this process, if any."""
        return self._sessions.get(agent_id)

    async def hello(self, session: Session, info: AgentInfo) -> bool:
        """Store what the agent said and register its stream; resolve its offline alert.
        Returns whether the agent has unfinished executions (its ``Welcome`` is followed by a
        replay, ``Executions.welcome``).

        In this order, so that a refused ``Hello`` changes nothing: validate it (``ValidationError``
        for a malformed one: the stream is then refused ``INVALID_ARGUMENT``); store it with the
        Hellos that arrived meanwhile (``hellos.py``), in the transaction that first checks that
        the stream's key may speak for the agent id (``HelloRefused``: refused
        ``PERMISSION_DENIED``); only then replace an older stream of the agent. A ``Hello`` that
        lost to a later one of the same agent in its batch ends its stream ``replaced``.
        """
        info = await self._validated(info)
        if session.agent_id is not None and session.agent_id != info.agent_id:
            self._protocol.count("invalid_hello")
            raise ValidationError("agent_id cannot change on a stream", field="agent_id")
        stored = await self.hellos.submit(session, info)
        if isinstance(stored, HelloRefused):
            self.enrollment.refused(session, info.agent_id, stored)
            raise stored
        if isinstance(stored, Replaced):
            session.end("replaced", "replaced by a newer stream of the same agent")
            return False
        self._sessions.register(session, info.agent_id)
        self._presence.forget(info.agent_id)
        # The watch sleeps towards the earliest deadline it knows. A Hello moves this agent's
        # deadline later, so the watch needs waking only when the new one is earlier than its
        # target (the first agent, say): waking it for every Hello would run a pass, with a
        # write transaction, per agent when thousands reconnect after a restart.
        target = self._watch.target
        if target is None or stored.deadline < target:
            self._watch.wake()
        return stored.replay

    async def _validated(self, info: AgentInfo) -> AgentInfo:
        """``info`` once every field holds, the allowlist summary checked by the Rust verifier
        (its compiled rules stay cached for the requests to come). Counted when refused."""
        try:
            info = info.validated()
            await self._verifier.validate(info.allowlist)
        except ValidationError:
            self._protocol.count("invalid_hello")
            raise
        except VerifierBusy:
            self._protocol.count("verifier_busy")
            raise
        except Unavailable as exc:
            # Without the bindings no summary can be checked, and no execution sent (503):
            # the agent is still registered and watched, without its unchecked allowlist.
            log.error("storing agent %s without its allowlist: %s", info.agent_id, exc)
            info = replace(info, allowlist={})
        return info

    # -- presence (``presence.py``) ------------------------------------------------------------

    def seen(self, session: Session) -> None:
        """The agent of ``session`` said something: move ``last_seen`` (written in batches)."""
        self._presence.seen(session)

    def closed(self, session: Session) -> None:
        """The stream of ``session`` ended (either side): record the agent offline."""
        self._presence.closed(session)

    async def flush_seen(self) -> int:
        """Write the pending ``last_seen`` marks now (``Presence.flush_seen``)."""
        return await self._presence.flush_seen()

    async def flush_gone(self) -> int:
        """Write the pending offline marks now (``Presence.flush_gone``)."""
        return await self._presence.flush_gone()

    async def settle(self) -> None:
        """Wait for the background writes already started (last_seen, offline marks)."""
        await self._presence.settle()

    # -- the passes (``watch.py``, ``dispatch.py``) --------------------------------------------

    async def run_once(self) -> WatchPass:
        """One pass of the offline watch (``OfflineWatch.run_once``)."""
        return await self._watch.run_once()

    async def dispatch_once(self) -> tuple[int, bool]:
        """One dispatch pass: ``(messages sent, more owed)`` (``DispatchPass.dispatch_once``)."""
        return await self._dispatch.dispatch_once()

    async def end_unauthorized(self) -> int:
        """End the streams whose key was revoked or expired (``DispatchPass.end_unauthorized``)."""
        return await self._dispatch.end_unauthorized()

    # -- lifecycle -----------------------------------------------------------------------------

    async def start(self, *, watch: bool = True, dispatch: bool = False) -> None:
        """Give every agent a reconnection grace, then start the offline watch (``watch``: the
        replicas running the background services) and the dispatch pass (``dispatch``: the
        replicas agents connect to).

        After this process was down, agents connected to it have not reconnected yet: without
        the grace the first pass would alert on every one of them (``OfflineWatch.grace``).
        """
        await self._watch.grace()
        await self.hellos.start()
        if watch:
            await self._watch.start()
        if dispatch:
            await self._dispatch.start()

    def end_sessions(self) -> None:
        """Ask every stream of this process to end (shutdown: agents reconnect elsewhere)."""
        self._sessions.end_all("shutdown", "the server is shutting down: reconnect")

    async def stop(self) -> None:
        """Stop the loops once the offline marks of ended streams are written."""
        self.end_sessions()
        await self._dispatch.stop(5.0)
        await self.hellos.stop()
        await self.settle()
        await self._watch.stop(5.0)

    # -- reading -------------------------------------------------------------------------------

    async def get(self, agent_id: str) -> dict[str, Any]:
        async with self._db.sessions() as db:
            row = (
                await db.execute(
                    select(Agent, Service.slug)
                    .outerjoin(Service, Service.id == Agent.service_id)
                    .where(Agent.agent_id == agent_id)
                )
            ).first()
        if row is None:
            raise NotFound(f"no agent {agent_id!r}")
        return agent_to_dict(row[0], row[1])

    async def list(
        self,
        *,
        status: str | None = None,
        label: str | None = None,
        key: str | None = None,
        cursor: str | None = None,
        limit: int | None = None,
    ) -> Page[dict[str, Any]]:
        """Agents in registration order; ``label`` is ``key=value`` (or ``key``: has the key);
        ``key``: bound to that API key id (to find what to re-assign when rotating a key)."""
        limit = check_limit(limit)
        query = select(Agent, Service.slug).outerjoin(Service, Service.id == Agent.service_id)
        if status is not None:
            if status not in STATUSES:
                raise ValidationError(
                    f"status must be one of {', '.join(STATUSES)}", field="status"
                )
            query = query.where(Agent.status == status)
        if label is not None:
            name, has_value, value = label.partition("=")
            if not LABEL_KEY_RE.match(name):
                raise ValidationError(
                    "label must be key=value (or key), the key 1-63 letters, digits, "
                    "'.', '_', '/' or '-'",
                    field="label",
                )
            element = Agent.labels[name].as_string()
            query = query.where(element == value if has_value else element.is_not(None))
        if key is not None:
            query = query.where(Agent.key_id == key)
        async with self._db.sessions() as db:
            rows = (await db.execute(keyset(query, Agent.id, cursor, limit))).all()
        return rows_page(
            rows, limit, lambda row: agent_to_dict(row[0], row[1]), lambda row: row[0].id
        )
