"""The open agent streams of this process: one ``Session`` per stream, and ``Sessions``, the
registry that keeps one per agent id.

A ``Session`` writes what it is sent through its transport (the gRPC endpoint's call,
``medic_core/server/grpc/endpoint.py``), which it knows only as the ``Transport`` protocol
below: the agent domain imports no transport. One session per agent id: registering a newer
one (a ``Hello`` stored for the same id, ``hub.py``) ends the older stream ``replaced``, so
exactly one stream speaks for an agent in this process (across replicas, the stored session id
decides: ``presence.py``).
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Collection
from dataclasses import dataclass
from typing import Protocol

from medic_core.audit import Actor
from medic_core.observability.metrics import Metrics

log = logging.getLogger(__name__)


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


class Sessions:
    """The streams speaking for agents in this process, by agent id (``medic_agents_connected``
    counts them)."""

    def __init__(self, metrics: Metrics) -> None:
        self._by_agent: dict[str, Session] = {}
        self._connected = metrics.agents_connected

    def get(self, agent_id: str) -> Session | None:
        """The stream speaking for ``agent_id`` in this process, if any."""
        return self._by_agent.get(agent_id)

    def values(self) -> Collection[Session]:
        return self._by_agent.values()

    def register(self, session: Session, agent_id: str) -> None:
        """``session`` speaks for ``agent_id`` from now on: an older stream of it is ended."""
        older = self._by_agent.get(agent_id)
        if older is not None and older is not session:
            older.end("replaced", "replaced by a newer stream of the same agent")
        session.agent_id = agent_id
        self._by_agent[agent_id] = session
        self._connected.set(len(self._by_agent))

    def remove(self, session: Session) -> None:
        """The stream of ``session`` ended: it no longer speaks for its agent (if it still did)."""
        if session.agent_id is not None and self._by_agent.get(session.agent_id) is session:
            del self._by_agent[session.agent_id]
            self._connected.set(len(self._by_agent))

    def end_all(self, reason: str, detail: str) -> None:
        for session in list(self._by_agent.values()):
            session.end(reason, detail)
