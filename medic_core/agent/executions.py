"""Executions: allow-listed scripts run on agents, the server's side of the protocol.

The contract is docs/agent-protocol.md ("at-least-once delivery, at-most-once execution"): the
execution id is an idempotency key, so either side may repeat itself and nothing happens twice.

``Executions`` is the component the hub builds (``hub.executions``) and the rest of Medic calls
(the gRPC endpoint, the HTTP handlers, enrollment, the Hello writer, the passes). It holds one
part per concept, each in a module of its own:

- ``execution_values.py``: states and how they move, commands and reports (plain values the
  transport turns into protocol messages and back), the public view, ``find_execution``.
- ``execution_requests.py``: run (validated, checked against the agent's advertised allowlist,
  stored, audited) and cancel.
- ``execution_queue.py``: the queue and its dispatch within each agent's capacity: the first
  send, the dispatch pass across replicas, redelivery after a ``Welcome``, expiry.
- ``execution_answers.py``: updates from agents (idempotent, forward only; ``too_many_running``
  handed back with a back-off) and the executions lost across a reconnect.
- ``execution_output.py``: output chunks, stored once each, within ``max_output_bytes``.
- ``execution_finals.py``: how an execution ends (counted, audited), whoever ends it.
- ``execution_reading.py``: reading one back with its output, and listing them.

Every change is committed before its events are published. The stream a command goes out on is
found through the hub's ``session`` lookup (``sessions.py``: this module and the hub both
depend on it, and the hub on this module -- no circle).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from medic_core.agent import limits
from medic_core.agent.execution_answers import ExecutionAnswers
from medic_core.agent.execution_finals import Finals
from medic_core.agent.execution_output import ExecutionOutputs
from medic_core.agent.execution_queue import ExecutionQueue
from medic_core.agent.execution_reading import ExecutionReader
from medic_core.agent.execution_requests import ExecutionRequest, ExecutionRequests
from medic_core.agent.execution_values import MEMORY_WINDOW, ExecutionUpdate, OutputChunk
from medic_core.agent.limits import ProtocolRefusals
from medic_core.agent.sessions import Session
from medic_core.agent.verify import AllowlistVerifier, Refusal
from medic_core.audit import Actor
from medic_core.clock import Clock
from medic_core.events import EventBus, PendingEvents
from medic_core.observability.metrics import Metrics
from medic_core.store import Database
from medic_core.store.pagination import Page


class Executions:
    def __init__(
        self,
        db: Database,
        clock: Clock,
        bus: EventBus,
        metrics: Metrics,
        sessions: Callable[[str], Session | None],
        *,
        refusals: ProtocolRefusals,
        verifier: AllowlistVerifier | None = None,
        max_output_bytes: int = limits.DEFAULT_MAX_OUTPUT_BYTES,
        memory_window: timedelta = MEMORY_WINDOW,
        busy_retries: int = 10,
        batch_size: int = 500,
        on_slot_freed: Callable[[], None] = lambda: None,
    ) -> None:
        self._finals = Finals(db, metrics, refusals=refusals)
        #: What is owed to agents, and its sending within their capacity.
        self.queue = ExecutionQueue(
            db,
            clock,
            bus,
            sessions,
            self._finals,
            memory_window=memory_window,
            batch_size=batch_size,
        )
        self._requests = ExecutionRequests(
            db,
            clock,
            bus,
            metrics,
            self.queue,
            self._finals,
            verifier=verifier or AllowlistVerifier(),
        )
        self._answers = ExecutionAnswers(
            db,
            clock,
            bus,
            metrics,
            self._finals,
            refusals=refusals,
            busy_retries=busy_retries,
            on_slot_freed=on_slot_freed,
        )
        self._outputs = ExecutionOutputs(
            db, clock, bus, self._finals, refusals=refusals, max_output_bytes=max_output_bytes
        )
        self._reader = ExecutionReader(db)

    # -- requests (``execution_requests.py``) --------------------------------------------------

    async def execute(
        self,
        agent_id: str,
        script: object,
        args: object,
        env: object,
        timeout_seconds: object,
        *,
        actor: Actor,
        execution_id: str | None = None,
    ) -> dict[str, Any]:
        """Check, store and (when the agent is connected here) send one execution; with
        ``execution_id``, re-attach to it when it exists (``ExecutionRequests.execute``)."""
        return await self._requests.execute(
            agent_id, script, args, env, timeout_seconds, actor=actor, execution_id=execution_id
        )

    async def check(
        self, agent_id: str, script: object, args: object, env: object, timeout_seconds: object
    ) -> Refusal | None:
        """Why ``agent_id`` would refuse this request now (its advertised allowlist, its kill
        switch, its revocation), or ``None``; nothing is stored (``ExecutionRequests.check``).
        ``ValidationError`` for a malformed request, ``NotFound`` for an unknown agent."""
        request = ExecutionRequest.of(script, args, env, timeout_seconds)
        return (await self._requests.check(agent_id, request))[1]

    async def cancel(self, execution_id: str, *, actor: Actor) -> dict[str, Any]:
        """Stop an execution (``ExecutionRequests.cancel``)."""
        return await self._requests.cancel(execution_id, actor=actor)

    # -- the queue (``execution_queue.py``) ----------------------------------------------------

    async def dispatch(self, sessions: Collection[Session]) -> tuple[int, bool]:
        """Send what is owed to the agents connected here (``ExecutionQueue.dispatch``)."""
        return await self.queue.dispatch(sessions)

    async def expire(self) -> tuple[int, bool]:
        """Fail ``lost`` what is unanswered past the memory window (``ExecutionQueue.expire``)."""
        return await self.queue.expire()

    async def unfinished_among(self, db: AsyncSession, agent_ids: Sequence[str]) -> set[str]:
        """Which of ``agent_ids`` have unfinished executions
        (``ExecutionQueue.unfinished_among``)."""
        return await self.queue.unfinished_among(db, agent_ids)

    async def welcome(self, session: Session, welcome: object, *, replay: bool = True) -> None:
        """Answer a ``Hello``: the ``Welcome``, then the replay (``ExecutionQueue.welcome``)."""
        await self.queue.welcome(session, welcome, replay=replay)

    # -- the agent's answers (``execution_answers.py``, ``execution_output.py``) ---------------

    async def update(self, session: Session, report: ExecutionUpdate) -> None:
        """Apply one ``ExecutionUpdate`` (``ExecutionAnswers.update``)."""
        await self._answers.update(session, report)

    async def heartbeat(self, session: Session, running: Sequence[str]) -> None:
        """The first ``Heartbeat`` after a ``Welcome`` (``ExecutionAnswers.heartbeat``)."""
        await self._answers.heartbeat(session, running)

    async def output(self, session: Session, chunk: OutputChunk) -> None:
        """Store one output chunk (``ExecutionOutputs.output``)."""
        await self._outputs.output(session, chunk)

    # -- ends on the server's authority (``execution_finals.py``) ------------------------------

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
        """Fail every unfinished execution of ``agent_id`` (``Finals.fail_unfinished``)."""
        return await self._finals.fail_unfinished(
            db, pending, agent_id, reason, detail, now, actor=actor
        )

    # -- reading (``execution_reading.py``) ----------------------------------------------------

    async def get(self, execution_id: str, *, output: str = "text") -> dict[str, Any]:
        """One execution with its output (``ExecutionReader.get``)."""
        return await self._reader.get(execution_id, output=output)

    async def list(
        self,
        *,
        agent: str | None = None,
        state: str | None = None,
        cursor: str | None = None,
        limit: int | None = None,
        agent_must_exist: bool = False,
    ) -> Page[dict[str, Any]]:
        """Executions newest first (``ExecutionReader.list``)."""
        return await self._reader.list(
            agent=agent, state=state, cursor=cursor, limit=limit, agent_must_exist=agent_must_exist
        )
