"""Group commit: requests wait on a bounded queue, one task writes what is queued in one
transaction, and each request is answered once that transaction committed.

Many requests share one commit (one fsync, one connection checkout): that is where the heartbeat
writer's throughput comes from (``heartbeats/writer.py``), and how a fleet of agents saying
Hello after a restart is welcomed in seconds (``agent/hellos.py``). What both share lives here:

- the bounded queue (its requester checks ``free`` before ``enqueue``) and the one task that
  takes up to ``max_batch`` queued items at a time;
- the database failing (``store/faults.py``: unreachable, full, read-only, too slow): the batch
  and everything queued behind it fail ``Unavailable``, and the ``DatabaseBreaker`` opens: for
  its interval (0.25 s doubling to 2 s, ``refusing``) new items are refused at once; the first
  batch after it is the probe, and when it commits the breaker closes. The breaker is the one
  given (the heartbeat writer shares the server's with API-key lookups and readiness) or one of
  its own; it also logs the outage in a few lines, not one per batch;
- any other failure of a batch (a bug, a corrupt row): the batch is retried one item per
  transaction, so only the culprit fails and its neighbours are written (with
  ``retry_conflicts``, a lone item that lost a unique-index race to another process is tried
  once more: the second try finds the other's rows);
- stopping: the queued items are written first (``drain_on_stop``) or refused, the batch being
  written is finished, then the task ends.

A subclass writes a batch and answers its items (``_commit``), and says how a failure reads
(``_unreachable``, ``_failed_alone``) and is counted (``_count_outage``, ``_depth``).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Generic, Protocol, TypeVar

from sqlalchemy.exc import IntegrityError

from medic_core.errors import MedicError, Unavailable
from medic_core.observability.tracing import tracer
from medic_core.store.breaker import DatabaseBreaker
from medic_core.store.faults import classify

log = logging.getLogger(__name__)


class Queued(Protocol):
    """An item waiting to be written: its request waits on ``future``."""

    @property
    def future(self) -> asyncio.Future[Any]: ...


ItemT = TypeVar("ItemT", bound=Queued)


class GroupCommit(Generic[ItemT]):
    #: Try a lone item once more when it failed on a unique index (see the module's doc).
    retry_conflicts = False
    #: ``stop`` writes what is queued (else it refuses it).
    drain_on_stop = True

    def __init__(
        self,
        name: str,
        *,
        queue_size: int,
        max_batch: int,
        breaker: DatabaseBreaker | None = None,
    ) -> None:
        self._name = name  # what is written, in logs and the span's name
        self._queue: asyncio.Queue[ItemT] = asyncio.Queue(queue_size)
        self._max_batch = max_batch
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self._breaker = breaker or DatabaseBreaker(subject=f"the database ({name})")

    # -- the requests' side --------------------------------------------------------------------

    @property
    def closed(self) -> bool:
        """Not started, or stopping: nothing more is taken."""
        return self._closing or self._task is None

    @property
    def refusing(self) -> bool:
        """In the back-off after the database failed (the breaker is open)."""
        return self._breaker.refusing

    @property
    def refusing_for(self) -> int:
        """Whole seconds left of the back-off (at least 1): a Retry-After."""
        return self._breaker.retry_after

    @property
    def _backoff(self) -> float:
        """The breaker's current interval (0 when the database works)."""
        return self._breaker.interval

    @property
    def free(self) -> int:
        """How many more items the queue takes."""
        return self._queue.maxsize - self._queue.qsize()

    def enqueue(self, item: ItemT) -> None:
        """Queue ``item`` (the caller checked ``free``)."""
        self._queue.put_nowait(item)
        self._depth(self._queue.qsize())

    # -- lifecycle -----------------------------------------------------------------------------

    async def start(self) -> None:
        self._closing = False
        self._task = asyncio.create_task(self._run(), name=self._name)

    async def stop(self, timeout: float = 10.0) -> None:
        """Take nothing more; write the queued items first (``drain_on_stop``) or refuse them
        (``_shutting_down``); finish the batch being written (at most ``timeout`` s); stop."""
        self._closing = True
        if self._task is None:
            return
        error = self._shutting_down()
        if not self.drain_on_stop:
            self._fail_queued(error)
        try:
            async with asyncio.timeout(timeout):
                await self._queue.join()
        except TimeoutError:
            log.error("%s stopped with %d not written", self._name, self._queue.qsize())
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)
        self._task = None
        self._fail_queued(error)

    # -- the task ------------------------------------------------------------------------------

    async def _run(self) -> None:
        while True:
            batch = [await self._queue.get()]
            while len(batch) < self._max_batch and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            self._depth(self._queue.qsize())
            try:
                live = self._take(batch)
                if live:
                    await self._write_batch(live)
            finally:
                for _ in batch:
                    self._queue.task_done()

    def _take(self, batch: list[ItemT]) -> list[ItemT]:
        """The items of ``batch`` to write: those whose request still waits (one that went
        away cancelled its future)."""
        return [item for item in batch if not item.future.done()]

    async def _write_batch(self, batch: list[ItemT], *, again: bool = False) -> None:
        breaker = self._breaker
        if self.refusing:
            self._refuse(batch)
            return
        try:
            with tracer.start_as_current_span(f"{self._name}.write_batch") as span:
                span.set_attribute("medic.batch_size", len(batch))
                await self._commit(batch)
        except Exception as exc:
            cause = classify(exc)
            if cause is not None:
                breaker.failed(cause, exc)
                self._refuse(batch)
                self._refuse([])
                return
            breaker.released()  # the database answered; this batch is at fault
            if len(batch) > 1:
                # One bad item must not cost the others that shared its transaction: write them
                # one by one, so only the culprit fails.
                log.warning(
                    "%s batch of %d failed (%s); retrying one by one", self._name, len(batch), exc
                )
                for item in batch:
                    await self._write_batch([item])
            elif self.retry_conflicts and isinstance(exc, IntegrityError) and not again:
                await self._write_batch(batch, again=True)
            else:
                self._fail(batch, self._failed_alone(batch[0], exc))
            return
        breaker.succeeded(wrote=True)

    def _refuse(self, batch: list[ItemT]) -> None:
        """Fail ``batch`` (none: everything queued) because the database is failing."""
        error = self._unreachable()
        if batch:
            self._fail(batch, error)
            count = len(batch)
        else:
            count = self._fail_queued(error)
        self._count_outage(count)
        self._breaker.refused(self._breaker.cause or "unreachable", count)

    def _fail(self, batch: list[ItemT], error: MedicError) -> None:
        for item in batch:
            if not item.future.done():
                item.future.set_exception(error)

    def _fail_queued(self, error: MedicError) -> int:
        """Fail everything queued with ``error``; return how many were."""
        failed = 0
        while not self._queue.empty():
            item = self._queue.get_nowait()
            if not item.future.done():
                item.future.set_exception(error)
                failed += 1
            self._queue.task_done()
        self._depth(0)
        return failed

    # -- what a subclass says ------------------------------------------------------------------

    async def _commit(self, batch: list[ItemT]) -> None:
        """Write ``batch`` in one transaction, then answer each item's future."""
        raise NotImplementedError

    def _unreachable(self) -> Unavailable:
        """The error of an item refused because the database is failing (the breaker's
        ``cause`` says how)."""
        raise NotImplementedError

    def _failed_alone(self, item: ItemT, exc: Exception) -> MedicError:
        """The error of an item that failed in a transaction of its own (log it here)."""
        raise NotImplementedError

    def _shutting_down(self) -> Unavailable:
        """The error of an item refused because the process is stopping."""
        return Unavailable("Medic is shutting down; retry shortly", retry_after=2)

    def _count_outage(self, count: int) -> None:
        """``count`` items were refused because the database is failing."""

    def _depth(self, depth: int) -> None:
        """The queue holds ``depth`` items now."""
