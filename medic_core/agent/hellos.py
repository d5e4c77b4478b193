"""Hellos written in groups, as heartbeats are: a fleet reconnecting after a restart.

When a server restarts, every agent connected to it says ``Hello`` again within seconds. One
write transaction per ``Hello`` (a commit, a connection checkout, a dozen statements) capped
that at ~70 a second on SQLite; the heartbeat writer's design (``heartbeats/writer.py``) takes
it out of the per-agent cost. The hub validates a ``Hello`` (its fields, and its allowlist
summary with the Rust verifier), then ``HelloWriter.submit`` puts it on a bounded queue and
waits. One task takes what is queued (up to ``max_batch``) and applies it in ONE transaction:

- one read of the batch's agents, locked in ``agent_id`` order on PostgreSQL (the order the
  last_seen flush and the offline marks lock them in too), so replicas cannot deadlock;
- the identity check of each ``Hello``, in arrival order (``Enrollment.claim``): a refused one
  is answered with its refusal and changes nothing; the others go on;
- the stored fields, the agents' services (``AgentServices.of``: one query, the missing ones
  created), one audit insert per API key, the resolution of their ``agent_offline`` alerts
  (``AlertBook.resolve_many_in``), and which of them have executions to replay
  (``Executions.unfinished_among``: one probe of the unfinished-executions index, so a
  ``Welcome`` to an agent with nothing unfinished costs no query);
- the commit; then the events, and each ``Hello``'s answer.

An answer ``Stored`` means committed: a ``Welcome`` still means "stored". The same agent twice
in one batch: its ``Hello``s are applied in arrival order, so the last one's stream wins; an
earlier one from another stream is answered ``Replaced`` (its stream ends ``ABORTED``, as when
a newer stream replaces an open one), one from the same stream ``Stored`` too.

Failures, as in the heartbeat writer (both are a ``GroupCommit``, ``store/group_commit.py``):

- a full queue refuses at once (``Unavailable``: the stream ends ``UNAVAILABLE`` and the agent
  reconnects with back-off), counted in ``medic_agent_hellos_rejected_total{reason="queue_full"}``;
- a batch that fails because the database cannot be reached fails every ``Hello`` in it and
  everything queued behind it (``db_unavailable``), then new ``Hello``s are refused at once for
  a back-off (0.25 s doubling to 2 s); the first batch after it is the probe;
- a batch that fails for any other reason (a bug, a corrupt row) is retried one ``Hello`` per
  transaction, so only the culprit fails (its stream ends ``INTERNAL``); a lone ``Hello`` that
  meets a unique-index race (another replica registering the same new agent or its service at
  the same moment) is tried once more, and then finds those rows.

A stream that goes away while its ``Hello`` waits in the queue is skipped. One that goes away
while its batch is being written may still be stored: the agent then reads ``online`` until its
silence deadline passes (or it reconnects, which it does).
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select

from medic_core.agent.enrollment import Enrollment, HelloRefused, key_of
from medic_core.agent.executions import Executions
from medic_core.agent.info import AgentInfo
from medic_core.agent.records import agent_to_dict, audit_summary
from medic_core.agent.services import AgentServices
from medic_core.agent.sessions import Session
from medic_core.alerts import AlertBook
from medic_core.audit import Actor, AuditRecord, record_audit_many
from medic_core.clock import Clock
from medic_core.errors import MedicError, Unavailable
from medic_core.events import EventBus, PendingEvents
from medic_core.observability.metrics import Metrics
from medic_core.store import Database
from medic_core.store.group_commit import GroupCommit
from medic_core.store.models import Agent

log = logging.getLogger(__name__)

#: Why a ``Hello`` was not stored (the label of ``medic_agent_hellos_rejected_total``).
REJECTIONS = ("queue_full", "db_unavailable")


@dataclass(frozen=True, slots=True)
class Stored:
    """The ``Hello`` is committed: the agent is ``online`` on this stream."""

    deadline: datetime  # when the agent counts as silent (its ``agents.next_due``)
    replay: bool  # it has unfinished executions: its Welcome is followed by a replay


@dataclass(frozen=True, slots=True)
class Replaced:
    """A later ``Hello`` of the same agent, from another stream, won in the same batch."""


Outcome = Stored | Replaced | HelloRefused


@dataclass(slots=True)
class _Item:
    session: Session
    info: AgentInfo
    future: asyncio.Future[Outcome]
    queued: float = field(default_factory=time.monotonic)


class HelloWriter(GroupCommit[_Item]):
    # Two replicas may register the same new agent (or its service) at the same moment.
    retry_conflicts = True
    # At shutdown the queued Hellos' streams are ending: their agents reconnect, to another
    # replica if there is one.
    drain_on_stop = False

    def __init__(
        self,
        db: Database,
        clock: Clock,
        bus: EventBus,
        metrics: Metrics,
        alerts: AlertBook,
        enrollment: Enrollment,
        executions: Executions,
        services: AgentServices,
        *,
        silence: timedelta,
        queue_size: int = 10_000,
        max_batch: int = 500,
    ) -> None:
        if queue_size < 1 or max_batch < 1:
            raise ValueError("MEDIC_AGENT_HELLO_QUEUE and MEDIC_AGENT_HELLO_BATCH must be >= 1")
        super().__init__("agent-hellos", queue_size=queue_size, max_batch=max_batch)
        self._db = db
        self._clock = clock
        self._bus = bus
        self._alerts = alerts
        self._enrollment = enrollment
        self._executions = executions
        self._services = services
        self._silence = silence
        self._transitions = metrics.agent_transitions
        self._depth_gauge = metrics.agent_hello_queue_depth
        self._batch_size = metrics.agent_hello_batch_size
        self._latency = metrics.agent_hello_latency
        self._rejected = metrics.agent_hellos_rejected
        for reason in REJECTIONS:
            self._rejected.labels(reason)

    # -- the hub's side ------------------------------------------------------------------------

    async def submit(self, session: Session, info: AgentInfo) -> Outcome:
        """Store one validated ``Hello``; return once it is committed (``Stored``, or
        ``Replaced`` by a later one in the same batch) or refused (``HelloRefused``: only the
        refusal's audit entry was written). Raises why it was not stored: ``Unavailable``
        (shutting down, queue full, database unreachable), ``MedicError`` (it failed alone)."""
        if self.closed:
            raise self._shutting_down()
        if self.refusing:
            self._count_outage(1)
            raise self._unreachable()
        if not self.free:
            self._rejected.labels("queue_full").inc()
            raise Unavailable(
                f"{self._queue.maxsize} Hellos are waiting to be stored (MEDIC_AGENT_HELLO_QUEUE)",
                retry_after=1,
            )
        future: asyncio.Future[Outcome] = asyncio.get_running_loop().create_future()
        self.enqueue(_Item(session, info, future))
        # Not shielded: a stream that goes away cancels its future, and a Hello whose future
        # is cancelled before its batch starts is skipped.
        return await future

    # -- the writer task (GroupCommit: the queue, outages, one-by-one retries) -----------------

    def _take(self, batch: list[_Item]) -> list[_Item]:
        live = []
        for item in batch:
            if item.future.done():
                continue  # cancelled: the stream's handler is gone
            if item.session.ended is not None:
                # Its stream is ending (shutdown, or the agent went away): storing the Hello
                # would only have it marked offline again.
                item.future.set_exception(Unavailable("the stream ended", retry_after=1))
                continue
            live.append(item)
        return live

    async def _commit(self, batch: list[_Item]) -> None:
        outcomes, pending, online = await self._write(batch)
        committed = time.monotonic()
        self._batch_size.observe(len(batch))
        for item, outcome in zip(batch, outcomes, strict=True):
            if isinstance(outcome, Stored):
                self._latency.observe(committed - item.queued)
                log.info(
                    "agent %s connected",
                    item.info.agent_id,
                    extra={"agent_id": item.info.agent_id, "session_id": item.session.session_id},
                )
            if not item.future.done():
                item.future.set_result(outcome)
        if online:
            self._transitions.labels("online", "hello").inc(online)
        pending.publish(self._bus)

    def _unreachable(self) -> Unavailable:
        return Unavailable(
            "the database is unreachable; the Hello was not stored",
            retry_after=max(1, round(self._backoff)),
        )

    def _failed_alone(self, item: _Item, exc: Exception) -> MedicError:
        log.error(
            "storing an agent Hello failed", exc_info=exc, extra={"agent_id": item.info.agent_id}
        )
        return MedicError("the Hello could not be stored (internal error)")

    def _shutting_down(self) -> Unavailable:
        return Unavailable("the server is shutting down", retry_after=2)

    def _count_outage(self, count: int) -> None:
        self._rejected.labels("db_unavailable").inc(count)

    def _depth(self, depth: int) -> None:
        self._depth_gauge.set(depth)

    async def _write(self, batch: list[_Item]) -> tuple[list[Outcome], PendingEvents, int]:
        """Apply a batch in one transaction: the answer of each ``Hello`` in order, the events,
        and how many agents came online."""
        now = self._clock.now()
        pending = PendingEvents()
        online = 0
        owed: set[str] = set()
        refused: dict[int, HelloRefused] = {}
        before: dict[str, dict[str, Any] | None] = {}  # each agent's audit summary before
        was: dict[str, str | None] = {}  # and its status
        last: dict[str, int] = {}  # the index of each agent's last stored Hello
        async with self._db.transaction() as db:
            ids = sorted({item.info.agent_id for item in batch})
            query = select(Agent).where(self._db.among(Agent.agent_id, ids, "agent_ids"))
            if self._db.is_postgres:
                query = query.order_by(Agent.agent_id).with_for_update()
            agents = {agent.agent_id: agent for agent in await db.scalars(query)}
            for index, item in enumerate(batch):
                agent_id = item.info.agent_id
                agent = agents.get(agent_id)
                refusal = self._enrollment.claim(db, agent, agent_id, item.session, now)
                if refusal is not None:
                    refused[index] = refusal
                    continue
                if agent is None:
                    agent = Agent(agent_id=agent_id, created_at=now, status="offline")
                    agents[agent_id] = agent
                    before[agent_id], was[agent_id] = None, None
                elif agent_id not in before:
                    before[agent_id], was[agent_id] = audit_summary(agent), agent.status
                self._apply(agent, item, now)
                last[agent_id] = index
            if last:
                stored = [agents[agent_id] for agent_id in last]
                new = [agent for agent in stored if before[agent.agent_id] is None]
                services = await self._services.of(db, stored, now)
                if new:
                    # Numbered up front on SQLite, so they go in as one batch.
                    await self._db.assign_ids(db, Agent, new)
                    db.add_all(new)
                    await db.flush()
                audits: dict[Actor, list[AuditRecord]] = {}
                closings: list[tuple[int, Actor]] = []
                for agent in stored:
                    agent_id = agent.agent_id
                    actor = batch[last[agent_id]].session.actor
                    closings.append((services[agent_id].id, actor))
                    after = audit_summary(agent)
                    if before[agent_id] != after:
                        action = "agent.register" if before[agent_id] is None else "agent.update"
                        audits.setdefault(actor, []).append(
                            AuditRecord(
                                action, "agent", agent_id, before=before[agent_id], after=after
                            )
                        )
                    if was[agent_id] != "online":
                        body = agent_to_dict(agent, services[agent_id].slug)
                        pending.add("agent.online", now, agent=body)
                        online += 1
                    elif before[agent_id] != after:
                        body = agent_to_dict(agent, services[agent_id].slug)
                        pending.add("agent.updated", now, agent=body)
                for actor, entries in audits.items():
                    await record_audit_many(db, actor=actor, at=now, entries=entries)
                await self._alerts.resolve_many_in(
                    db,
                    pending,
                    closings,
                    ("agent_offline",),
                    now=now,
                    resolution="agent back online",
                )
                owed = await self._executions.unfinished_among(db, list(last))
        outcomes: list[Outcome] = []
        deadline = now + self._silence
        for index, item in enumerate(batch):
            if index in refused:
                outcomes.append(refused[index])
            elif batch[last[item.info.agent_id]].session is item.session:
                outcomes.append(Stored(deadline, item.info.agent_id in owed))
            else:
                outcomes.append(Replaced())
        return outcomes, pending, online

    def _apply(self, agent: Agent, item: _Item, now: datetime) -> None:
        """What a ``Hello`` stores: the agent as it describes itself, online on this stream."""
        info, session = item.info, item.session
        agent.key_id = key_of(session.actor)  # unchanged, or binding a new or unbound agent
        agent.hostname = info.hostname
        agent.version = info.version
        agent.os = info.os
        agent.arch = info.arch
        agent.labels = dict(info.labels)
        agent.allowlist = info.allowlist
        agent.capabilities = list(info.capabilities)
        agent.paused = info.paused
        agent.paused_reason = info.paused_reason or None
        agent.containment = info.containment or None
        agent.max_concurrent = info.max_concurrent or None
        if agent.session_id != session.session_id:
            agent.connected_at = now
        agent.session_id = session.session_id
        agent.status = "online"
        agent.last_seen = now
        agent.offline_since = None
        agent.next_due = now + self._silence
        agent.updated_at = now
