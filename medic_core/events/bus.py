"""In-process publish/subscribe.

Publishers never wait for subscribers: ``publish`` puts the event on each subscriber's bounded
queue and returns. Each subscriber drains its queue in its own task, so a slow or failing
subscriber (a plugin, a WebSocket client) cannot stall ingest or the monitor; its exceptions are
logged and counted and the next event is delivered as usual. Events are published only after the
change they describe is committed. The same ``Event`` shape is what later crosses replicas
(PostgreSQL LISTEN/NOTIFY) and reaches the UI (WebSocket).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from medic_core.clock import isoformat
from medic_core.observability.metrics import Metrics

log = logging.getLogger(__name__)
Handler = Callable[["Event"], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class Event:
    """Something that happened. ``type`` is ``<resource>.<verb>``, e.g. ``alert.opened``."""

    type: str
    at: datetime
    data: dict[str, Any] = field(default_factory=dict)
    id: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "type": self.type, "at": isoformat(self.at), "data": self.data}


class _Subscription:
    def __init__(self, name: str, handler: Handler, maxsize: int) -> None:
        self.name = name
        self.handler = handler
        self.queue: asyncio.Queue[Event] = asyncio.Queue(maxsize)
        self.task: asyncio.Task[None] | None = None


class EventBus:
    def __init__(self, metrics: Metrics, *, queue_size: int = 10_000) -> None:
        self._metrics = metrics
        self._queue_size = queue_size
        self._subs: list[_Subscription] = []
        self._ids = itertools.count(1)
        self._running = False

    def subscribe(self, name: str, handler: Handler) -> None:
        sub = _Subscription(name, handler, self._queue_size)
        self._subs.append(sub)
        if self._running:
            sub.task = asyncio.create_task(self._deliver(sub), name=f"events:{name}")

    @property
    def subscribers(self) -> list[str]:
        return [s.name for s in self._subs]

    def publish(self, type_: str, at: datetime, **data: Any) -> Event:
        event = Event(type=type_, at=at, data=data, id=next(self._ids))
        for sub in self._subs:
            try:
                sub.queue.put_nowait(event)
            except asyncio.QueueFull:
                self._metrics.events_dropped.labels(sub.name).inc()
                log.warning("event dropped: subscriber queue full", extra={"subscriber": sub.name})
        return event

    async def stream(self, name: str, maxsize: int = 1000) -> AsyncIterator[Event]:
        """Iterate over events from now on (for WebSocket clients and tests)."""
        queue: asyncio.Queue[Event] = asyncio.Queue(maxsize)

        async def _put(event: Event) -> None:
            await queue.put(event)

        sub = _Subscription(name, _put, maxsize)
        self._subs.append(sub)
        if self._running:
            sub.task = asyncio.create_task(self._deliver(sub))
        try:
            while True:
                yield await queue.get()
        finally:
            self._subs.remove(sub)
            if sub.task:
                sub.task.cancel()

    async def start(self) -> None:
        self._running = True
        for sub in self._subs:
            if sub.task is None:
                sub.task = asyncio.create_task(self._deliver(sub), name=f"events:{sub.name}")

    async def drain(self, timeout: float = 5.0) -> None:
        """Wait until every subscriber has handled every event published so far."""
        async with asyncio.timeout(timeout):
            for sub in list(self._subs):
                await sub.queue.join()

    async def stop(self, timeout: float = 5.0) -> None:
        try:
            await self.drain(timeout)
        except TimeoutError:
            log.warning("event bus stopped with undelivered events")
        self._running = False
        for sub in self._subs:
            if sub.task:
                sub.task.cancel()
        await asyncio.gather(*(s.task for s in self._subs if s.task), return_exceptions=True)
        for sub in self._subs:
            sub.task = None

    async def _deliver(self, sub: _Subscription) -> None:
        while True:
            event = await sub.queue.get()
            try:
                await sub.handler(event)
            except asyncio.CancelledError:
                raise
            except Exception:
                self._metrics.event_handler_errors.labels(sub.name).inc()
                log.exception(
                    "event subscriber failed", extra={"subscriber": sub.name, "event": event.type}
                )
            finally:
                sub.queue.task_done()


class PendingEvents:
    """Events gathered inside a transaction, published only once it has committed."""

    def __init__(self) -> None:
        self.items: list[tuple[str, datetime, dict[str, Any]]] = []

    def add(self, type_: str, at: datetime, **data: Any) -> None:
        self.items.append((type_, at, data))

    def publish(self, bus: EventBus) -> None:
        for type_, at, data in self.items:
            bus.publish(type_, at, **data)
        self.items.clear()
