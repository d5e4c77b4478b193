"""Presence: which agents are online, and when each was last heard from (table ``agents``).

A stored ``Hello`` makes an agent ``online`` with its session id (``hellos.py``); messages from
the agent move ``last_seen`` (and its silence deadline ``next_due``), and the end of a stream
marks it ``offline``. Both are batched: every mark pending when a flush starts is written in one
transaction, so 10,000 agents heartbeating every 30 s, or 10,000 streams ending at once (a
shutdown), cost a few transactions, not one per agent. Every write that concerns a stream is
conditional on its session id, so a stale stream (replaced here or on another replica) can
never mark a reconnected agent offline; a ``last_seen`` mark of such a stream ends it instead,
so its agent reconnects and says ``Hello`` again.

What a missed deadline means (offline, then alerted) is the offline watch's (``watch.py``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Collection
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import Table, bindparam, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from medic_core.agent.sessions import Session, Sessions
from medic_core.clock import Clock
from medic_core.events import EventBus
from medic_core.observability.metrics import Metrics
from medic_core.store import Database
from medic_core.store.models import Agent

log = logging.getLogger(__name__)

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


class Presence:
    """The ``last_seen`` and offline marks of the streams of this process."""

    def __init__(
        self,
        db: Database,
        clock: Clock,
        bus: EventBus,
        metrics: Metrics,
        sessions: Sessions,
        *,
        silence: timedelta,
        alert_after: timedelta,
        seen_every: float,
        on_offline: Callable[[], None],
    ) -> None:
        self._db = db
        self._clock = clock
        self._bus = bus
        self._sessions = sessions
        self._silence = silence
        self._alert_after = alert_after
        self._seen_every = seen_every
        self._on_offline = on_offline  # an agent went offline: its alert deadline is set
        self._transitions = metrics.agent_transitions
        self._seen: dict[str, tuple[str, datetime]] = {}
        self._flushing: asyncio.Task[None] | None = None
        self._hurry = asyncio.Event()  # set: write pending marks now (settle, stop)
        # Offline marks of ended streams: (agent id, session id) -> (when, why).
        self._gone: dict[tuple[str, str], tuple[datetime, str]] = {}
        self._marking: asyncio.Task[None] | None = None

    def forget(self, agent_id: str) -> None:
        """A ``Hello`` of ``agent_id`` was stored: its pending ``last_seen`` mark is stale."""
        self._seen.pop(agent_id, None)

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
        self._sessions.remove(session)
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
            self._on_offline()
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
