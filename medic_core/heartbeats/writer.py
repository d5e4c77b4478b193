"""The group-commit heartbeat writer.

Requests put their heartbeat on a bounded queue and wait. One task takes everything queued (up
to ``max_batch``), applies it in one transaction and commits; only then are the waiting requests
answered. Many requests share one commit (one fsync), which is where throughput comes from: a
2xx always means the heartbeat is on disk.

Back-pressure and failure are explicit:
- a full queue refuses at once (``Unavailable``, HTTP 503 with Retry-After) instead of letting
  connections pile up;
- when the database fails (unreachable, full, read-only, too slow) the batch fails, everything
  queued behind it fails too, and the server's ``DatabaseBreaker`` opens: for a short, growing
  interval new heartbeats are refused immediately, with a problem type naming the cause. The
  first heartbeat after it is the probe: when the database is back, ingest resumes by itself;
- a request waits at most ``timeout`` seconds (``MEDIC_DB_REQUEST_TIMEOUT``) for its commit;
  then it is answered 503 "database too slow" (the heartbeat may still be stored if its batch
  was being written: the message says so) and the breaker counts a ``slow`` failure.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, cast

import orjson
from sqlalchemy import Table, bindparam, insert, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession

from medic_core.alerts import AlertBook
from medic_core.clock import Clock
from medic_core.deadlines import Expectation, parse_expectation
from medic_core.errors import (
    DatabaseUnavailable,
    MedicError,
    NotFound,
    Unavailable,
    database_unavailable,
)
from medic_core.events import EventBus, PendingEvents
from medic_core.heartbeats.model import HeartbeatIn, StoredHeartbeat
from medic_core.observability.metrics import Metrics
from medic_core.services.deadlines import display_state, later, record_beat
from medic_core.store import Database
from medic_core.store.breaker import DatabaseBreaker
from medic_core.store.group_commit import GroupCommit
from medic_core.store.models import Heartbeat, JobRun, Service
from medic_core.validation import quote

log = logging.getLogger(__name__)
_HEARTBEATS = cast(Table, Heartbeat.__table__)
_SERVICES = cast(Table, Service.__table__)
_BRIEF = (
    _SERVICES.c.id,
    _SERVICES.c.slug,
    _SERVICES.c.state,
    _SERVICES.c.expectation,
    _SERVICES.c.grace,
    _SERVICES.c.recent_beats,
    _SERVICES.c.expected_at,
    _SERVICES.c.last_heartbeat_at,
)
_NOT_STORED = "the heartbeat was NOT stored, retry shortly"
#: States in which an ``ok`` heartbeat changes nothing but the deadline (and new -> up).
_FAST_STATES = ("new", "up")
_UPDATE_BEAT = (
    update(_SERVICES)
    .where(_SERVICES.c.id == bindparam("b_id"))
    .values(
        state=bindparam("b_state"),
        last_status=bindparam("b_last_status"),
        last_heartbeat_at=bindparam("b_last_heartbeat_at"),
        expected_at=bindparam("b_expected_at"),
        next_due=bindparam("b_next_due"),
        recent_beats=bindparam("b_recent_beats"),
    )
)

_UPDATE_BEAT_PG = text(
    """
    UPDATE services AS s
    SET state = v.state, last_status = 'ok', last_heartbeat_at = v.beat,
        expected_at = v.expected, next_due = v.due, recent_beats = CAST(v.recent AS JSONB)
    FROM unnest(
        CAST(:ids AS BIGINT[]), CAST(:states AS VARCHAR[]), CAST(:beats AS TIMESTAMPTZ[]),
        CAST(:expected AS TIMESTAMPTZ[]), CAST(:due AS TIMESTAMPTZ[]), CAST(:recent AS TEXT[])
    ) AS v(id, state, beat, expected, due, recent)
    WHERE s.id = v.id
    """
)


@dataclass(slots=True)
class _Beating:
    """The columns of a service the fast path reads and writes (see ``_write``)."""

    id: int
    slug: str
    state: str
    expectation: dict[str, Any]
    grace: int
    recent_beats: list[str]
    expected_at: datetime | None
    last_heartbeat_at: datetime | None
    next_due: datetime | None = None
    parsed: Expectation | None = None

    @classmethod
    def from_row(cls, row: Any) -> _Beating:
        return cls(
            row.id,
            row.slug,
            row.state,
            row.expectation,
            row.grace,
            list(row.recent_beats or []),
            row.expected_at,
            row.last_heartbeat_at,
        )

    def beat(self, at: datetime, pending: PendingEvents, deadlines: list[datetime]) -> None:
        if self.parsed is None:
            self.parsed = parse_expectation(self.expectation)
        # The row was read under its lock (FOR UPDATE / SQLite's write lock), so
        # ``last_heartbeat_at`` is what other replicas committed: never write an older one.
        record_beat(self, at, self.parsed, last=self.last_heartbeat_at)
        self.last_heartbeat_at = later(self.last_heartbeat_at, at)
        if self.next_due is not None:
            deadlines.append(self.next_due)
        if self.state != "up":
            pending.add("service.state_changed", at, slug=self.slug, state="up", was=self.state)
            self.state = "up"

    def params(self) -> dict[str, object]:
        return {
            "b_id": self.id,
            "b_state": self.state,
            "b_last_status": "ok",
            "b_last_heartbeat_at": self.last_heartbeat_at,
            "b_expected_at": self.expected_at,
            "b_next_due": self.next_due,
            "b_recent_beats": self.recent_beats,
        }


@dataclass(slots=True)
class _Item:
    hb: HeartbeatIn
    received_at: datetime
    future: asyncio.Future[StoredHeartbeat]
    queued: float = field(default_factory=time.monotonic)


class HeartbeatWriter(GroupCommit[_Item]):
    def __init__(
        self,
        db: Database,
        clock: Clock,
        bus: EventBus,
        metrics: Metrics,
        alerts: AlertBook,
        *,
        queue_size: int = 10_000,
        max_batch: int = 500,
        on_deadline: Callable[[datetime], None] = lambda _at: None,
        breaker: DatabaseBreaker | None = None,
        timeout: float = 2.0,
    ) -> None:
        super().__init__("heartbeats", queue_size=queue_size, max_batch=max_batch, breaker=breaker)
        self._timeout = timeout
        self._db = db
        self._clock = clock
        self._bus = bus
        self._metrics = metrics
        self._alerts = alerts
        self._on_deadline = on_deadline

    # -- the API side --------------------------------------------------------------------------

    def _check_open(self, count: int) -> bool:
        """Refuse now, or return whether this request is the breaker's probe."""
        if self.closed:
            raise Unavailable("Medic is shutting down; retry shortly", retry_after=2)
        try:
            probe = self._breaker.admit(_NOT_STORED)
        except DatabaseUnavailable as exc:
            self._metrics.heartbeats_rejected.labels(f"db_{exc.cause}").inc(count)
            raise
        if count > self.free:
            if probe:
                self._breaker.released()
            self._metrics.heartbeats_rejected.labels("queue_full").inc(count)
            raise Unavailable(
                "ingest is saturated (writer queue full); the heartbeat was NOT stored, "
                "retry shortly",
                retry_after=1,
            )
        return probe

    async def _wait(
        self, futures: list[asyncio.Future[StoredHeartbeat]]
    ) -> DatabaseUnavailable | None:
        """Wait for ``futures`` at most ``timeout`` seconds; those not answered by then are
        cancelled and the error for them ("too slow") is returned."""
        # wait() never cancels the futures (a client hanging up must not cancel a heartbeat
        # in a batch), and costs one callback per item instead of gather's two futures.
        _, late = await asyncio.wait(futures, timeout=self._timeout)
        if not late:
            return None
        # Not taken yet: cancelled, so never written. Taken: its batch may still commit.
        for future in late:
            future.cancel()
        self._breaker.failed("slow", f"a heartbeat waited {self._timeout:g} s for its commit")
        self._metrics.heartbeats_rejected.labels("db_slow").inc(len(late))
        return database_unavailable(
            "slow",
            "the heartbeat may or may not be stored (its commit did not finish in time), "
            "retry shortly",
            retry_after=self._breaker.retry_after,
        )

    def _enqueue(self, hb: HeartbeatIn) -> asyncio.Future[StoredHeartbeat]:
        future: asyncio.Future[StoredHeartbeat] = asyncio.get_running_loop().create_future()
        self.enqueue(_Item(hb, self._clock.now(), future))
        return future

    async def submit(self, hb: HeartbeatIn) -> StoredHeartbeat:
        """Store one heartbeat; return once it is committed (or raise why it was not)."""
        self._check_open(1)
        future = self._enqueue(hb)
        late = await self._wait([future])
        if late is not None:
            raise late
        return future.result()

    async def submit_many(self, hbs: list[HeartbeatIn]) -> list[StoredHeartbeat | MedicError]:
        """Store several heartbeats; each gets its own result (stored, or the error for it)."""
        self._check_open(len(hbs))
        futures = [self._enqueue(hb) for hb in hbs]
        late = await self._wait(futures)
        results: list[StoredHeartbeat | MedicError] = []
        for future in futures:
            if future.cancelled() and late is not None:
                results.append(late)
                continue
            error = future.exception()
            if error is None:
                results.append(future.result())
            elif isinstance(error, MedicError):
                results.append(error)
            else:
                raise error
        return results

    # -- the writer task (GroupCommit: the queue, outages, one-by-one retries) -----------------

    async def _commit(self, batch: list[_Item]) -> None:
        results, pending, deadlines = await self._write(batch)
        committed = time.monotonic()
        self._metrics.writer_batch_size.observe(len(batch))
        stored: dict[str, int] = {}
        latency = self._metrics.ingest_latency
        for item, result in zip(batch, results, strict=True):
            if isinstance(result, StoredHeartbeat):
                stored[result.status] = stored.get(result.status, 0) + 1
                latency.observe(committed - item.queued)
            if not item.future.done():
                if isinstance(result, MedicError):
                    item.future.set_exception(result)
                else:
                    item.future.set_result(result)
        # One labelled increment per status, not per heartbeat: labels() is a dict lookup
        # behind a lock and showed up at ~8% of the writer's CPU.
        for status, count in stored.items():
            self._metrics.heartbeats.labels(status).inc(count)
        pending.publish(self._bus)
        if deadlines:
            self._on_deadline(min(deadlines))

    def _unreachable(self) -> Unavailable:
        return self._breaker.error(_NOT_STORED)

    def _failed_alone(self, item: _Item, exc: Exception) -> MedicError:
        log.error("heartbeat failed", exc_info=exc, extra={"service": item.hb.service})
        return MedicError("the heartbeat could not be stored (internal error)")

    def _count_outage(self, count: int) -> None:
        cause = self._breaker.cause or "unreachable"
        self._metrics.heartbeats_rejected.labels(f"db_{cause}").inc(count)

    def _depth(self, depth: int) -> None:
        self._metrics.writer_queue_depth.set(depth)

    async def _write(
        self, batch: list[_Item]
    ) -> tuple[list[StoredHeartbeat | MedicError], PendingEvents, list[datetime]]:
        """Apply a batch in one transaction.

        Most heartbeats are plain ``ok`` beats of a service that is up (or new): they only move
        the deadline. Those take the fast path -- service columns read as plain rows, written
        back with one ``executemany`` UPDATE -- because loading and flushing ORM objects was
        most of the writer's CPU. A service with anything else in the batch (a job signal, a
        recovery from ``down``, a pause) is loaded as an ORM object and goes through ``_apply``,
        which may open or resolve alerts and record job runs.
        """
        pending = PendingEvents()
        deadlines: list[datetime] = []
        results: list[StoredHeartbeat | MedicError | None] = []
        rows: list[dict[str, object]] = []
        applied: list[tuple[int, _Beating | Service]] = []
        async with self._db.transaction() as session:
            query = (
                select(*_BRIEF)
                .where(_SERVICES.c.slug.in_(sorted({i.hb.service for i in batch})))
                .order_by(_SERVICES.c.id)
            )
            if self._db.is_postgres:
                # Row locks in id order: the monitor skips these rows (SKIP LOCKED) and two
                # writers never deadlock.
                query = query.with_for_update()
            found = {row.slug: row for row in (await session.execute(query)).all()}
            slow_ids = {
                found[i.hb.service].id
                for i in batch
                if i.hb.service in found
                and (i.hb.status != "ok" or found[i.hb.service].state not in _FAST_STATES)
            }
            slow: dict[str, Service] = {}
            if slow_ids:
                loaded = await session.scalars(select(Service).where(Service.id.in_(slow_ids)))
                slow = {service.slug: service for service in loaded}
            fast: dict[str, _Beating] = {}
            for item in batch:
                slug = item.hb.service
                target: _Beating | Service
                if slug in slow:
                    target = slow[slug]
                    await self._apply(session, pending, target, item, deadlines)
                elif slug in found:
                    if slug not in fast:
                        fast[slug] = _Beating.from_row(found[slug])
                    target = fast[slug]
                    target.beat(item.received_at, pending, deadlines)
                else:
                    results.append(NotFound(f"no service {quote(slug)}: register it first"))
                    continue
                applied.append((len(results), target))
                results.append(None)
                rows.append(
                    {
                        "service_id": target.id,
                        "status": item.hb.status,
                        "run_id": item.hb.run_id,
                        "exit_code": item.hb.exit_code,
                        "message": item.hb.message,
                        "message_truncated": item.hb.message_truncated,
                        "source": item.hb.source,
                        "received_at": item.received_at,
                    }
                )
            if fast:
                await self._update_beaten(session, list(fast.values()))
            if rows:
                ids = await self._insert_heartbeats(session, rows)
                now = self._clock.now()
                for (index, target), hb_id in zip(applied, ids, strict=True):
                    item = batch[index]
                    results[index] = StoredHeartbeat(
                        id=hb_id,
                        service=target.slug,
                        status=item.hb.status,
                        received_at=item.received_at,
                        state=display_state(target, now),
                        message_truncated=item.hb.message_truncated,
                    )
        final: list[StoredHeartbeat | MedicError] = [r for r in results if r is not None]
        return final, pending, deadlines

    async def _update_beaten(self, session: AsyncSession, beaten: list[_Beating]) -> None:
        """Write the fast path's service columns back.

        SQLite: one ``executemany`` (a C loop in the driver). PostgreSQL: one ``UPDATE ... FROM
        unnest(arrays)`` statement -- asyncpg's executemany still executes the UPDATE once per
        row, which cost more than the rest of the batch.
        """
        if not self._db.is_postgres:
            await session.execute(_UPDATE_BEAT, [b.params() for b in beaten])
            return
        await session.execute(
            _UPDATE_BEAT_PG,
            {
                "ids": [b.id for b in beaten],
                "states": [b.state for b in beaten],
                "beats": [b.last_heartbeat_at for b in beaten],
                "expected": [b.expected_at for b in beaten],
                "due": [b.next_due for b in beaten],
                "recent": [orjson.dumps(b.recent_beats).decode() for b in beaten],
            },
        )

    async def _insert_heartbeats(
        self, session: AsyncSession, rows: list[dict[str, object]]
    ) -> list[int]:
        """Insert the batch's rows in one statement; return their ids in row order.

        PostgreSQL: one ``INSERT ... RETURNING`` that SQLAlchemy keeps in parameter order.
        SQLite: the ids are assigned up front (``Database.assign_ids``) and the rows go in as
        one plain ``executemany`` on the Core table, without the ORM's per-row bookkeeping.
        """
        if self._db.is_postgres:
            return list(
                (
                    await session.scalars(
                        insert(Heartbeat).returning(Heartbeat.id, sort_by_parameter_order=True),
                        rows,
                    )
                ).all()
            )
        await self._db.assign_ids(session, Heartbeat, rows)
        await session.execute(insert(_HEARTBEATS), rows)
        return [cast(int, row["id"]) for row in rows]

    async def _apply(
        self,
        session: AsyncSession,
        pending: PendingEvents,
        service: Service,
        item: _Item,
        deadlines: list[datetime],
    ) -> None:
        """What one heartbeat changes: runs, state, deadline, alerts."""
        hb, at = item.hb, item.received_at
        service.last_status = hb.status
        if hb.status == "start":
            run = JobRun(service_id=service.id, run_id=hb.run_id, status="running", started_at=at)
            if service.max_duration:
                run.overrun_due = at + timedelta(seconds=service.max_duration)
                deadlines.append(run.overrun_due)
            session.add(run)
            return
        if hb.status in ("success", "fail"):
            await self._close_run(session, pending, service, hb, at)
        last = service.last_heartbeat_at
        service.last_heartbeat_at = later(last, at)
        if service.state == "paused":
            return  # recorded, not monitored
        was = service.state
        record_beat(service, at, last=last)
        if service.next_due is not None:
            deadlines.append(service.next_due)
        if hb.status == "fail":
            service.state = "down"
            reason = f"exit code {hb.exit_code}" if hb.exit_code is not None else "a fail signal"
            await self._alerts.open_in(
                session,
                pending,
                service,
                "failed",
                summary=f"{service.name} reported failure ({reason})",
                now=at,
                details={"exit_code": hb.exit_code, "run_id": hb.run_id, "message": hb.message},
            )
            if was == "down":
                await self._alerts.resolve_in(
                    session, pending, service, ("missed",), now=at, resolution="heartbeat received"
                )
        else:
            service.state = "up"
            if was == "down":
                await self._alerts.resolve_in(
                    session,
                    pending,
                    service,
                    ("missed", "failed"),
                    now=at,
                    resolution=f"heartbeat received ({hb.status})",
                )
        if was != service.state:
            pending.add(
                "service.state_changed", at, slug=service.slug, state=service.state, was=was
            )

    async def _close_run(
        self,
        session: AsyncSession,
        pending: PendingEvents,
        service: Service,
        hb: HeartbeatIn,
        at: datetime,
    ) -> None:
        query = select(JobRun).where(JobRun.service_id == service.id, JobRun.finished_at.is_(None))
        if hb.run_id is not None:
            query = query.where(JobRun.run_id == hb.run_id)
        run = await session.scalar(query.order_by(JobRun.id.desc()).limit(1))
        if run is None:
            # An end without a start: record the run as instantaneous, so job history is whole.
            run = JobRun(service_id=service.id, run_id=hb.run_id, started_at=at)
            session.add(run)
        run.finished_at = at
        run.duration = (at - run.started_at).total_seconds()
        run.status = "succeeded" if hb.status == "success" else "failed"
        run.exit_code = hb.exit_code
        run.overrun_due = None
        if run.overrun:
            await self._alerts.resolve_in(
                session,
                pending,
                service,
                ("overrun",),
                now=at,
                resolution=f"run finished after {run.duration:.0f}s",
            )
