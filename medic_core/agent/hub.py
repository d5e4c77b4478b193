"""The agent hub: which agents exist, which are connected here, and which have gone quiet.

Three parts, one class:

- **Sessions** (in process): each open agent stream is a ``Session``, which writes what it is
  sent through its transport (the endpoint's call). One session per agent id: a newer ``Hello``
  for the same id ends the older stream (``replaced``), so exactly one stream speaks for an
  agent -- once the ``Hello`` is stored: a ``Hello`` is first validated (its fields, and its
  allowlist summary by the Rust verifier, ``verify.py``) and its key checked against the key the
  agent id belongs to (``enrollment.py``), inside the transaction that stores it; a refused
  ``Hello`` changes nothing, and replaces no stream.
- **Presence** (in the database, ``agents``): a ``Hello`` stores the agent ``online`` with its
  session id; messages from the agent move ``last_seen`` and the end of a stream marks it
  ``offline`` (both batched: every mark pending when a flush starts is written in one
  transaction). Every write that concerns a stream is conditional on its session id, so a stale
  stream (replaced here or on another replica) can never mark a reconnected agent offline.
- **The offline watch** (``run_once``): like the monitor, it claims the rows whose stored
  deadline ``agents.next_due`` has passed (``FOR UPDATE SKIP LOCKED`` on PostgreSQL, so replicas
  share the work). An ``online`` agent past its deadline has been silent for
  ``missed_heartbeats`` intervals: it becomes ``offline``. An ``offline`` agent past its deadline
  has been away for ``alert_after`` seconds: its ``agent_offline`` alert opens, on the agent's
  own service row (``agent-<agent_id>``, marked with the agent's id: the hub never adopts a
  service it did not make), so routing, teams, mutes and maintenance apply to it like to any
  service. The next ``Hello`` resolves it. The same pass fails executions left
  unanswered past the agent's memory window (``Executions.expire``).
- **The dispatch pass** (``dispatch_once``), on every replica agents connect to: every
  ``dispatch_interval`` seconds it sends what was stored for the agents connected here and not
  sent yet, typically requests and cancels that landed on another replica.

Executions (allow-listed scripts run on agents) have their own module, ``executions.py``; the
hub builds that component (``hub.executions``) and lends it the lookup of open streams. So for
identity (``enrollment.py``, ``hub.enrollment``: which key an agent id belongs to, re-assign and
revoke), for storing Hellos in groups (``hellos.py``, ``hub.hellos``: a fleet reconnecting after
a restart says Hello all at once), for each agent's service row (``services.py``) and for the
bounds of what a stream may send (``limits.py``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import uuid
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any, Protocol, cast

from sqlalchemy import Table, bindparam, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from medic_core.agent import limits
from medic_core.agent.enrollment import Enrollment, HelloRefused, key_of
from medic_core.agent.executions import Executions
from medic_core.agent.hellos import HelloWriter, Replaced
from medic_core.agent.limits import ProtocolRefusals
from medic_core.agent.records import agent_to_dict
from medic_core.agent.services import AgentServices
from medic_core.agent.verify import AllowlistVerifier, VerifierBusy
from medic_core.alerts import AlertBook, Opening
from medic_core.audit import Actor
from medic_core.clock import Clock, isoformat
from medic_core.errors import NotFound, Unavailable, ValidationError
from medic_core.events import EventBus, PendingEvents
from medic_core.observability.metrics import Metrics
from medic_core.passes import Pass, PassLoop
from medic_core.store import Database
from medic_core.store.models import Agent, ApiKey, Service
from medic_core.store.pagination import Page, check_limit, decode_cursor, page_of
from medic_core.store.types import instant_from_db

log = logging.getLogger(__name__)

STATUSES = ("online", "offline")
# Agent ids are UUIDs in practice (the protocol says so); any slug-shaped id up to 64 characters
# is accepted, so ``agent-<id>`` is always a valid service slug.
_AGENT_ID_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")
_LABEL_KEY_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/-]{0,62}$")
_MAX_LABELS = 64


@dataclass(frozen=True, slots=True)
class AgentInfo:
    """What an agent says about itself in a ``Hello``."""

    agent_id: str
    hostname: str
    version: str
    os: str
    arch: str
    labels: dict[str, str] = field(default_factory=dict)
    allowlist: dict[str, Any] = field(default_factory=dict)
    capabilities: tuple[str, ...] = ()
    paused: bool = False
    paused_reason: str | None = None
    containment: str = ""
    max_concurrent: int = 0  # executions it runs at once; 0: not said (an older agent)

    def validated(self) -> AgentInfo:
        """Itself, once every field holds; ``ValidationError`` naming the first that does not."""
        if not _AGENT_ID_RE.match(self.agent_id):
            raise ValidationError(
                "agent_id must be 1-64 lower-case letters, digits, '.', '_' or '-' (a UUID)",
                field="agent_id",
            )
        _bounded(self.hostname, "hostname", 255, required=True)
        _bounded(self.version, "agent_version", 64)
        _bounded(self.os, "os", 32)
        _bounded(self.arch, "arch", 32)
        if len(self.labels) > _MAX_LABELS:
            raise ValidationError(f"at most {_MAX_LABELS} labels", field="labels")
        for key, value in self.labels.items():
            if not _LABEL_KEY_RE.match(key):
                raise ValidationError(
                    f"label {key[:64]!r}: keys are 1-63 letters, digits, '.', '_', '/' or '-'",
                    field="labels",
                )
            _bounded(value, f"labels.{key}", 255)
        if len(self.capabilities) > 64:
            raise ValidationError("at most 64 capabilities", field="capabilities")
        for capability in self.capabilities:
            _bounded(capability, "capabilities", 64, required=True)
        if self.paused_reason is not None:
            _bounded(self.paused_reason, "paused_reason", 500)
        _no_nul(self.allowlist, "allowlist")
        limits.containment(self.containment)
        limits.max_concurrent(self.max_concurrent)
        return self


def _bounded(value: str, name: str, max_len: int, *, required: bool = False) -> None:
    if required and not value:
        raise ValidationError(f"{name} must not be empty", field=name)
    if len(value) > max_len:
        raise ValidationError(f"{name} is longer than {max_len} characters", field=name)
    if "\x00" in value:
        raise ValidationError(f"{name} must not contain NUL characters", field=name)


def _no_nul(value: Any, name: str) -> None:
    """PostgreSQL text cannot hold NUL: refuse it anywhere in a JSON document."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if "\x00" in item:
                raise ValidationError(f"{name} must not contain NUL characters", field=name)
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)


@dataclass(frozen=True, slots=True)
class Ending:
    """Why the server ends a stream: ``replaced``, ``silent`` or ``shutdown``."""

    reason: str
    detail: str


class Transport(Protocol):
    """The transport's side of one stream (the gRPC endpoint's call)."""

    async def write(self, message: object) -> None:
        """Put one message on the stream; never called again before the previous write ends."""

    def interrupt(self) -> None:
        """The session ended: stop waiting for the agent's next message (called once)."""


class Session:
    """One open agent stream in this process.

    ``send()`` queues a message (a protocol message, or a command of ``executions.py``) and
    returns at once; a short-lived task writes what is queued, one write at a time, in order, so
    an idle stream holds no task and no queue, and a slow agent never blocks whoever sent.
    ``end()`` records why the server ends the stream (``ended``) and interrupts the transport's
    read; the transport then waits for what was sent before it (``flushed()``) and closes the
    call with the matching status. Nothing sent after ``end()`` goes out.

    ``agent_id`` is set by the first ``Hello``; ``welcomed`` once its ``Welcome`` and the
    redelivery after it are sent (commands may follow from then on). ``unconfirmed``: between a
    ``Welcome`` and the first ``Heartbeat``, the executions the server holds as accepted or
    running that the agent has not mentioned yet. One of these exists per connected agent, so
    it has slots and nothing that could be shared.
    """

    __slots__ = (
        "_queued",
        "_transport",
        "_writer",
        "actor",
        "agent_id",
        "ended",
        "session_id",
        "unconfirmed",
        "welcomed",
    )

    def __init__(self, actor: Actor, transport: Transport) -> None:
        self.session_id = uuid.uuid4().hex
        self.actor = actor
        self.agent_id: str | None = None
        self.ended: Ending | None = None
        self.welcomed = False
        self.unconfirmed: set[str] | None = None
        self._transport = transport
        self._queued: list[object] | None = None  # a list while a writer task runs
        self._writer: asyncio.Task[None] | None = None

    def send(self, message: object) -> None:
        """Queue ``message`` for the agent (dropped once the session ended)."""
        if self.ended is not None:
            return
        if self._queued is not None:
            self._queued.append(message)
            return
        self._queued = [message]
        self._writer = asyncio.create_task(self._write_queued(self._queued), name="agent-write")

    async def _write_queued(self, queued: list[object]) -> None:
        try:
            while queued:
                await self._transport.write(queued.pop(0))
        except Exception as exc:
            # The stream broke: its read ends too, and the session with it.
            log.debug("writing to agent %s failed: %s", self.agent_id, exc)
        finally:
            self._queued = self._writer = None

    async def flushed(self) -> None:
        """Wait until everything sent so far has been written (or the stream broke)."""
        if self._writer is not None:
            await asyncio.wait((self._writer,))

    def end(self, reason: str, detail: str) -> None:
        """End the stream (the first reason given wins)."""
        if self.ended is None:
            self.ended = Ending(reason, detail)
            self._transport.interrupt()


@dataclass(frozen=True, slots=True)
class WatchPass:
    offline: int
    alerted: int
    lost: int  # executions failed: unanswered past the agent's memory window
    next_deadline: datetime | None
    more: bool


# How often each replica checks that the API keys of its open streams still hold.
_KEY_CHECK = timedelta(seconds=5)
_AGENTS = cast(Table, Agent.__table__)
# The guard repeats the read's condition, so a row that changed in between is left alone (on
# PostgreSQL the read locks the rows; SQLite's write lock is held from the start).
_MARK_SEEN = (
    update(_AGENTS)
    .where(
        _AGENTS.c.agent_id == bindparam("a"),
        _AGENTS.c.session_id == bindparam("s"),
        _AGENTS.c.status == "online",
    )
    .values(last_seen=bindparam("at"), next_due=bindparam("due"))
)
_MARK_OFFLINE = (
    update(_AGENTS)
    .where(
        _AGENTS.c.agent_id == bindparam("a"),
        _AGENTS.c.session_id == bindparam("s"),
        _AGENTS.c.status == "online",
    )
    .values(
        status="offline",
        session_id=None,
        offline_since=bindparam("at"),
        next_due=bindparam("due"),
        updated_at=bindparam("at"),
    )
)


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
        self._clock = clock
        self._bus = bus
        self._alerts = alerts
        self._batch = batch_size
        self.heartbeat_interval = heartbeat_interval
        self._silence = timedelta(seconds=heartbeat_interval * missed_heartbeats)
        self._alert_after = timedelta(seconds=alert_after)
        self._sessions: dict[str, Session] = {}
        self._seen: dict[str, tuple[str, datetime]] = {}
        self._flushing: asyncio.Task[None] | None = None
        self._seen_every = seen_every
        self._keys_due: datetime | None = None  # when the dispatch pass next checks keys
        self._hurry = asyncio.Event()  # set: write pending marks now (settle, stop)
        # Offline marks of ended streams: (agent id, session id) -> (when, why).
        self._gone: dict[tuple[str, str], tuple[datetime, str]] = {}
        self._marking: asyncio.Task[None] | None = None
        self._loop = PassLoop("agent-watch", self._pass, clock, max_sleep=max_sleep)
        self._dispatch = PassLoop(
            "agent-dispatch", self._dispatch_pass, clock, max_sleep=dispatch_interval
        )
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
            on_slot_freed=self._dispatch.wake,
        )
        self._connected = metrics.agents_connected
        self._transitions = metrics.agent_transitions
        #: Which key each agent id belongs to; re-assign and revoke (``enrollment.py``).
        self.enrollment = Enrollment(
            db,
            clock,
            bus,
            metrics,
            alerts,
            self.executions,
            self.session,
            alert_after=self._alert_after,
            on_deadline=self._loop.wake,
        )
        #: The service row each agent's alerts hang on (``services.py``).
        self._services = AgentServices(db, silence=self._silence)
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
            silence=self._silence,
            queue_size=hello_queue,
            max_batch=hello_batch,
        )

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

    # -- sessions and presence ---------------------------------------------------------------

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
        older = self._sessions.get(info.agent_id)
        if older is not None and older is not session:
            older.end("replaced", "replaced by a newer stream of the same agent")
        session.agent_id = info.agent_id
        self._sessions[info.agent_id] = session
        self._connected.set(len(self._sessions))
        self._seen.pop(info.agent_id, None)
        # The watch sleeps towards the earliest deadline it knows. A Hello moves this agent's
        # deadline later, so the watch needs waking only when the new one is earlier than its
        # target (the first agent, say): waking it for every Hello would run a pass, with a
        # write transaction, per agent when thousands reconnect after a restart.
        target = self._loop.target
        if target is None or stored.deadline < target:
            self._loop.wake()
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

    def seen(self, session: Session) -> None:
        """The agent of ``session`` said something: move ``last_seen`` (written in batches)."""
        if session.agent_id is None or session.ended is not None:
            return
        self._seen[session.agent_id] = (session.session_id, self._clock.now())
        if self._flushing is None or self._flushing.done():
            self._flushing = asyncio.create_task(self._flush_loop(), name="agent-seen")

    async def _flush_loop(self) -> None:
        while self._seen:
            try:
                await self.flush_seen()
            except Exception as exc:
                # The marks are kept; the next message (or pass) writes them.
                log.warning("could not record agents' last_seen: %s", exc)
                return
            # Marks arriving meanwhile wait for the next write: one transaction per interval
            # however many agents speak (10,000 agents send ~330 heartbeats a second). A mark
            # is at most this late; the silence limit is heartbeats long.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._seen_every):
                    await self._hurry.wait()

    async def flush_seen(self) -> int:
        """Write every pending ``last_seen`` mark in one transaction; return how many held.

        A mark whose session is no longer the agent's current one (replaced elsewhere, or
        declared offline by the watch) changes nothing, and its stream is ended so the agent
        reconnects and says ``Hello`` again.
        """
        marks, self._seen = self._seen, {}
        if not marks:
            return 0
        stale: list[str] = []
        try:
            async with self._db.transaction() as db:
                # One read and one executemany, not an UPDATE per agent: at 10,000 agents a
                # heartbeat every 30 s is ~330 marks a second.
                current = await self._online_sessions(db, marks)
                fresh: list[dict[str, Any]] = []
                for agent_id, (session_id, at) in marks.items():
                    if current.get(agent_id) == session_id:
                        fresh.append(
                            {"a": agent_id, "s": session_id, "at": at, "due": at + self._silence}
                        )
                    else:
                        stale.append(agent_id)
                if fresh:
                    await db.execute(_MARK_SEEN, fresh)
        except BaseException:
            # Keep the marks (newer ones win) for the next flush.
            self._seen = {**marks, **self._seen}
            raise
        for agent_id in stale:
            local = self._sessions.get(agent_id)
            if local is not None and local.session_id == marks[agent_id][0]:
                local.end("silent", "this stream no longer speaks for the agent: reconnect")
        return len(marks) - len(stale)

    async def _online_sessions(
        self, db: AsyncSession, agent_ids: Collection[str]
    ) -> dict[str, str | None]:
        """The current session of each of ``agent_ids`` that is online, its row locked (on
        PostgreSQL, in ``agent_id`` order: the order every batch of the agents' rows is locked
        in, so replicas' flushes and Hello batches cannot deadlock)."""
        query = select(Agent.agent_id, Agent.session_id).where(
            self._db.among(Agent.agent_id, sorted(agent_ids), "agent_ids"),
            Agent.status == "online",
        )
        if self._db.is_postgres:
            query = query.order_by(Agent.agent_id).with_for_update()
        return {row.agent_id: row.session_id for row in await db.execute(query)}

    def closed(self, session: Session) -> None:
        """The stream of ``session`` ended (either side): record the agent offline."""
        agent_id = session.agent_id
        if agent_id is None:
            return
        if self._sessions.get(agent_id) is session:
            del self._sessions[agent_id]
            self._connected.set(len(self._sessions))
        if session.ended is not None and session.ended.reason == "replaced":
            return  # a newer stream speaks for the agent: it is not offline
        ended = session.ended.reason if session.ended else "closed"
        reason = "disconnected" if ended == "closed" else ended
        self._gone[(agent_id, session.session_id)] = (self._clock.now(), reason)
        if self._marking is None or self._marking.done():
            self._marking = asyncio.create_task(self._mark_loop(), name="agent-offline")

    async def _mark_loop(self) -> None:
        while self._gone:
            try:
                await self.flush_gone()
            except Exception as exc:
                # The stored deadline still catches them: silent past it, the watch marks them
                # offline.
                log.warning("could not record agents offline: %s", exc)
                return

    async def flush_gone(self) -> int:
        """Record offline, in one transaction, the agents whose streams ended since the last
        flush; return how many were. Marks arriving meanwhile wait for the next flush, so
        10,000 streams ending at once (a shutdown) cost a few transactions, not 10,000.

        A mark changes nothing unless its session is still the agent's current one: a stale
        stream (replaced here or on another replica) never marks a reconnected agent offline.
        """
        marks, self._gone = self._gone, {}
        if not marks:
            return 0
        gone: list[tuple[str, datetime, str]] = []  # agent id, when, why
        async with self._db.transaction() as db:
            current = await self._online_sessions(db, {a for a, _ in marks})
            rows: list[dict[str, Any]] = []
            for (agent_id, session_id), (at, reason) in marks.items():
                if current.get(agent_id) == session_id:
                    gone.append((agent_id, at, reason))
                    rows.append(
                        {"a": agent_id, "s": session_id, "at": at, "due": at + self._alert_after}
                    )
            if rows:
                await db.execute(_MARK_OFFLINE, rows)
        for agent_id, at, reason in gone:
            self._transitions.labels("offline", reason).inc()
            self._bus.publish("agent.offline", at, agent_id=agent_id, reason=reason)
            log.info("agent %s disconnected", agent_id, extra={"agent_id": agent_id})
        if gone:
            self._loop.wake()
        return len(gone)

    async def settle(self) -> None:
        """Wait for the background writes already started (last_seen, offline marks)."""
        self._hurry.set()
        try:
            await self._settle()
        finally:
            self._hurry.clear()

    async def _settle(self) -> None:
        while True:
            pending = [t for t in (self._flushing, self._marking) if t is not None and not t.done()]
            if not pending:
                return
            await asyncio.gather(*pending, return_exceptions=True)

    # -- the offline watch ---------------------------------------------------------------------

    async def run_once(self) -> WatchPass:
        """Handle every agent whose deadline has passed, in one transaction."""
        await self.flush_seen()
        now = self._clock.now()
        pending = PendingEvents()
        offline = alerted = 0
        silent: list[str] = []
        async with self._db.transaction() as db:
            query = (
                select(Agent)
                .where(Agent.next_due.is_not(None), Agent.next_due <= now)
                .order_by(Agent.next_due)
                .limit(self._batch)
            )
            if self._db.is_postgres:
                query = query.with_for_update(skip_locked=True)
            agents = list((await db.scalars(query)).all())
            alerting: list[Agent] = []
            for agent in agents:
                due = agent.next_due
                assert due is not None
                if agent.status == "online":
                    # Silent for too long: offline from the moment it became silent.
                    agent.status = "offline"
                    silent.append(agent.agent_id)
                    agent.session_id = None
                    agent.offline_since = due
                    agent.next_due = due + self._alert_after
                    agent.updated_at = now
                    offline += 1
                    self._transitions.labels("offline", "silent").inc()
                    pending.add("agent.offline", now, agent_id=agent.agent_id, reason="silent")
                    if agent.next_due > now:
                        continue
                agent.next_due = None  # alerted; the next Hello resolves it
                alerting.append(agent)
            refs = await self._services.of(db, alerting, now)
            services: dict[int, Service] = {}
            if refs:
                loaded = await db.scalars(
                    select(Service).where(Service.id.in_([ref.id for ref in refs.values()]))
                )
                services = {service.id: service for service in loaded}
            openings = [
                Opening(
                    services[refs[agent.agent_id].id],
                    "agent_offline",
                    f"agent {agent.hostname} ({agent.agent_id}) is offline",
                    {
                        "agent_id": agent.agent_id,
                        "hostname": agent.hostname,
                        "offline_since": isoformat(agent.offline_since),
                        "last_seen": isoformat(agent.last_seen),
                    },
                )
                for agent in alerting
            ]
            if openings:
                alerted = len(await self._alerts.open_many_in(db, pending, openings, now=now))
        pending.publish(self._bus)
        for agent_id in silent:
            local = self._sessions.get(agent_id)
            if local is not None:
                local.end("silent", f"nothing heard for {int(self._silence.total_seconds())}s")
        lost, more_lost = await self.executions.expire()
        next_deadline = await self._earliest()
        more = len(agents) == self._batch or more_lost
        return WatchPass(offline, alerted, lost, next_deadline, more)

    async def _earliest(self) -> datetime | None:
        async with self._db.sessions() as db:
            value = await db.scalar(
                select(func.min(Agent.next_due)).where(Agent.next_due.is_not(None))
            )
        return instant_from_db(value) if value is not None else None

    async def _pass(self) -> Pass:
        result = await self.run_once()
        return Pass(result.more, result.next_deadline)

    # -- the dispatch pass ---------------------------------------------------------------------

    async def dispatch_once(self) -> tuple[int, bool]:
        """Send what was stored for the agents connected here and not sent yet, typically by
        another replica: ``(messages sent, more owed)`` (see ``Executions.dispatch``)."""
        return await self.executions.dispatch(self._sessions.values())

    async def _dispatch_pass(self) -> Pass:
        _, more = await self.dispatch_once()
        now = self._clock.now()
        if self._keys_due is None or now >= self._keys_due:
            self._keys_due = now + _KEY_CHECK
            await self.end_unauthorized()
        return Pass(more, None)  # else look again after the interval (the loop's max_sleep)

    async def end_unauthorized(self) -> int:
        """End the streams whose API key was revoked or expired since they connected (on any
        replica): the key was checked once, at connect. Returns how many were ended.

        Runs every ``_KEY_CHECK`` on every replica holding streams (the dispatch pass), as one
        query over the distinct keys of its streams.
        """
        by_key: dict[str, list[Session]] = {}
        for session in self._sessions.values():
            key_id = key_of(session.actor)
            if key_id is not None:
                by_key.setdefault(key_id, []).append(session)
        if not by_key:
            return 0
        now = self._clock.now()
        async with self._db.sessions() as db:
            rows = await db.execute(
                select(ApiKey.key_id).where(
                    self._db.among(ApiKey.key_id, list(by_key), "key_ids"),
                    or_(ApiKey.revoked_at.is_not(None), ApiKey.expires_at <= now),
                )
            )
            gone = [row.key_id for row in rows]
        ended = 0
        for key_id in gone:
            for session in by_key[key_id]:
                if session.ended is None:
                    log.warning(
                        "ending the stream of agent %s: API key %s was revoked or expired",
                        session.agent_id,
                        key_id,
                        extra={"agent_id": session.agent_id, "key_id": key_id},
                    )
                    session.end("unauthenticated", f"API key {key_id} was revoked or expired")
                    ended += 1
        return ended

    # -- lifecycle -----------------------------------------------------------------------------

    async def start(self, *, watch: bool = True, dispatch: bool = False) -> None:
        """Give every agent a reconnection grace, then start the offline watch (``watch``: the
        replicas running the background services) and the dispatch pass (``dispatch``: the
        replicas agents connect to).

        After this process was down, agents connected to it have not reconnected yet: without
        the grace the first pass would alert on every one of them. Deadlines sooner than
        ``alert_after`` from now move to then (replicas that stayed up lose nothing: their
        agents' deadlines are only pushed back by at most that much).
        """
        grace = self._clock.now() + self._alert_after
        async with self._db.transaction() as db:
            await db.execute(
                update(Agent)
                .where(Agent.next_due.is_not(None), Agent.next_due < grace)
                .values(next_due=grace)
            )
        await self.hellos.start()
        if watch:
            await self._loop.start()
        if dispatch:
            await self._dispatch.start()

    def end_sessions(self) -> None:
        """Ask every stream of this process to end (shutdown: agents reconnect elsewhere)."""
        for session in list(self._sessions.values()):
            session.end("shutdown", "the server is shutting down: reconnect")

    async def stop(self) -> None:
        """Stop the loops once the offline marks of ended streams are written."""
        self.end_sessions()
        await self._dispatch.stop(5.0)
        await self.hellos.stop()
        await self.settle()
        await self._loop.stop(5.0)

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
            if not _LABEL_KEY_RE.match(name):
                raise ValidationError(
                    "label must be key=value (or key), the key 1-63 letters, digits, "
                    "'.', '_', '/' or '-'",
                    field="label",
                )
            element = Agent.labels[name].as_string()
            query = query.where(element == value if has_value else element.is_not(None))
        if key is not None:
            query = query.where(Agent.key_id == key)
        after = decode_cursor(cursor)
        if after is not None:
            query = query.where(Agent.id > after)
        query = query.order_by(Agent.id).limit(limit + 1)
        async with self._db.sessions() as db:
            rows = (await db.execute(query)).all()
        items = [agent_to_dict(agent, slug) for agent, slug in rows]
        return page_of(items, limit, rows[min(len(rows), limit) - 1][0].id if rows else None)
