"""How executions end: the one place a final state is recorded.

An execution ends when its agent reports a final state (``execution_answers.py``), when it is
cancelled before it was ever sent (``execution_requests.py``), or on the server's own authority
(``fail``: ``lost`` -- unanswered past the agent's memory window, or not running after a
reconnect --, ``agent_revoked``). ``finish`` records the state, bounds what the agent said
(``stored_text``, ``bounded_count``), drops the environment values (never sent again), counts
the result (``medic_agent_executions``, and ``medic_agent_execution_refusals`` for a
rejection) and audits it. ``after_final`` decides what a message about an execution that has
already ended means (dropped, counted, or a breach of the protocol that ends the stream).
"""

from __future__ import annotations

import logging
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from medic_core.agent import limits
from medic_core.agent.execution_values import (
    FINAL,
    ExecutionUpdate,
    bounded_count,
    execution_to_dict,
    find_execution,
    reason_label,
    stored_text,
)
from medic_core.agent.limits import SERVER_REASONS, ProtocolRefusals
from medic_core.audit import SYSTEM, Actor, record_audit
from medic_core.events import PendingEvents
from medic_core.observability.metrics import Metrics
from medic_core.store import Database
from medic_core.store.models import Execution

log = logging.getLogger(__name__)


class Finals:
    def __init__(self, db: Database, metrics: Metrics, *, refusals: ProtocolRefusals) -> None:
        self._db = db
        self._protocol = refusals
        self._results = metrics.agent_executions
        self._refusals = metrics.agent_execution_refusals

    async def reported(
        self, db: AsyncSession, execution_id: str, agent_id: str | None, what: str
    ) -> Execution | None:
        """The execution an agent's message (``what``: its new state, or ``output``) is about,
        locked, when that message may still change it: ``None`` for an execution this agent was
        never sent (dropped, counted ``unknown_execution``) or one that has ended
        (``after_final`` decides what that means). A stream that has not said who it is
        (``agent_id`` None) owns no execution."""
        row = None
        if agent_id is not None:
            row = await find_execution(
                db, execution_id, agent_id=agent_id, for_update=self._db.is_postgres
            )
        if row is None:
            self._protocol.count("unknown_execution")
            log.warning(
                "ignoring a message about an execution this agent was never sent",
                extra={"agent_id": agent_id, "execution_id": execution_id[:64], "about": what},
            )
            return None
        if row.state in FINAL:
            self.after_final(row, what)
            return None
        return row

    def finish(
        self,
        db: AsyncSession,
        pending: PendingEvents,
        row: Execution,
        report: ExecutionUpdate,
        now: datetime,
        *,
        audit: Actor | None,
        result: str | None = None,
    ) -> None:
        """Record a final state (``row.state`` is set by the caller or here)."""
        row.state = report.state
        row.reason = stored_text(report.reason, 64)
        row.detail = stored_text(report.detail, 1000)
        row.exit_code = report.exit_code
        row.signal = report.signal
        # None: unknown (lost), so the stored output can never be called complete.
        row.output_chunks = (
            None if report.output_chunks is None else bounded_count(report.output_chunks)
        )
        row.output_truncated = row.output_truncated or report.output_truncated
        row.duration_ms = (
            None
            if report.duration_ms is None or report.state == "rejected"
            else bounded_count(report.duration_ms)
        )
        row.finished_at = now
        row.env_values = None
        if report.containment:
            if report.containment in limits.CONTAINMENTS:
                row.containment = report.containment
            else:
                self._protocol.count("unknown_containment")
        self._results.labels(result or report.state).inc()
        if report.state == "rejected":
            self._refusals.labels(reason_label(row.reason)).inc()
        if audit is not None:
            record_audit(
                db,
                actor=audit,
                at=now,
                action="execution.finish",
                resource_type="execution",
                resource_id=row.execution_id,
                after={
                    "agent_id": row.agent_id,
                    "script": row.script,
                    "state": row.state,
                    "reason": row.reason,
                    "exit_code": row.exit_code,
                    "signal": row.signal,
                    "duration_ms": row.duration_ms,
                },
            )

    def fail(
        self,
        db: AsyncSession,
        pending: PendingEvents,
        row: Execution,
        now: datetime,
        reason: str,
        detail: str,
        actor: Actor,
    ) -> None:
        """Fail ``row`` on the server's own authority (the agent said nothing final)."""
        row.updated_at = now
        self.finish(
            db,
            pending,
            row,
            ExecutionUpdate(row.execution_id, "failed", reason, detail, output_chunks=None),
            now,
            audit=actor,
            result=reason,
        )
        pending.add("execution.updated", now, execution=execution_to_dict(row))

    def lose(
        self, db: AsyncSession, pending: PendingEvents, row: Execution, now: datetime, detail: str
    ) -> None:
        self.fail(db, pending, row, now, "lost", detail, SYSTEM)

    async def fail_unfinished(
        self,
        db: AsyncSession,
        pending: PendingEvents,
        agent_id: str,
        reason: str,
        detail: str,
        now: datetime,
        *,
        actor: Actor,
    ) -> int:
        """Fail every unfinished execution of ``agent_id`` with ``reason`` (in the caller's
        transaction): the agent was revoked, nothing more will come from it. How many."""
        query = (
            select(Execution)
            .where(Execution.agent_id == agent_id, Execution.finished_at.is_(None))
            .order_by(Execution.id)
        )
        if self._db.is_postgres:
            query = query.with_for_update()
        rows = list(await db.scalars(query))
        for row in rows:
            self.fail(db, pending, row, now, reason, detail, actor)
        return len(rows)

    def after_final(self, row: Execution, what: str) -> None:
        """A message about an execution that has ended: ``what`` is the state an update
        reports, or ``output`` for a chunk.

        One the server failed by itself (``lost``, ``agent_revoked``) may still run on the
        host: whatever comes is dropped. Else the agent reported the final state: it sends its
        output before it, on the same stream, so output after it breaks the protocol. Updates
        are replayed after every ``Welcome``: a repeat of the final state is normal, another
        state (a journal that lost a write) is dropped and counted.
        """
        if row.reason in SERVER_REASONS:
            self._protocol.count("closed_by_server")
        elif what == "output":
            raise self._protocol.violation(
                "after_final",
                f"output for execution {row.execution_id}, which the agent reported "
                f"{row.state}: output comes before the final state",
            )
        elif what != row.state:
            self._protocol.count("update_after_final")
            log.warning(
                "ignoring an update to %s of execution %s, which ended %s",
                what,
                row.execution_id,
                row.state,
                extra={"agent_id": row.agent_id, "execution_id": row.execution_id},
            )
