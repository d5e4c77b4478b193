"""The monitor: turns passed deadlines into alerts.

It never scans every service. Deadlines are stored and indexed (``services.next_due``,
``job_runs.overrun_due``, ``alerts.notify_at``), so one pass is: claim the rows whose deadline has
passed, act on them, and ask the three indexes for the earliest deadline still ahead. The loop
then sleeps until that instant, or until someone calls ``notice()`` with an earlier one (a first
heartbeat, a new run with ``max_duration``, an unmute), or at most ``max_sleep`` seconds (changes
made by another process).

On PostgreSQL due rows are claimed with ``FOR UPDATE SKIP LOCKED``: several replicas can run the
monitor, each row is handled by exactly one of them, and rows a heartbeat batch is updating are
skipped until the next pass. ``run_once`` is the whole step, so tests drive it with a fake clock.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import cast

from sqlalchemy import Table, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm.attributes import set_committed_value

from medic_core.alerts import AlertBook, Opening
from medic_core.clock import Clock
from medic_core.events import EventBus, PendingEvents
from medic_core.observability.metrics import Metrics
from medic_core.observability.tracing import tracer
from medic_core.passes import Pass, PassLoop
from medic_core.store import Database
from medic_core.store.models import Alert, JobRun, Service
from medic_core.store.types import instant_from_db

log = logging.getLogger(__name__)
_SERVICES = cast(Table, Service.__table__)


@dataclass(frozen=True, slots=True)
class MonitorPass:
    missed: int
    overruns: int
    released: int
    next_deadline: datetime | None
    lag: float
    more: bool


def _due(deadline: datetime | None, now: datetime) -> bool:
    return deadline is not None and deadline <= now


class Monitor:
    def __init__(
        self,
        db: Database,
        clock: Clock,
        bus: EventBus,
        metrics: Metrics,
        alerts: AlertBook,
        *,
        batch_size: int = 500,
        max_sleep: float = 10.0,
    ) -> None:
        self._db = db
        self._clock = clock
        self._bus = bus
        self._metrics = metrics
        self._alerts = alerts
        self._batch = batch_size
        self._loop = PassLoop("monitor", self._pass, clock, max_sleep=max_sleep)
        # The earliest overrun and notify deadlines the last pass saw; a pass skips a claim
        # query whose earliest deadline is still ahead (an outage backlog of 100k missed
        # services is 200 passes, each otherwise paying two empty claims). Forgotten on every
        # notice(); deadlines other processes set are seen by the next pass's _earliest.
        self._ahead: tuple[datetime | None, datetime | None] | None = None

    def notice(self, deadline: datetime) -> None:
        """A deadline was set; wake the loop if it is sooner than the one it sleeps towards."""
        self._ahead = None
        if self._loop.target is None or deadline < self._loop.target:
            self._loop.wake()

    async def run_once(self) -> MonitorPass:
        now = self._clock.now()
        pending = PendingEvents()
        with tracer.start_as_current_span("monitor.pass"):
            ahead = self._ahead
            async with self._db.transaction() as session:
                missed = await self._claim_missed(session, pending, now)
                overruns = released = 0
                if ahead is None or _due(ahead[0], now):
                    overruns = await self._claim_overruns(session, pending, now)
                if ahead is None or _due(ahead[1], now):
                    released = await self._alerts.release_due_in(session, pending, now, self._batch)
            pending.publish(self._bus)
            next_deadline, oldest_due = await self._earliest()
        lag = max(0.0, (now - oldest_due).total_seconds()) if oldest_due else 0.0
        self._metrics.monitor_lag.set(lag)
        self._metrics.monitor_claimed.labels("missed").inc(missed)
        self._metrics.monitor_claimed.labels("overrun").inc(overruns)
        self._metrics.monitor_claimed.labels("released").inc(released)
        more = self._batch in (missed, overruns, released)
        return MonitorPass(missed, overruns, released, next_deadline, lag, more)

    async def _claim_missed(
        self, session: AsyncSession, pending: PendingEvents, now: datetime
    ) -> int:
        query = (
            select(Service)
            .where(Service.next_due.is_not(None), Service.next_due <= now)
            .order_by(Service.next_due)
            .limit(self._batch)
        )
        if self._db.is_postgres:
            query = query.with_for_update(skip_locked=True)
        services = list((await session.scalars(query)).all())
        if services:
            await self._open_missed(session, pending, services, now)
        return len(services)

    async def _open_missed(
        self, session: AsyncSession, pending: PendingEvents, services: list[Service], now: datetime
    ) -> None:
        """Mark the claimed services down and open their ``missed`` alerts, as one batch.

        A constant number of statements per batch (one UPDATE, the alert book's batched
        opening), instead of several per alert, which capped the monitor at ~150 alerts/s.
        """
        openings = []
        # The claimed rows' new state in one statement; the loaded objects are told the same
        # values as committed ones, so the ORM neither re-sends them nor holds stale ones.
        await session.execute(
            update(_SERVICES)
            .where(_SERVICES.c.id.in_([s.id for s in services]))
            .values(state="down", next_due=None)
        )
        for service in services:
            due, was = service.next_due, service.state
            set_committed_value(service, "state", "down")
            set_committed_value(service, "next_due", None)  # the next heartbeat sets a new one
            openings.append(
                Opening(
                    service,
                    "missed",
                    f"{service.name} missed its deadline",
                    {
                        "expected_at": _iso(service.expected_at),
                        "deadline": _iso(due),
                        "last_heartbeat_at": _iso(service.last_heartbeat_at),
                    },
                )
            )
            if was != "down":
                pending.add("service.state_changed", now, slug=service.slug, state="down", was=was)
        await self._alerts.open_many_in(session, pending, openings, now=now)

    async def _claim_overruns(
        self, session: AsyncSession, pending: PendingEvents, now: datetime
    ) -> int:
        query = (
            select(JobRun, Service)
            .join(Service, Service.id == JobRun.service_id)
            .where(
                JobRun.finished_at.is_(None),
                JobRun.overrun_due.is_not(None),
                JobRun.overrun_due <= now,
            )
            .order_by(JobRun.overrun_due)
            .limit(self._batch)
        )
        if self._db.is_postgres:
            query = query.with_for_update(skip_locked=True, of=JobRun)
        rows = (await session.execute(query)).all()
        for run, service in rows:
            run.overrun = True
            run.overrun_due = None
            await self._alerts.open_in(
                session,
                pending,
                service,
                "overrun",
                summary=f"{service.name} has run longer than {service.max_duration}s",
                now=now,
                details={"run_id": run.run_id, "started_at": run.started_at.isoformat()},
            )
        return len(rows)

    async def _earliest(self) -> tuple[datetime | None, datetime | None]:
        """The earliest deadline of all (when to wake) and the earliest passed one (for lag)."""
        # One round trip: each MIN is still answered from its own (partial) index.
        query = select(
            select(func.min(Service.next_due)).scalar_subquery(),
            select(func.min(JobRun.overrun_due))
            .where(JobRun.finished_at.is_(None), JobRun.overrun_due.is_not(None))
            .scalar_subquery(),
            select(func.min(Alert.notify_at)).where(Alert.notify_at.is_not(None)).scalar_subquery(),
        )
        async with self._db.sessions() as session:
            values = [
                instant_from_db(v) if v is not None else None
                for v in (await session.execute(query)).one()
            ]
        self._ahead = (values[1], values[2])
        found = [v for v in values if v is not None]
        if not found:
            return None, None
        earliest = min(found)
        now = self._clock.now()
        return earliest, earliest if earliest <= now else None

    async def _pass(self) -> Pass:
        result = await self.run_once()
        return Pass(result.more, result.next_deadline)

    async def start(self) -> None:
        await self._loop.start()

    async def stop(self, timeout: float = 5.0) -> None:
        """Let the current pass finish, then end the loop (see ``PassLoop.stop``)."""
        await self._loop.stop(timeout)


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None
