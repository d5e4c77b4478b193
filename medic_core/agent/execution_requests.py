"""Requests to run or cancel an execution: what an operator (or a playbook) asks for.

- **Run** (``execute``): the request's shape is validated (``ExecutionRequest``: sizes, types,
  no NUL; the bounds below), then it is checked against the agent's advertised allowlist with
  the Rust verifier (``verify.py``), and stored ``pending`` with its audit entry (environment
  values never reach the audit log, nor any API answer: ``MASK``). Once that is committed,
  ``Execute`` goes out on the agent's stream if the agent is connected to this process and has
  a free slot (``ExecutionQueue.send_first``); if not, the replica holding its stream sends it,
  or it waits for the agent's next ``Welcome``. A refused request is audited and stored nowhere
  else.
- **Cancel** (``cancel``): a ``pending`` execution never sent ends ``cancelled`` at once;
  otherwise ``Cancel`` is sent now, or owed to the replica holding the stream.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from medic_core.agent.execution_finals import Finals
from medic_core.agent.execution_queue import ExecutionQueue
from medic_core.agent.execution_values import (
    FINAL,
    MASK,
    CancelCommand,
    ExecutionUpdate,
    execution_to_dict,
    find_execution,
    reason_label,
)
from medic_core.agent.sessions import Session
from medic_core.agent.verify import AllowlistVerifier, Refusal, script_sha256
from medic_core.audit import Actor, record_audit
from medic_core.clock import Clock, isoformat
from medic_core.errors import Conflict, MedicError, NotFound, ValidationError
from medic_core.events import EventBus, PendingEvents
from medic_core.observability.metrics import Metrics
from medic_core.store import Database
from medic_core.store.models import Agent, Execution
from medic_core.validation import quote

MAX_ARGS = 64
MAX_VALUE_BYTES = 4096
MAX_ENV = 32
MAX_TIMEOUT = 86_400
_ENV_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")


class ExecutionRefused(MedicError):
    """The agent's advertised allowlist does not allow the request: nothing was sent."""

    status = 422
    title = "Refused by the agent's allowlist"

    def __init__(self, refusal: Refusal) -> None:
        super().__init__(
            f"the agent's allowlist refuses this request ({refusal.reason}): {refusal.detail}",
            reason=refusal.reason,
        )
        self.refusal = refusal


@dataclass(frozen=True, slots=True)
class ExecutionRequest:
    """A request, once its shape holds (sizes and types; the allowlist decides the rest)."""

    script: str
    args: tuple[str, ...]
    env: dict[str, str]
    timeout_seconds: int | None

    @classmethod
    def of(cls, script: object, args: object, env: object, timeout: object) -> ExecutionRequest:
        if not isinstance(script, str) or not 1 <= len(script) <= 64:
            raise ValidationError(
                "script must be the name of an allowlist entry (1-64 characters)", field="script"
            )
        if args is None:
            args = []
        if not isinstance(args, list | tuple) or len(args) > MAX_ARGS:
            raise ValidationError(
                f"args must be a list of at most {MAX_ARGS} strings", field="args"
            )
        for index, arg in enumerate(args):
            _value(arg, f"args[{index}]")
        if env is None:
            env = {}
        if not isinstance(env, Mapping) or len(env) > MAX_ENV:
            raise ValidationError(
                f"env must be an object of at most {MAX_ENV} NAME: value strings", field="env"
            )
        for name, value in env.items():
            if not isinstance(name, str) or not _ENV_NAME_RE.match(name):
                raise ValidationError(
                    f"env name {str(name)[:130]!r} is not valid: letters, digits and '_', "
                    "not starting with a digit, at most 128",
                    field="env",
                )
            _value(value, f"env.{name}")
        if timeout is not None and (
            isinstance(timeout, bool)
            or not isinstance(timeout, int)
            or not 1 <= timeout <= MAX_TIMEOUT
        ):
            raise ValidationError(
                f"timeout_seconds must be an integer from 1 to {MAX_TIMEOUT}, or null for the "
                "allowlist entry's own timeout",
                field="timeout_seconds",
            )
        return cls(script, tuple(args), dict(env), timeout)


def _value(value: object, field: str) -> None:
    """An argument or environment value: a string of at most 4096 bytes, without NUL."""
    if not isinstance(value, str):
        raise ValidationError(f"{field} must be a string", field=field)
    if len(value.encode("utf-8", "surrogatepass")) > MAX_VALUE_BYTES:
        raise ValidationError(f"{field} is longer than {MAX_VALUE_BYTES} bytes", field=field)
    if "\x00" in value:
        raise ValidationError(f"{field} must not contain NUL characters", field=field)


def request_record(agent_id: str, request: ExecutionRequest) -> dict[str, Any]:
    """What the audit log keeps of a request: no environment value, ever."""
    return {
        "agent_id": agent_id,
        "script": request.script,
        "args": list(request.args),
        "env": {name: MASK for name in request.env},
        "timeout_seconds": request.timeout_seconds,
    }


class ExecutionRequests:
    def __init__(
        self,
        db: Database,
        clock: Clock,
        bus: EventBus,
        metrics: Metrics,
        queue: ExecutionQueue,
        finals: Finals,
        *,
        verifier: AllowlistVerifier,
    ) -> None:
        self._db = db
        self._clock = clock
        self._bus = bus
        self._queue = queue
        self._finals = finals
        self._verifier = verifier
        self._refusals = metrics.agent_execution_refusals

    async def check(self, agent_id: str, request: ExecutionRequest) -> tuple[Agent, Refusal | None]:
        """The agent (``NotFound`` when unknown) and why its advertised allowlist (or its state:
        revoked, paused) refuses ``request``, or ``None``: the check ``execute`` makes, for
        callers that check several agents before sending to any (a playbook's ``script`` step
        with ``mode: all``) or when a playbook is saved."""
        # Checked outside the write transaction (compiling rules may take a while, and SQLite's
        # write lock is the whole database's); the agent checks again whatever it receives.
        async with self._db.sessions() as db:
            agent = await db.scalar(select(Agent).where(Agent.agent_id == agent_id))
        if agent is None:
            raise NotFound(f"no agent {quote(agent_id)}")
        if agent.revoked_at is not None:
            return agent, Refusal("agent_revoked", "the agent was revoked")
        if agent.paused:
            paused = agent.paused_reason or "no reason given"
            return agent, Refusal("paused", f"the agent's kill switch is on ({paused})")
        refusal = await self._verifier.check(
            agent.allowlist or {},
            request.script,
            request.args,
            request.env,
            request.timeout_seconds,
        )
        return agent, refusal

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
        """Check, store and (when the agent is connected here) send one execution.

        Raises ``ValidationError`` for a malformed request, ``NotFound`` for an unknown agent,
        ``Conflict`` when the agent's kill switch is on, ``ExecutionRefused`` when its
        advertised allowlist does not allow the request. The answer's ``delivery`` says whether
        ``Execute`` went out now (``sent``) or waits for the agent to connect (``queued``).

        ``execution_id``: the caller's idempotency key (a playbook step derives it from its run,
        step and attempt). When an execution with that id exists already, it is returned as it
        is (``delivery``: ``existing``) and nothing is checked, stored or sent again: a caller
        that died after asking may ask again and re-attach, never start a second run. The
        existing execution must be for the same agent and script (else ``Conflict``).
        """
        request = ExecutionRequest.of(script, args, env, timeout_seconds)
        if execution_id is not None:
            existing = await self._existing(execution_id, agent_id, request)
            if existing is not None:
                return existing
        agent, refusal = await self.check(agent_id, request)
        summary = agent.allowlist or {}
        now = self._clock.now()
        if refusal is not None:
            async with self._db.transaction() as db:
                record_audit(
                    db,
                    actor=actor,
                    at=now,
                    action="execution.refuse",
                    resource_type="agent",
                    resource_id=agent_id,
                    after={
                        **request_record(agent_id, request),
                        "reason": refusal.reason,
                        "detail": refusal.detail,
                    },
                )
            self._refusals.labels(reason_label(refusal.reason)).inc()
            if agent.revoked_at is not None:
                raise Conflict(
                    f"agent {agent_id} is revoked: it runs nothing until an admin re-assigns it "
                    "to a key (POST /api/v1/agents/{id}/reassign)",
                    reason="agent_revoked",
                )
            if agent.paused:
                raise Conflict(
                    f"agent {agent_id} is paused: {refusal.detail}, so it refuses every "
                    "execution; turn the switch off on the host first",
                    reason="paused",
                )
            raise ExecutionRefused(refusal)
        row = Execution(
            execution_id=execution_id or str(uuid.uuid4()),
            agent_id=agent_id,
            script=request.script,
            args=list(request.args),
            env_names=sorted(request.env),
            env_values=dict(request.env),
            timeout_seconds=request.timeout_seconds,
            expected_sha256=script_sha256(summary, request.script),
            requested_by=actor.name[:200],
            state="pending",
            output_truncated=False,
            sent_count=0,
            created_at=now,
            updated_at=now,
        )
        pending = PendingEvents()
        try:
            await self._store(row, request, pending, actor, now)
        except IntegrityError:
            # The same id stored by a concurrent call (another replica re-attaching at once):
            # that one is the execution; this call re-attaches to it.
            existing = await self._existing(row.execution_id, agent_id, request)
            if existing is None:
                raise
            return existing
        pending.publish(self._bus)
        sent = await self._queue.send_first(row)
        body = execution_to_dict(row)
        body["delivery"] = "sent" if sent else "queued"
        return body

    async def _existing(
        self, execution_id: str, agent_id: str, request: ExecutionRequest
    ) -> dict[str, Any] | None:
        async with self._db.sessions() as db:
            row = await find_execution(db, execution_id, for_update=False)
        if row is None:
            return None
        if row.agent_id != agent_id or row.script != request.script:
            raise Conflict(
                f"execution {quote(execution_id)} exists already for agent {row.agent_id} and "
                f"script {row.script}: an execution id names one request"
            )
        body = execution_to_dict(row)
        body["delivery"] = "existing"
        return body

    async def _store(
        self,
        row: Execution,
        request: ExecutionRequest,
        pending: PendingEvents,
        actor: Actor,
        now: datetime,
    ) -> None:
        async with self._db.transaction() as db:
            db.add(row)
            await db.flush()
            record_audit(
                db,
                actor=actor,
                at=now,
                action="execution.request",
                resource_type="execution",
                resource_id=row.execution_id,
                after={**request_record(row.agent_id, request), "id": row.execution_id},
            )
            pending.add("execution.created", now, execution=execution_to_dict(row))

    async def cancel(self, execution_id: str, *, actor: Actor) -> dict[str, Any]:
        """Stop an execution: at once when it never left the server, else through ``Cancel``.

        A ``pending`` execution that was never sent ends ``cancelled``
        (``cancelled_before_start``). Otherwise ``cancel_requested_at`` is recorded and
        ``Cancel`` is sent now if the agent is connected here, else by the replica it is
        connected to (``dispatch``), and again after each ``Welcome`` until the execution ends;
        the agent's answer ends it. ``Conflict`` once it has ended.
        """
        now = self._clock.now()
        pending = PendingEvents()
        command: CancelCommand | None = None
        session: Session | None = None
        async with self._db.transaction() as db:
            row = await find_execution(db, execution_id, for_update=self._db.is_postgres)
            if row is None:
                raise NotFound(f"no execution {quote(execution_id)}")
            if row.state in FINAL:
                raise Conflict(
                    f"execution {execution_id} has already ended ({row.state}): "
                    "there is nothing to cancel"
                )
            before = {"state": row.state, "cancel_requested_at": isoformat(row.cancel_requested_at)}
            if row.state == "pending" and row.sent_count == 0:
                self._finals.finish(
                    db,
                    pending,
                    row,
                    ExecutionUpdate(
                        execution_id,
                        "cancelled",
                        "cancelled_before_start",
                        "cancelled before it was sent to the agent",
                    ),
                    now,
                    audit=None,
                )
            else:
                if row.cancel_requested_at is None:
                    row.cancel_requested_at = now
                command = CancelCommand(row.execution_id, f"cancelled by {actor.name}"[:200])
                session = self._queue.live(row.agent_id)
                if session is not None and await self._queue.is_current(db, session):
                    row.cancel_sent_at = now  # sent below, once committed
                else:
                    row.cancel_sent_at = None  # owed: the replica holding the stream sends it
                    session = None
            row.updated_at = now
            record_audit(
                db,
                actor=actor,
                at=now,
                action="execution.cancel",
                resource_type="execution",
                resource_id=row.execution_id,
                before=before,
                after={
                    "agent_id": row.agent_id,
                    "script": row.script,
                    "state": row.state,
                    "cancel_requested_at": isoformat(row.cancel_requested_at),
                },
            )
            body = execution_to_dict(row)
            pending.add("execution.updated", now, execution=body)
        pending.publish(self._bus)
        if command is not None and session is not None:
            session.send(command)
        return body
