"""What agents answer about executions: state updates and the first ``Heartbeat``.

- **Updates** (``update``): applied idempotently. States only move forward -- ``pending`` <
  ``accepted`` < ``running`` < final -- ``rejected`` only from ``pending``, and a final state
  never changes, so a repeated, stale or replayed update is a no-op (one contradicting a final
  state is counted, ``limits.py``). ``too_many_running`` from an agent that advertises its
  capacity (and so does not remember the refusal) hands the execution back (``_busy``):
  ``pending`` again, sent again after a back-off (1 s doubling to 60 s), at most
  ``busy_retries`` times, then ``rejected`` with a detail saying so.
- **Lost** (``heartbeat``): an execution held as ``accepted``/``running`` when a ``Welcome`` was
  sent, that the agent neither mentioned since nor lists in its first ``Heartbeat``, is failed
  ``lost``.

Every answer that frees a slot of the agent (a final state, a hand-back) calls
``on_slot_freed``: the dispatch pass sends what waits for it now.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from medic_core.agent import limits
from medic_core.agent.execution_finals import Finals
from medic_core.agent.execution_values import (
    FINAL,
    STATES,
    ExecutionUpdate,
    execution_to_dict,
    moves,
)
from medic_core.agent.limits import ProtocolRefusals
from medic_core.agent.sessions import Session
from medic_core.backoff import backoff
from medic_core.clock import Clock
from medic_core.events import EventBus, PendingEvents
from medic_core.observability.metrics import Metrics
from medic_core.store import Database
from medic_core.store.models import Agent, Execution

log = logging.getLogger(__name__)


def _busy_delay(refusals: int) -> timedelta:
    """How long an execution refused ``too_many_running`` for the ``refusals``-th time waits
    before it is sent again: 1 s, doubling, at most 60 s."""
    return timedelta(seconds=backoff(refusals, base=1.0, cap=60.0))


class ExecutionAnswers:
    def __init__(
        self,
        db: Database,
        clock: Clock,
        bus: EventBus,
        metrics: Metrics,
        finals: Finals,
        *,
        refusals: ProtocolRefusals,
        busy_retries: int,
        on_slot_freed: Callable[[], None],
    ) -> None:
        self._db = db
        self._clock = clock
        self._bus = bus
        self._finals = finals
        self._protocol = refusals
        self._busy_retries = busy_retries
        self._on_slot_freed = on_slot_freed
        self._requeues = metrics.agent_execution_requeues

    async def update(self, session: Session, report: ExecutionUpdate) -> None:
        """Apply one ``ExecutionUpdate`` of the session's agent; a no-op unless it is progress.

        Dropped and counted (``limits.py``): an update for an execution not this agent's, one
        that contradicts a final state, an unknown state or containment.
        """
        if session.unconfirmed is not None:
            session.unconfirmed.discard(report.execution_id)  # the agent knows it
        if report.state not in STATES:
            self._protocol.count("unknown_state")
            log.warning(
                "ignoring an execution update with an unknown state",
                extra={"agent_id": session.agent_id, "execution_id": report.execution_id[:64]},
            )
            return
        now = self._clock.now()
        pending = PendingEvents()
        async with self._db.transaction() as db:
            row = await self._finals.reported(
                db, report.execution_id, session.agent_id, report.state
            )
            if row is None:
                return
            if not moves(row.state, report.state):
                return  # repeated or stale
            if report.state == "rejected" and report.reason == limits.TOO_MANY_RUNNING:
                if row.last_sent_at is None:
                    return  # handed back already and not sent since: a repeated refusal
                report = await self._busy(db, row, report, now)
            if report.state == "pending":
                pending.add("execution.updated", now, execution=execution_to_dict(row))
            else:
                row.state = report.state
                row.updated_at = now
                row.env_values = None  # answered: never sent again, so the values can go
                if report.state in FINAL:
                    self._finals.finish(db, pending, row, report, now, audit=session.actor)
                pending.add("execution.updated", now, execution=execution_to_dict(row))
        pending.publish(self._bus)
        if report.state in FINAL or report.state == "pending":
            self._on_slot_freed()

    async def _busy(
        self, db: AsyncSession, row: Execution, report: ExecutionUpdate, now: datetime
    ) -> ExecutionUpdate:
        """The agent refused ``row`` for want of a free slot (``too_many_running``): hand it
        back -- ``pending`` again, not at the agent, sent again once its back-off has passed --
        and return the update as ``pending``; or return the refusal, final, when the agent does
        not advertise its capacity (an older agent remembers the refusal and would only repeat
        it), a cancel was asked for, or the execution was refused ``busy_retries`` times
        already (the detail says so).

        It happens when the server's count of the agent's slots is wrong: the agent restarted
        with a lower limit and still runs what it started, or runs a script the server gave up
        on (``lost``). Bounded, so no execution goes back and forth forever.
        """
        advertised = await db.scalar(
            select(Agent.max_concurrent).where(Agent.agent_id == row.agent_id)
        )
        if advertised is None or row.cancel_requested_at is not None:
            # Final: an older agent would repeat it; and nothing ran, which is what a cancel
            # asked for (handed back, it would wait for a Cancel answer that may never come).
            return report
        row.capacity_refusals += 1
        if row.capacity_refusals > self._busy_retries:
            detail = (
                f"refused {row.capacity_refusals} times for want of a free slot "
                f"(MEDIC_AGENT_BUSY_RETRIES is {self._busy_retries}); last: {report.detail}"
            )
            return replace(report, detail=detail)
        delay = _busy_delay(row.capacity_refusals)
        row.last_sent_at = None
        row.send_after = now + delay
        row.updated_at = now
        self._requeues.inc()
        log.info(
            "agent %s refused execution %s: too many running; sending it again in %ds",
            row.agent_id,
            row.execution_id,
            int(delay.total_seconds()),
            extra={"agent_id": row.agent_id, "execution_id": row.execution_id},
        )
        return replace(report, state="pending")

    async def heartbeat(self, session: Session, running: Sequence[str]) -> None:
        """The first ``Heartbeat`` after a ``Welcome``: fail the executions the agent lost."""
        held, session.unconfirmed = session.unconfirmed, None
        if not held:
            return
        missing = held - set(running)
        if not missing:
            return
        now = self._clock.now()
        pending = PendingEvents()
        async with self._db.transaction() as db:
            query = (
                select(Execution)
                .where(
                    Execution.agent_id == session.agent_id,
                    Execution.execution_id.in_(sorted(missing)),
                    Execution.state.in_(("accepted", "running")),
                )
                .order_by(Execution.id)
            )
            if self._db.is_postgres:
                query = query.with_for_update()
            lost = list((await db.scalars(query)).all())
            for row in lost:
                self._finals.lose(
                    db,
                    pending,
                    row,
                    now,
                    "the agent reconnected without it: not running, and no final state replayed",
                )
        pending.publish(self._bus)
        if lost:
            self._on_slot_freed()
