"""The offline watch: what a missed deadline of an agent means.

Like the monitor, a pass (``run_once``) claims the rows whose stored deadline
``agents.next_due`` has passed (``FOR UPDATE SKIP LOCKED`` on PostgreSQL, so replicas share the
work). An ``online`` agent past its deadline has been silent for ``missed_heartbeats``
intervals: it becomes ``offline`` (and its stream here, if any, ends ``silent``). An
``offline`` agent past its deadline has been away for ``alert_after`` seconds: its
``agent_offline`` alert opens, on the agent's own service row (``agent-<agent_id>``, marked
with the agent's id: the hub never adopts a service it did not make; ``services.py``), so
routing, teams, mutes and maintenance apply to it like to any service. The next ``Hello``
resolves it. The same pass fails executions left unanswered past the agent's memory window
(``Executions.expire``).

At start, every deadline sooner than ``alert_after`` from now moves to then (``grace``): agents
connected to a process that was down have not reconnected yet.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func, select, update

from medic_core.agent.executions import Executions
from medic_core.agent.presence import Presence
from medic_core.agent.services import AgentServices
from medic_core.agent.sessions import Sessions
from medic_core.alerts import AlertBook, Opening
from medic_core.clock import Clock, isoformat
from medic_core.events import EventBus, PendingEvents
from medic_core.observability.metrics import Metrics
from medic_core.passes import Pass, PassLoop
from medic_core.store import Database
from medic_core.store.models import Agent, Service
from medic_core.store.types import instant_from_db


@dataclass(frozen=True, slots=True)
class WatchPass:
    offline: int
    alerted: int
    lost: int  # executions failed: unanswered past the agent's memory window
    next_deadline: datetime | None
    more: bool


class OfflineWatch:
    def __init__(
        self,
        db: Database,
        clock: Clock,
        bus: EventBus,
        metrics: Metrics,
        alerts: AlertBook,
        sessions: Sessions,
        presence: Presence,
        services: AgentServices,
        executions: Executions,
        *,
        silence: timedelta,
        alert_after: timedelta,
        batch_size: int,
        max_sleep: float,
    ) -> None:
        self._db = db
        self._clock = clock
        self._bus = bus
        self._alerts = alerts
        self._sessions = sessions
        self._presence = presence
        self._services = services
        self._executions = executions
        self._silence = silence
        self._alert_after = alert_after
        self._batch = batch_size
        self._transitions = metrics.agent_transitions
        self._loop = PassLoop("agent-watch", self._pass, clock, max_sleep=max_sleep)

    @property
    def target(self) -> datetime | None:
        """The deadline the watch sleeps towards (None: none known)."""
        return self._loop.target

    def wake(self) -> None:
        """A deadline may now be earlier than the one the watch sleeps towards."""
        self._loop.wake()

    async def grace(self) -> None:
        """Give every agent a reconnection grace: deadlines sooner than ``alert_after`` from now
        move to then (replicas that stayed up lose nothing: their agents' deadlines are only
        pushed back by at most that much)."""
        grace = self._clock.now() + self._alert_after
        async with self._db.transaction() as db:
            await db.execute(
                update(Agent)
                .where(Agent.next_due.is_not(None), Agent.next_due < grace)
                .values(next_due=grace)
            )

    async def start(self) -> None:
        await self._loop.start()

    async def stop(self, timeout: float) -> None:
        await self._loop.stop(timeout)

    async def run_once(self) -> WatchPass:
        """Handle every agent whose deadline has passed, in one transaction."""
        await self._presence.flush_seen()
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
        lost, more_lost = await self._executions.expire()
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
