"""The queue of executions and its dispatch, within each agent's capacity.

- **Capacity**: an agent runs at most ``agents.max_concurrent`` executions at once (its
  ``Hello``; ``limits.ASSUMED_CAPACITY`` when it does not say). Sent and unfinished, an
  execution holds one of its agent's slots; what does not fit stays ``pending`` and goes out,
  oldest first, as answers free slots (each final answer wakes the dispatch pass). Every send
  that takes a slot happens in a transaction that first locks the agent's row (``FOR NO KEY
  UPDATE`` on PostgreSQL; SQLite's write lock is the whole database's) and then counts the
  agent's slots in use, so two transactions -- two replicas, or a request and the pass -- never
  both take the last slot (``_claim_owed``).
- **First send** (``send_first``): a just-stored request goes out at once when its agent's
  stream is here and a slot is free.
- **Across replicas** (``dispatch``, run by the dispatch pass, ``dispatch.py``): each replica
  agents connect to looks, every second or so (and at once when an answer frees a slot), for
  executions not at their agent and cancels not sent yet of the agents connected to it, and
  sends them. Every send is claimed with a conditional update first, so two replicas (or a
  request and the pass) never both send the same one, and ``sent_count`` counts what went out.
- **Redelivery** (``welcome``): after every ``Welcome`` each unanswered (``pending``) execution
  sent before is sent again (``Cancel`` instead, when a cancel was asked for), and those never
  sent or handed back go out as far as the agent's free slots allow, unless older than the
  agent's memory window: then it is failed ``lost``, never sent again.
- **Expiry** (``expire``, run by the offline watch, ``watch.py``): an execution still
  unanswered past the memory window fails ``lost`` even if its agent never comes back.

The stream a command goes out on is found through the hub's ``session`` lookup
(``sessions.py``).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from datetime import datetime, timedelta

from sqlalchemy import ColumnElement, and_, case, func, or_, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession

from medic_core.agent import limits
from medic_core.agent.execution_finals import Finals
from medic_core.agent.execution_values import CancelCommand, ExecuteCommand, rowcount
from medic_core.agent.sessions import Session
from medic_core.clock import Clock, isoformat
from medic_core.events import EventBus, PendingEvents
from medic_core.store import Database
from medic_core.store.models import EXECUTIONS_OWED, Agent, Execution


def _capacity(max_concurrent: int | None) -> int:
    """How many executions an agent runs at once: what it advertised, else the agent's default."""
    return max_concurrent or limits.ASSUMED_CAPACITY


#: An owed ``Cancel``: asked for, not sent since.
_CANCEL_OWED = and_(Execution.cancel_requested_at.is_not(None), Execution.cancel_sent_at.is_(None))


class ExecutionQueue:
    def __init__(
        self,
        db: Database,
        clock: Clock,
        bus: EventBus,
        sessions: Callable[[str], Session | None],
        finals: Finals,
        *,
        memory_window: timedelta,
        batch_size: int,
    ) -> None:
        self._db = db
        self._clock = clock
        self._bus = bus
        self._sessions = sessions
        self._finals = finals
        self._window = memory_window
        self._batch = batch_size

    def live(self, agent_id: str) -> Session | None:
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
        return rowcount(result) == 1

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
        return rowcount(result) == 1

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

    def _command(self, row: Execution) -> ExecuteCommand:
        return ExecuteCommand(
            execution_id=row.execution_id,
            script=row.script,
            args=tuple(row.args or []),
            env=dict(row.env_values or {}),
            timeout_seconds=row.timeout_seconds or 0,
            expected_sha256=row.expected_sha256,
        )

    async def send_first(self, row: Execution) -> bool:
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
        session = self.live(row.agent_id)
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

    @staticmethod
    async def is_current(db: AsyncSession, session: Session) -> bool:
        current = await db.scalar(
            select(Agent.session_id).where(Agent.agent_id == session.agent_id)
        )
        return current == session.session_id

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
                self._finals.lose(db, pending, row, now, self._expired)
        pending.publish(self._bus)
        return len(rows), len(rows) == self._batch

    @property
    def _expired(self) -> str:
        hours = int(self._window.total_seconds() // 3600)
        return f"not answered within the agent's memory window ({hours} h): not sent again"

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
                        self._finals.lose(db, pending, row, now, self._expired)
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
