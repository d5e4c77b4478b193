"""Executions: allow-listed scripts run on agents, the server's side of the protocol.

The contract is docs/agent-protocol.md ("at-least-once delivery, at-most-once execution"): the
execution id is an idempotency key, so either side may repeat itself and nothing happens twice.

- **Dispatch** (``execute``): the request is validated, checked against the agent's advertised
  allowlist with the Rust verifier (``verify.py``), and stored ``pending`` with its audit entry.
  Once that is committed, ``Execute`` goes out on the agent's stream if the agent is connected to
  this process and has a free slot; if not, the replica holding its stream sends it
  (``dispatch``), or it waits for the agent's next ``Welcome``. A refused request is audited and
  stored nowhere else.
- **Capacity**: an agent runs at most ``agents.max_concurrent`` executions at once (its
  ``Hello``; ``limits.ASSUMED_CAPACITY`` when it does not say). Sent and unfinished, an
  execution holds one of its agent's slots; what does not fit stays ``pending`` and goes out,
  oldest first, as answers free slots (each final answer wakes the dispatch pass). Every send
  that takes a slot happens in a transaction that first locks the agent's row (``FOR NO KEY
  UPDATE`` on PostgreSQL; SQLite's write lock is the whole database's) and then counts the
  agent's slots in use, so two transactions -- two replicas, or a request and the pass -- never
  both take the last slot. ``too_many_running`` from an agent that advertises its capacity (and
  so does not remember the refusal) hands the execution back: ``pending`` again, sent again
  after a back-off (1 s doubling to 60 s), at most ``busy_retries`` times, then ``rejected``
  with a detail saying so.
- **Across replicas** (``dispatch``): each replica agents connect to looks, every second or so
  (and at once when an answer frees a slot), for executions not at their agent and cancels not
  sent yet of the agents connected to it, and sends them. Every send is claimed with a
  conditional update first, so two replicas (or a request and the pass) never both send the
  same one, and ``sent_count`` counts what went out.
- **Redelivery** (``welcome``): after every ``Welcome`` each unanswered (``pending``) execution
  sent before is sent again (``Cancel`` instead, when a cancel was asked for), and those never
  sent or handed back go out as far as the agent's free slots allow, unless older than the
  agent's memory window: then it is failed ``lost``, never sent again.
- **Expiry** (``expire``, run by the hub's watch): an execution still unanswered past the memory
  window fails ``lost`` even if its agent never comes back.
- **Updates** (``update``): applied idempotently. States only move forward — ``pending`` <
  ``accepted`` < ``running`` < final — ``rejected`` only from ``pending``, and a final state
  never changes, so a repeated, stale or replayed update is a no-op (one contradicting a final
  state is counted, ``limits.py``).
- **Lost** (``heartbeat``): an execution held as ``accepted``/``running`` when a ``Welcome`` was
  sent, that the agent neither mentioned since nor lists in its first ``Heartbeat``, is failed
  ``lost``.
- **Output** (``output``): chunks are stored once per (execution, sequence), up to
  ``max_output_bytes`` per execution; past it they are dropped and the output flagged
  truncated. A chunk after the agent's final state, empty, over 16 KiB or numbered beyond what
  the database holds ends the stream (``limits.py`` has the whole table).

Every change is committed before its events are published. The stream a command goes out on is
found through the hub's ``session`` lookup; commands are plain values (``ExecuteCommand``,
``CancelCommand``) that the transport turns into protocol messages.
"""

from __future__ import annotations

import base64
import logging
import re
import uuid
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import (
    ColumnElement,
    CursorResult,
    and_,
    case,
    func,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession

from medic_core.agent import limits
from medic_core.agent.limits import SERVER_REASONS, ProtocolRefusals
from medic_core.agent.sessions import Session
from medic_core.agent.verify import AllowlistVerifier, Refusal, script_sha256
from medic_core.audit import SYSTEM, Actor, record_audit
from medic_core.backoff import backoff
from medic_core.clock import Clock, isoformat
from medic_core.errors import Conflict, MedicError, NotFound, ValidationError
from medic_core.events import EventBus, PendingEvents
from medic_core.observability.metrics import Metrics
from medic_core.store import Database
from medic_core.store.models import EXECUTIONS_OWED, Agent, Execution, ExecutionOutput
from medic_core.store.pagination import Page, check_limit, decode_cursor, page_of
from medic_core.validation import quote

log = logging.getLogger(__name__)

STATES = (
    "pending",
    "accepted",
    "running",
    "rejected",
    "succeeded",
    "failed",
    "timed_out",
    "cancelled",
)
FINAL = frozenset({"rejected", "succeeded", "failed", "timed_out", "cancelled"})
_RANK = {"pending": 0, "accepted": 1, "running": 2}
#: How long the agent remembers executions (docs/agent-protocol.md): an unanswered execution
#: older than this is never sent again, since the agent may have forgotten it already ran it.
MEMORY_WINDOW = timedelta(hours=24)
MAX_ARGS = 64
MAX_VALUE_BYTES = 4096
MAX_ENV = 32
MAX_TIMEOUT = 86_400
MASK = "********"
_ENV_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")
_REASON_RE = re.compile(r"^[a-z][a-z0-9_]{0,39}$")
_MAX_ID = 64
_MAX_DB_INT = 2**63 - 1


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
class ExecuteCommand:
    """Run ``script`` (``Execute`` on the wire)."""

    execution_id: str
    script: str
    args: tuple[str, ...]
    env: dict[str, str]
    timeout_seconds: int
    expected_sha256: str


@dataclass(frozen=True, slots=True)
class CancelCommand:
    """Stop an execution (``Cancel`` on the wire)."""

    execution_id: str
    reason: str


@dataclass(frozen=True, slots=True)
class ExecutionUpdate:
    """The state of one execution as the agent reports it (``state``: a name of ``STATES``,
    or ``unspecified`` for a value this server does not know)."""

    execution_id: str
    state: str
    reason: str = ""
    detail: str = ""
    exit_code: int | None = None
    signal: int | None = None
    output_chunks: int | None = 0
    output_truncated: bool = False
    duration_ms: int | None = None
    containment: str = ""


@dataclass(frozen=True, slots=True)
class OutputChunk:
    execution_id: str
    stream: str
    sequence: int
    data: bytes
    truncated: bool = False


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


def execution_to_dict(row: Execution) -> dict[str, Any]:
    """The public view of an execution: environment names only, values masked."""
    return {
        "id": row.execution_id,
        "agent_id": row.agent_id,
        "script": row.script,
        "args": list(row.args or []),
        "env": {name: MASK for name in row.env_names or []},
        "timeout_seconds": row.timeout_seconds,
        "expected_sha256": row.expected_sha256,
        "requested_by": row.requested_by,
        "state": row.state,
        "reason": row.reason,
        "detail": row.detail,
        "exit_code": row.exit_code,
        "signal": row.signal,
        "output_chunks": row.output_chunks,
        "output_truncated": row.output_truncated,
        "output_bytes": row.output_bytes,
        "duration_ms": row.duration_ms,
        "containment": row.containment,
        "sent_count": row.sent_count,
        "last_sent_at": isoformat(row.last_sent_at),
        "capacity_refusals": row.capacity_refusals,
        "send_after": isoformat(row.send_after),
        "cancel_requested_at": isoformat(row.cancel_requested_at),
        "created_at": isoformat(row.created_at),
        "updated_at": isoformat(row.updated_at),
        "finished_at": isoformat(row.finished_at),
    }


def _request_record(agent_id: str, request: ExecutionRequest) -> dict[str, Any]:
    """What the audit log keeps of a request: no environment value, ever."""
    return {
        "agent_id": agent_id,
        "script": request.script,
        "args": list(request.args),
        "env": {name: MASK for name in request.env},
        "timeout_seconds": request.timeout_seconds,
    }


def _text(value: str, max_len: int) -> str | None:
    """Agent-supplied text as stored: bounded, and without NUL (PostgreSQL text cannot hold it:
    storing it would fail the update every time the agent replays it)."""
    return value.replace("\x00", "\ufffd")[:max_len] or None


def _count(value: int) -> int:
    return min(max(value, 0), _MAX_DB_INT)


def _label(reason: str | None) -> str:
    """A reason code as a metric label: agents send free text, metrics need a bounded set."""
    return reason if reason and _REASON_RE.match(reason) else "other"


def _rowcount(result: Any) -> int:
    return int(cast(CursorResult[Any], result).rowcount)


def _busy_delay(refusals: int) -> timedelta:
    """How long an execution refused ``too_many_running`` for the ``refusals``-th time waits
    before it is sent again: 1 s, doubling, at most 60 s."""
    return timedelta(seconds=backoff(refusals, base=1.0, cap=60.0))


def _capacity(max_concurrent: int | None) -> int:
    """How many executions an agent runs at once: what it advertised, else the agent's default."""
    return max_concurrent or limits.ASSUMED_CAPACITY


#: An owed ``Cancel``: asked for, not sent since.
_CANCEL_OWED = and_(Execution.cancel_requested_at.is_not(None), Execution.cancel_sent_at.is_(None))


def _moves(current: str, new: str) -> bool:
    """Whether an update from ``current`` to ``new`` is progress (else it is a no-op)."""
    if current in FINAL or new not in STATES or new == "pending":
        return False
    if new == "rejected":
        return current == "pending"
    return new in FINAL or _RANK[new] > _RANK[current]


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
        self._db = db
        self._clock = clock
        self._bus = bus
        self._sessions = sessions
        self._protocol = refusals
        self._verifier = verifier or AllowlistVerifier()
        self._max_output = max_output_bytes
        self._window = memory_window
        self._busy_retries = busy_retries
        self._batch = batch_size
        self._on_slot_freed = on_slot_freed
        self._results = metrics.agent_executions
        self._refusals = metrics.agent_execution_refusals
        self._requeues = metrics.agent_execution_requeues

    def _live(self, agent_id: str) -> Session | None:
        """The agent's stream in this process, once it has been welcomed."""
        session = self._sessions(agent_id)
        if session is None or not session.welcomed or session.ended is not None:
            return None
        return session

    @staticmethod
    def _current(session: Session) -> ColumnElement[bool]:
        """The session is still its agent's stream (not replaced here or on another replica)."""
        return (
            select(Agent.id)
            .where(Agent.agent_id == session.agent_id, Agent.session_id == session.session_id)
            .exists()
        )

    async def _claim_execute(
        self, db: AsyncSession, row: Execution, session: Session, now: datetime
    ) -> bool:
        """Record the send of ``row`` (not at the agent: never sent, or handed back) to
        ``session``, unless it was sent (or cancelled, answered, or replaced) meanwhile: a
        conditional update, so of two replicas or two paths racing for the same execution
        exactly one sends it. The caller holds the agent's slot (``_claim_owed``)."""
        result = await db.execute(
            update(Execution)
            .where(
                Execution.id == row.id,
                Execution.state == "pending",
                Execution.last_sent_at.is_(None),
                Execution.cancel_requested_at.is_(None),
                Execution.created_at > now - self._window,
                or_(Execution.send_after.is_(None), Execution.send_after <= now),
                self._current(session),
            )
            .values(sent_count=Execution.sent_count + 1, last_sent_at=now, send_after=None)
            .execution_options(synchronize_session=False)
        )
        return _rowcount(result) == 1

    async def _claim_cancel(
        self, db: AsyncSession, row: Execution, session: Session, now: datetime
    ) -> bool:
        """Record that the owed ``Cancel`` of ``row`` goes to ``session`` (as above)."""
        result = await db.execute(
            update(Execution)
            .where(
                Execution.id == row.id,
                Execution.finished_at.is_(None),
                Execution.cancel_requested_at.is_not(None),
                Execution.cancel_sent_at.is_(None),
                self._current(session),
            )
            .values(cancel_sent_at=now)
            .execution_options(synchronize_session=False)
        )
        return _rowcount(result) == 1

    async def _agents(
        self, db: AsyncSession, agent_ids: Sequence[str], *, lock: bool
    ) -> dict[str, tuple[int, str | None]]:
        """Each agent's capacity and current session. ``lock``: its row locked (PostgreSQL:
        ``FOR NO KEY UPDATE``, in ``agent_id`` order like every batch of agents' rows), so that
        whoever takes slots of these agents waits for the transaction to end; ``NO KEY`` lets
        requests for them be stored meanwhile (their foreign key takes ``KEY SHARE``)."""
        query = select(Agent.agent_id, Agent.max_concurrent, Agent.session_id).where(
            self._db.among(Agent.agent_id, sorted(agent_ids), "agent_ids")
        )
        if lock and self._db.is_postgres:
            query = query.order_by(Agent.agent_id).with_for_update(key_share=True)
        return {
            row.agent_id: (_capacity(row.max_concurrent), row.session_id)
            for row in await db.execute(query)
        }

    async def _in_flight(self, db: AsyncSession, agent_ids: Sequence[str]) -> dict[str, int]:
        """How many slots each agent's executions hold: sent (and not handed back), unfinished
        (``pending`` and unanswered, ``accepted``, ``running``)."""
        rows = await db.execute(
            select(Execution.agent_id, func.count())
            .where(
                self._db.among(Execution.agent_id, agent_ids, "agent_ids"),
                Execution.finished_at.is_(None),
                Execution.last_sent_at.is_not(None),
            )
            .group_by(Execution.agent_id)
        )
        return {agent_id: int(count) for agent_id, count in rows}

    async def _claim_owed(
        self, db: AsyncSession, live: Mapping[str, Session], agent_ids: Sequence[str], now: datetime
    ) -> tuple[list[tuple[Session, ExecuteCommand | CancelCommand]], bool]:
        """In the caller's transaction, claim what is owed to ``agent_ids`` (each one's stream
        is ``live[agent_id]``): every ``Cancel`` owed, and the executions not at the agent,
        oldest first, as many as it has free slots. ``(what to send once committed, whether a
        batch bound was reached)``.

        The agents' rows are locked first, then their slots in use are counted: whoever else
        takes slots of these agents (another replica's stale stream, a request and the pass
        here) waits for this transaction and then counts what it claimed. Rows are numbered per
        agent (``row_number``) so that one batch serves every agent's oldest ones first, not
        the first agent's whole queue.
        """
        agents = await self._agents(db, agent_ids, lock=True)
        current = [
            agent_id
            for agent_id in agent_ids
            if agent_id in agents
            and agents[agent_id][1] == live[agent_id].session_id
            and live[agent_id].welcomed
            and live[agent_id].ended is None
        ]
        if not current:
            return [], False
        sends: list[tuple[Session, ExecuteCommand | CancelCommand]] = []
        cancels = list(
            await db.scalars(
                select(Execution)
                .where(
                    self._db.among(Execution.agent_id, current, "agent_ids"),
                    text(EXECUTIONS_OWED),
                    _CANCEL_OWED,
                )
                .order_by(Execution.id)
                .limit(self._batch)
            )
        )
        for row in cancels:
            if await self._claim_cancel(db, row, live[row.agent_id], now):
                sends.append((live[row.agent_id], self._cancel_again(row)))
        used = await self._in_flight(db, current)
        free = {a: max(0, agents[a][0] - used.get(a, 0)) for a in current}
        open_ = [agent_id for agent_id in current if free[agent_id] > 0]
        executes: list[Execution] = []
        if open_:
            rank = func.row_number().over(partition_by=Execution.agent_id, order_by=Execution.id)
            owed = (
                select(Execution.id, rank.label("rank"))
                .where(
                    self._db.among(Execution.agent_id, open_, "agent_ids"),
                    text(EXECUTIONS_OWED),
                    Execution.state == "pending",
                    Execution.last_sent_at.is_(None),
                    Execution.cancel_requested_at.is_(None),
                    or_(Execution.send_after.is_(None), Execution.send_after <= now),
                )
                .subquery()
            )
            executes = list(
                await db.scalars(
                    select(Execution)
                    .join(owed, owed.c.id == Execution.id)
                    .where(owed.c.rank <= max(free.values()))
                    .order_by(owed.c.rank, Execution.id)
                    .limit(self._batch)
                )
            )
        for row in executes:
            session = live[row.agent_id]
            if free[row.agent_id] > 0 and await self._claim_execute(db, row, session, now):
                free[row.agent_id] -= 1
                sends.append((session, self._command(row)))
        return sends, len(cancels) >= self._batch or len(executes) >= self._batch

    async def _find(
        self, db: AsyncSession, execution_id: str, *, agent_id: str | None = None, lock: bool
    ) -> Execution | None:
        if not execution_id or len(execution_id) > _MAX_ID:
            return None
        query = select(Execution).where(Execution.execution_id == execution_id)
        if agent_id is not None:
            query = query.where(Execution.agent_id == agent_id)
        if lock and self._db.is_postgres:
            query = query.with_for_update()
        return await db.scalar(query)

    # -- dispatch ------------------------------------------------------------------------------

    async def execute(
        self,
        agent_id: str,
        script: object,
        args: object,
        env: object,
        timeout_seconds: object,
        *,
        actor: Actor,
    ) -> dict[str, Any]:
        """Check, store and (when the agent is connected here) send one execution.

        Raises ``ValidationError`` for a malformed request, ``NotFound`` for an unknown agent,
        ``Conflict`` when the agent's kill switch is on, ``ExecutionRefused`` when its
        advertised allowlist does not allow the request. The answer's ``delivery`` says whether
        ``Execute`` went out now (``sent``) or waits for the agent to connect (``queued``).
        """
        request = ExecutionRequest.of(script, args, env, timeout_seconds)
        # Checked outside the write transaction (compiling rules may take a while, and SQLite's
        # write lock is the whole database's); the agent checks again whatever it receives.
        async with self._db.sessions() as db:
            agent = await db.scalar(select(Agent).where(Agent.agent_id == agent_id))
        if agent is None:
            raise NotFound(f"no agent {quote(agent_id)}")
        summary = agent.allowlist or {}
        refusal: Refusal | None = None
        if agent.revoked_at is not None:
            refusal = Refusal("agent_revoked", "the agent was revoked")
        elif agent.paused:
            paused = agent.paused_reason or "no reason given"
            refusal = Refusal("paused", f"the agent's kill switch is on ({paused})")
        else:
            refusal = await self._verifier.check(
                summary, request.script, request.args, request.env, request.timeout_seconds
            )
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
                        **_request_record(agent_id, request),
                        "reason": refusal.reason,
                        "detail": refusal.detail,
                    },
                )
            self._refusals.labels(_label(refusal.reason)).inc()
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
            execution_id=str(uuid.uuid4()),
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
                after={**_request_record(agent_id, request), "id": row.execution_id},
            )
            pending.add("execution.created", now, execution=execution_to_dict(row))
        pending.publish(self._bus)
        sent = await self._send_first(row)
        body = execution_to_dict(row)
        body["delivery"] = "sent" if sent else "queued"
        return body

    def _command(self, row: Execution) -> ExecuteCommand:
        return ExecuteCommand(
            execution_id=row.execution_id,
            script=row.script,
            args=tuple(row.args or []),
            env=dict(row.env_values or {}),
            timeout_seconds=row.timeout_seconds or 0,
            expected_sha256=row.expected_sha256,
        )

    async def _send_first(self, row: Execution) -> bool:
        """Send what is owed to the agent of a just-stored execution if its stream is here:
        whether that execution went out.

        Owed, not just this one: the agent's free slots go to its oldest executions waiting for
        one (``_claim_owed``), so a new request never overtakes older ones. Each send is
        recorded first (``_claim_execute``), and only while the execution is still unanswered,
        not at the agent and not cancelled, so a cancel never mistakes an execution on its way
        for one never sent, and the dispatch pass never sends it a second time. Checked after
        the commit: a stream welcomed before it re-sends nothing stored after its replay, and
        one welcomed after it finds the execution in its replay. Otherwise the replica holding
        the agent's stream sends it (``dispatch``).
        """
        session = self._live(row.agent_id)
        if session is None:
            return False
        now = self._clock.now()
        async with self._db.transaction() as db:
            sends, _ = await self._claim_owed(db, {row.agent_id: session}, [row.agent_id], now)
        sent = False
        for stream, command in sends:
            stream.send(command)
            if isinstance(command, ExecuteCommand) and command.execution_id == row.execution_id:
                sent = True
        if sent:
            row.sent_count += 1
            row.last_sent_at = now
        return sent

    # -- cancel --------------------------------------------------------------------------------

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
            row = await self._find(db, execution_id, lock=True)
            if row is None:
                raise NotFound(f"no execution {quote(execution_id)}")
            if row.state in FINAL:
                raise Conflict(
                    f"execution {execution_id} has already ended ({row.state}): "
                    "there is nothing to cancel"
                )
            before = {"state": row.state, "cancel_requested_at": isoformat(row.cancel_requested_at)}
            if row.state == "pending" and row.sent_count == 0:
                self._finish(
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
                session = self._live(row.agent_id)
                if session is not None and await self._is_current(db, session):
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

    @staticmethod
    async def _is_current(db: AsyncSession, session: Session) -> bool:
        current = await db.scalar(
            select(Agent.session_id).where(Agent.agent_id == session.agent_id)
        )
        return current == session.session_id

    # -- across replicas: the dispatch pass, the expiry ---------------------------------------

    async def dispatch(self, sessions: Collection[Session]) -> tuple[int, bool]:
        """Send what is owed to the agents connected here: ``(messages sent, more owed)``.

        Requests and cancels that landed on a replica without the agent's stream are only
        stored there (an ``Execute`` not at the agent, a ``Cancel`` owed), as are executions
        waiting for a free slot of their agent; the replica holding the stream finds them here.
        First a probe of the partial index ``ix_executions_owed``, which is empty when nothing
        is owed to anyone; then, without locks, which of its welcomed agents are owed something
        sendable now (one grouped query on that index), and which of those have a free slot or
        a ``Cancel`` owed; then, for at most a batch of those agents, one transaction claims
        what fits (``_claim_owed``: the agents' rows locked, their slots counted, each send a
        conditional update), so of two replicas (a stale stream and its replacement) or two
        paths (a request and this pass) exactly one sends, never past the agent's capacity, and
        ``sent_count`` counts what went out. "More" only when something was sent and a bound
        was reached: an agent whose slots are all taken waits for an answer to free one (which
        wakes this pass), not in a busy loop.
        """
        if not sessions:
            return 0, False
        now = self._clock.now()
        async with self._db.sessions() as db:
            # The usual case, nothing owed to any agent, costs one probe of an empty index.
            if await db.scalar(select(Execution.id).where(text(EXECUTIONS_OWED)).limit(1)) is None:
                return 0, False
            live = {
                session.agent_id: session
                for session in sessions
                if session.agent_id is not None and session.welcomed and session.ended is None
            }
            if not live:
                return 0, False
            sendable = or_(
                _CANCEL_OWED,
                and_(
                    Execution.cancel_requested_at.is_(None),
                    Execution.last_sent_at.is_(None),
                    or_(Execution.send_after.is_(None), Execution.send_after <= now),
                ),
            )
            rows = await db.execute(
                select(Execution.agent_id, func.count(case((_CANCEL_OWED, 1))))
                .where(
                    self._db.among(Execution.agent_id, list(live), "agent_ids"),
                    text(EXECUTIONS_OWED),
                    sendable,
                )
                .group_by(Execution.agent_id)
            )
            owed = {agent_id: int(cancels) for agent_id, cancels in rows}
            if not owed:
                return 0, False
            agents = await self._agents(db, list(owed), lock=False)
            used = await self._in_flight(db, list(owed))
        candidates = sorted(
            agent_id
            for agent_id, cancels in owed.items()
            if cancels or (agent_id in agents and used.get(agent_id, 0) < agents[agent_id][0])
        )
        if not candidates:
            return 0, False
        chosen = candidates[: self._batch]
        async with self._db.transaction() as db:
            sends, full = await self._claim_owed(db, live, chosen, now)
        for session, command in sends:
            session.send(command)
        return len(sends), bool(sends) and (full or len(candidates) > len(chosen))

    async def expire(self) -> tuple[int, bool]:
        """Fail ``lost`` what is still unanswered past the agent's memory window, oldest first:
        ``(failed, more due)``. Its agent did not come back in time, and sending it now could
        run the script twice. Run by the watch (replicas share the work, ``SKIP LOCKED``)."""
        now = self._clock.now()
        due = (Execution.state == "pending", Execution.created_at <= now - self._window)
        async with self._db.sessions() as db:  # the usual case, nothing due, takes no lock
            if await db.scalar(select(Execution.id).where(*due).limit(1)) is None:
                return 0, False
        pending = PendingEvents()
        async with self._db.transaction() as db:
            query = select(Execution).where(*due).order_by(Execution.created_at).limit(self._batch)
            if self._db.is_postgres:
                query = query.with_for_update(skip_locked=True)
            rows = list(await db.scalars(query))
            for row in rows:
                self._lose(db, pending, row, now, self._expired)
        pending.publish(self._bus)
        return len(rows), len(rows) == self._batch

    @property
    def _expired(self) -> str:
        hours = int(self._window.total_seconds() // 3600)
        return f"not answered within the agent's memory window ({hours} h): not sent again"

    # -- the agent's side: redelivery, updates, lost executions, output --------------------

    async def unfinished_among(self, db: AsyncSession, agent_ids: Sequence[str]) -> set[str]:
        """Which of ``agent_ids`` have unfinished executions, so that a ``Welcome`` to them is
        followed by a replay (``welcome``). One probe of the partial index of unfinished
        executions for a whole batch of Hellos (``hellos.py``): after a restart, every agent
        says Hello at about the same time, and almost none has anything to replay."""
        if not agent_ids:
            return set()
        rows = await db.scalars(
            select(Execution.agent_id)
            .where(
                self._db.among(Execution.agent_id, agent_ids, "agent_ids"),
                Execution.finished_at.is_(None),
            )
            .distinct()
        )
        return set(rows)

    async def welcome(self, session: Session, welcome: object, *, replay: bool = True) -> None:
        """Answer a ``Hello``: send ``welcome`` (the transport's ``Welcome``), then again what
        the agent has not answered; expire what is past the agent's memory window.

        ``replay=False``: the agent had nothing unfinished when its ``Hello`` was stored
        (``unfinished_among``, in the same transaction), so nothing is read here. A request
        stored since then is not lost: this session is not ``welcomed`` yet, so the request
        waits for the dispatch pass, which finds it unsent.

        The ``Welcome`` and the re-sent commands are queued together once the replay is
        committed, and only then is the session ``welcomed`` (commands may follow): a request
        stored meanwhile cannot overtake the ``Welcome``, nor be sent by both the replay and
        the dispatch pass; it is left to the pass, which finds it unsent. Also notes which
        executions the server holds as ``accepted``/``running``: those the agent neither
        mentions before its first ``Heartbeat`` nor lists in it are lost.

        Capacity: what was sent before and is unanswered is sent again (it holds its slot
        already); what is not at the agent (never sent, or handed back and past its back-off)
        goes out oldest first into the free slots, counted under the agent's row lock as in
        ``_claim_owed``. The rest waits for the dispatch pass.
        """
        agent_id = session.agent_id
        assert agent_id is not None
        session.welcomed = False  # again, on a repeated Hello: until the replay is queued
        now = self._clock.now()
        pending = PendingEvents()
        commands: list[ExecuteCommand | CancelCommand] = []
        held: set[str] = set()
        unfinished = Execution.agent_id == agent_id, Execution.finished_at.is_(None)
        if replay:
            async with self._db.transaction() as db:
                agent = (await self._agents(db, [agent_id], lock=True)).get(agent_id)
                capacity = agent[0] if agent is not None else limits.ASSUMED_CAPACITY
                query = select(Execution).where(*unfinished).order_by(Execution.id)
                if self._db.is_postgres:
                    query = query.with_for_update()
                rows: list[Execution] = []
                for row in (await db.scalars(query)).all():
                    if row.state == "pending" and row.created_at <= now - self._window:
                        self._lose(db, pending, row, now, self._expired)
                    else:
                        rows.append(row)
                free = capacity - sum(1 for row in rows if row.last_sent_at is not None)
                for row in rows:
                    if row.state != "pending":
                        held.add(row.execution_id)
                        if row.cancel_requested_at is not None:
                            row.cancel_sent_at = now
                            commands.append(self._cancel_again(row))
                    elif row.cancel_requested_at is not None:
                        row.cancel_sent_at = now
                        commands.append(self._cancel_again(row))
                    elif row.last_sent_at is not None or (
                        free > 0 and (row.send_after is None or row.send_after <= now)
                    ):
                        if row.last_sent_at is None:
                            free -= 1  # not at the agent: takes a free slot
                        row.sent_count += 1
                        row.last_sent_at = now
                        row.send_after = None
                        commands.append(self._command(row))
        session.unconfirmed = held or None
        pending.publish(self._bus)
        session.send(welcome)
        for command in commands:
            session.send(command)
        session.welcomed = True

    @staticmethod
    def _cancel_again(row: Execution) -> CancelCommand:
        at = isoformat(row.cancel_requested_at)
        return CancelCommand(row.execution_id, f"cancel requested at {at}, not yet answered")

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
            row = await self._find(db, report.execution_id, agent_id=session.agent_id, lock=True)
            if row is None:
                self._protocol.count("unknown_execution")
                log.warning(
                    "ignoring an update for an execution this agent was never sent",
                    extra={"agent_id": session.agent_id, "execution_id": report.execution_id[:64]},
                )
                return
            if row.state in FINAL:
                self._after_final(row, report.state)
                return
            if not _moves(row.state, report.state):
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
                    self._finish(db, pending, row, report, now, audit=session.actor)
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

    def _after_final(self, row: Execution, what: str) -> None:
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
                self._lose(
                    db,
                    pending,
                    row,
                    now,
                    "the agent reconnected without it: not running, and no final state replayed",
                )
        pending.publish(self._bus)
        if lost:
            self._on_slot_freed()

    async def output(self, session: Session, chunk: OutputChunk) -> None:
        """Store one output chunk; a repeated (execution, sequence) is a no-op.

        Bounded (``limits.py``): a chunk that is empty, over 16 KiB or numbered beyond what the
        database holds, or one for an execution the agent reported finished, ends the stream
        (``ProtocolViolation``) and nothing of it is stored. Past ``max_output_bytes`` of stored
        output, chunks are dropped and the execution's output is flagged truncated, so it never
        reads complete.
        """
        if session.unconfirmed is not None:
            session.unconfirmed.discard(chunk.execution_id)
        size = len(chunk.data)
        if size == 0:
            raise self._protocol.violation("empty_chunk", "an output chunk must hold data")
        if size > limits.MAX_CHUNK:
            raise self._protocol.violation(
                "chunk_too_large",
                f"an output chunk holds {size} bytes: at most {limits.MAX_CHUNK}",
            )
        if chunk.sequence > limits.MAX_SEQUENCE:
            raise self._protocol.violation(
                "bad_sequence", f"output chunk sequence numbers stop at {limits.MAX_SEQUENCE}"
            )
        now = self._clock.now()
        async with self._db.transaction() as db:
            # Locked: the bytes stored so far decide whether this chunk fits.
            row = await self._find(db, chunk.execution_id, agent_id=session.agent_id, lock=True)
            if row is None:
                self._protocol.count("unknown_execution")
                log.warning(
                    "ignoring output for an execution this agent was never sent",
                    extra={"agent_id": session.agent_id, "execution_id": chunk.execution_id[:64]},
                )
                return
            if row.state in FINAL:
                self._after_final(row, "output")
                return
            if row.output_bytes + size > self._max_output:
                self._protocol.count("output_cap")
                if not row.output_truncated:
                    log.warning(
                        "output of execution %s reached the cap of %d bytes: dropping the rest",
                        row.execution_id,
                        self._max_output,
                        extra={"agent_id": session.agent_id, "execution_id": row.execution_id},
                    )
                    row.output_truncated = True
                    row.updated_at = now
                return
            insert = pg_insert if self._db.is_postgres else sqlite_insert
            result = await db.execute(
                insert(ExecutionOutput)
                .values(
                    execution_id=row.id,
                    sequence=chunk.sequence,
                    stream=chunk.stream,
                    data=chunk.data,
                    truncated=chunk.truncated,
                    received_at=now,
                )
                .on_conflict_do_nothing(index_elements=["execution_id", "sequence"])
            )
            stored = _rowcount(result) == 1
            if stored:
                row.output_bytes += size
        if stored:
            self._bus.publish(
                "execution.output",
                now,
                execution_id=row.execution_id,
                agent_id=row.agent_id,
                sequence=chunk.sequence,
                stream=chunk.stream,
                data=chunk.data.decode("utf-8", errors="replace"),
                truncated=chunk.truncated,
            )

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
            self._fail(db, pending, row, now, reason, detail, actor)
        return len(rows)

    def _lose(
        self, db: AsyncSession, pending: PendingEvents, row: Execution, now: datetime, detail: str
    ) -> None:
        self._fail(db, pending, row, now, "lost", detail, SYSTEM)

    def _fail(
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
        self._finish(
            db,
            pending,
            row,
            ExecutionUpdate(row.execution_id, "failed", reason, detail, output_chunks=None),
            now,
            audit=actor,
            result=reason,
        )
        pending.add("execution.updated", now, execution=execution_to_dict(row))

    def _finish(
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
        row.reason = _text(report.reason, 64)
        row.detail = _text(report.detail, 1000)
        row.exit_code = report.exit_code
        row.signal = report.signal
        # None: unknown (lost), so the stored output can never be called complete.
        row.output_chunks = None if report.output_chunks is None else _count(report.output_chunks)
        row.output_truncated = row.output_truncated or report.output_truncated
        row.duration_ms = (
            None
            if report.duration_ms is None or report.state == "rejected"
            else _count(report.duration_ms)
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
            self._refusals.labels(_label(row.reason)).inc()
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

    # -- reading -------------------------------------------------------------------------------

    async def get(self, execution_id: str, *, output: str = "text") -> dict[str, Any]:
        """One execution with its output per stream: ``text`` (UTF-8, invalid bytes replaced)
        or ``raw`` (base64). ``output_complete``: every chunk the agent said it sent is here."""
        if output not in ("text", "raw"):
            raise ValidationError("output must be text or raw", field="output")
        async with self._db.sessions() as db:
            row = await self._find(db, execution_id, lock=False)
            if row is None:
                raise NotFound(f"no execution {quote(execution_id)}")
            chunks = (
                await db.execute(
                    select(ExecutionOutput.sequence, ExecutionOutput.stream, ExecutionOutput.data)
                    .where(ExecutionOutput.execution_id == row.id)
                    .order_by(ExecutionOutput.sequence)
                )
            ).all()
        streams = {"stdout": bytearray(), "stderr": bytearray()}
        for _, stream, data in chunks:
            streams.setdefault(stream, bytearray()).extend(data)
        expected = row.output_chunks
        body = execution_to_dict(row)
        body["output_complete"] = (
            row.state in FINAL
            and expected is not None
            and sum(1 for sequence, _, _ in chunks if sequence < expected) == expected
        )
        encode: Callable[[bytes], str] = (
            (lambda b: b.decode("utf-8", errors="replace"))
            if output == "text"
            else (lambda b: base64.b64encode(b).decode("ascii"))
        )
        body["output"] = {
            "encoding": "text" if output == "text" else "base64",
            "stdout": encode(bytes(streams["stdout"])),
            "stderr": encode(bytes(streams["stderr"])),
            "chunks_received": len(chunks),
        }
        return body

    async def list(
        self,
        *,
        agent: str | None = None,
        state: str | None = None,
        cursor: str | None = None,
        limit: int | None = None,
        agent_must_exist: bool = False,
    ) -> Page[dict[str, Any]]:
        """Executions newest first (filters: ``agent`` id, ``state``), cursor-paged."""
        size = check_limit(limit)
        last = decode_cursor(cursor)
        query = select(Execution)
        if state is not None:
            if state not in STATES:
                raise ValidationError(f"state must be one of {', '.join(STATES)}", field="state")
            query = query.where(Execution.state == state)
        if agent is not None:
            query = query.where(Execution.agent_id == agent)
        if last is not None:
            query = query.where(Execution.id < last)
        async with self._db.sessions() as db:
            if agent_must_exist:
                known = await db.scalar(
                    select(func.count()).select_from(Agent).where(Agent.agent_id == agent)
                )
                if not known:
                    raise NotFound(f"no agent {quote(agent)}")
            rows = list(await db.scalars(query.order_by(Execution.id.desc()).limit(size + 1)))
        items = [execution_to_dict(row) for row in rows]
        return page_of(items, size, rows[size - 1].id if len(rows) > size else None)
