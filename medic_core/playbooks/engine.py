"""The playbook engine: a background service on the shared pass loop that advances executions.

One pass claims due executions -- active (``pending``, ``running``, ``waiting``), ``next_at``
passed, lease free or lapsed -- on PostgreSQL with ``FOR UPDATE SKIP LOCKED`` (as the delivery
service claims its outbox), sets ``lease_owner``/``lease_until`` and commits before anything
runs. Each claimed execution is then driven, as its own task, until it ends or has to wait
(so a slow step holds one drive, not the pass: the loop claims again as soon as a slot is free,
at most ``MEDIC_PLAYBOOK_MAX_ACTIVE_DRIVES`` drives at once per process): the state machine
(``transitions.py``) records the step run ``running`` and commits, the step type's ``advance``
is called (under the step's timeout, the lease renewed meanwhile), and its outcome is recorded
in a second transaction, which first checks the lease is still this engine's. Events are
published after each commit. A replica that dies leaves its leases to lapse; another then
claims the executions and recovers them (see ``transitions.py``).
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from opentelemetry.trace import Status, StatusCode
from sqlalchemy import func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from medic_core.clock import Clock
from medic_core.events import Event, EventBus, PendingEvents
from medic_core.observability.metrics import Metrics
from medic_core.observability.tracing import tracer
from medic_core.passes import Pass, PassLoop
from medic_core.playbooks.executions import ACTIVE, ENDED
from medic_core.playbooks.steptypes import StepTypes
from medic_core.playbooks.templates import Renderer
from medic_core.playbooks.transitions import STOP, Call, Limits, Machine
from medic_core.plugins.interfaces import Done, Failed, Later, Outcome, StepRun
from medic_core.settings import Settings
from medic_core.store import Database
from medic_core.store.models import PlaybookExecution, PlaybookStepRun

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class EnginePass:
    claimed: int
    next_due: datetime | None


def _owner() -> str:
    return f"{socket.gethostname()[:60]}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class PlaybookEngine:
    def __init__(
        self,
        db: Database,
        clock: Clock,
        bus: EventBus,
        metrics: Metrics,
        step_types: StepTypes,
        settings: Settings,
        *,
        plugin_context: Any = None,
        owner: str | None = None,
        max_sleep: float = 10.0,
    ) -> None:
        lease = settings.playbook_lease
        if not 5.0 <= lease <= 3600.0:
            raise ValueError("MEDIC_PLAYBOOK_LEASE must be between 5 and 3600 seconds")
        if not 1 <= settings.playbook_claim_batch <= 1000:
            raise ValueError("MEDIC_PLAYBOOK_CLAIM_BATCH must be between 1 and 1000")
        if not 1 <= settings.playbook_max_step_runs <= 100_000:
            raise ValueError("MEDIC_PLAYBOOK_MAX_STEP_RUNS must be between 1 and 100000")
        if not 1 <= settings.playbook_max_active_drives <= 10_000:
            raise ValueError("MEDIC_PLAYBOOK_MAX_ACTIVE_DRIVES must be between 1 and 10000")
        if not 1024 <= settings.playbook_step_output_bytes <= 16 * 1024 * 1024:
            raise ValueError("MEDIC_PLAYBOOK_STEP_OUTPUT_BYTES must be between 1024 and 16777216")
        self._db = db
        self._clock = clock
        self._bus = bus
        self._metrics = metrics
        self._types = step_types
        self._context = plugin_context
        self._lease = timedelta(seconds=lease)
        self._batch = settings.playbook_claim_batch
        self._max_drives = settings.playbook_max_active_drives
        #: The drives in flight (one task per claimed execution).
        self._drives: set[asyncio.Task[None]] = set()
        self._stopping = False
        self.owner = owner or _owner()
        self._machine = Machine(
            step_types,
            Renderer(),
            Limits(settings.playbook_max_step_runs, settings.playbook_step_output_bytes),
        )
        self._loop = PassLoop("playbooks", self._pass, clock, max_sleep=max_sleep)

    # -- lifecycle -------------------------------------------------------------------------------

    def notice(self) -> None:
        self._loop.wake()

    async def on_event(self, event: Event) -> None:
        """Bus subscriber: count ended runs (wherever they ended: engine or cancel)."""
        if event.type == "playbook.execution" and event.data.get("state") in ENDED:
            self._metrics.playbook_executions.labels(
                event.data.get("playbook", ""), event.data["state"]
            ).inc()

    async def start(self) -> None:
        self._stopping = False
        await self._loop.start()

    async def stop(self, timeout: float = 10.0) -> None:
        """Stop claiming, let each drive finish the step it is advancing (then it lets go of
        its lease, so another replica may go on at once), and cancel those still busy after
        ``timeout``: their leases lapse and recovery takes over (``transitions.py``)."""
        self._stopping = True
        await self._loop.stop(timeout)
        drives = list(self._drives)
        if not drives:
            return
        _, busy = await asyncio.wait(drives, timeout=timeout)
        for task in busy:
            task.cancel()
        await asyncio.gather(*busy, return_exceptions=True)

    @property
    def active_drives(self) -> int:
        return len(self._drives)

    async def wait_drives(self) -> None:
        """Return once every drive in flight has ended (tests, after ``run_once(wait=False)``)."""
        while self._drives:
            await asyncio.gather(*list(self._drives), return_exceptions=True)

    async def close(self) -> None:
        """Close what step types hold (their HTTP sessions)."""
        for loaded in self._types:
            close = getattr(loaded.implementation, "close", None)
            if close is not None:
                try:
                    await close()
                except Exception as exc:
                    log.warning("step type %s failed to close: %s", loaded.name, exc)

    async def _pass(self) -> Pass:
        free = self._max_drives - len(self._drives)
        result = await self.run_once(wait=False)
        # A full batch may leave more due; a full house waits for a drive to end (it wakes us).
        return Pass(result.claimed >= min(self._batch, free) > 0, result.next_due)

    # -- one pass --------------------------------------------------------------------------------

    async def run_once(self, *, wait: bool = True) -> EnginePass:
        """Claim what is due (as many as there are free drive slots) and start a drive for
        each. ``wait=True`` (tests, by hand) returns once those drives ended, so the work is
        done when it returns; the background loop passes ``wait=False`` and claims again while
        they run. Cancelling a waiting ``run_once`` cancels its drives (what a crash does)."""
        free = self._max_drives - len(self._drives)
        ids = await self._claim(self._clock.now(), min(self._batch, free)) if free > 0 else []
        started = [self._start_drive(i) for i in ids]
        if wait and started:
            await asyncio.gather(*started)
        return EnginePass(len(ids), await self._next_due())

    def _start_drive(self, execution_id: int) -> asyncio.Task[None]:
        task = asyncio.create_task(self._drive(execution_id), name=f"playbook-run-{execution_id}")
        self._drives.add(task)
        self._metrics.playbook_drives_active.set(len(self._drives))
        task.add_done_callback(self._drive_ended)
        return task

    def _drive_ended(self, task: asyncio.Task[None]) -> None:
        self._drives.discard(task)
        self._metrics.playbook_drives_active.set(len(self._drives))
        self._loop.wake()  # a slot is free: claim what waits for one

    async def _claim(self, now: datetime, limit: int) -> list[int]:
        query = (
            select(PlaybookExecution)
            .where(
                PlaybookExecution.state.in_(ACTIVE),
                PlaybookExecution.next_at <= now,
                or_(PlaybookExecution.lease_until.is_(None), PlaybookExecution.lease_until < now),
            )
            .order_by(PlaybookExecution.next_at, PlaybookExecution.id)
            .limit(limit)
        )
        if self._db.is_postgres:
            query = query.with_for_update(skip_locked=True)
        async with self._db.transaction() as session:
            rows = (await session.scalars(query)).all()
            for row in rows:
                if row.next_at is not None:
                    lag = max(0.0, (now - row.next_at).total_seconds())
                    self._metrics.playbook_engine_lag.observe(lag)
                row.lease_owner, row.lease_until = self.owner, now + self._lease
            return [row.id for row in rows]

    async def _next_due(self) -> datetime | None:
        """The earliest instant something may be claimable: a free run's ``next_at`` or a held
        run's lease end (never before now + 1 s, so a run another replica holds does not spin
        this loop)."""
        now = self._clock.now()
        async with self._db.sessions() as session:
            free = await session.scalar(
                select(func.min(PlaybookExecution.next_at)).where(
                    PlaybookExecution.state.in_(ACTIVE), PlaybookExecution.lease_until.is_(None)
                )
            )
            held = await session.scalar(
                select(func.min(PlaybookExecution.lease_until)).where(
                    PlaybookExecution.state.in_(ACTIVE),
                    PlaybookExecution.lease_until.is_not(None),
                )
            )
        due = [d for d in (free, held) if d is not None]
        if not due:
            return None
        return max(min(due), now + timedelta(seconds=1))

    async def _drive(self, execution_id: int) -> None:
        """Advance one claimed execution until it ends or waits, then let go of its lease."""
        try:
            while True:
                if self._stopping:
                    await self._release(execution_id)
                    return
                step = await self._prepare(execution_id)
                if step is None:
                    return
                if isinstance(step, str):
                    continue
                outcome = await self._advance(step)
                if not await self._apply(step, outcome):
                    return
        except Exception:
            # The lease lapses and the run is taken over (and recovered) later.
            log.exception("playbook run %s: the engine failed; it resumes later", execution_id)

    async def _release(self, execution_id: int) -> None:
        """Let go of the lease between steps (Medic stops): another replica goes on at once."""
        async with self._db.transaction() as session:
            await session.execute(
                update(PlaybookExecution)
                .where(
                    PlaybookExecution.id == execution_id,
                    PlaybookExecution.lease_owner == self.owner,
                )
                .values(lease_owner=None, lease_until=None)
            )

    async def _locked(self, session: AsyncSession, execution_id: int) -> PlaybookExecution | None:
        query = select(PlaybookExecution).where(PlaybookExecution.id == execution_id)
        if self._db.is_postgres:
            query = query.with_for_update()
        row = await session.scalar(query)
        if row is None or row.lease_owner != self.owner or row.state not in ACTIVE:
            return None  # ended, cancelled, or taken over after our lease lapsed
        return row

    async def _prepare(self, execution_id: int) -> Call | str | None:
        pending = PendingEvents()
        now = self._clock.now()
        async with self._db.transaction() as session:
            row = await self._locked(session, execution_id)
            if row is None:
                return None
            decision = await self._machine.prepare(session, pending, row, now)
            if decision == STOP and row.state in ACTIVE:
                row.lease_owner, row.lease_until = None, None
            else:
                row.lease_until = now + self._lease
        pending.publish(self._bus)
        return None if decision == STOP else decision

    async def _advance(self, call: Call) -> Outcome:
        if call.outcome is not None:
            return call.outcome
        attributes: dict[str, str | int] = {
            "medic.playbook": call.playbook,
            "medic.execution_id": call.execution_id,
            "medic.step": call.step,
            "medic.step_type": call.step_type.name,
            "medic.attempt": call.attempt,
        }
        with tracer.start_as_current_span("playbook.step", attributes=attributes) as span:
            outcome = await self._call_step(call)
            span.set_attribute("medic.outcome", type(outcome).__name__.lower())
            if isinstance(outcome, Failed):
                span.set_status(Status(StatusCode.ERROR, outcome.error[:200]))
            return outcome

    async def _call_step(self, call: Call) -> Outcome:
        """The step type's ``advance``, under the step's timeout, the lease renewed meanwhile;
        whatever goes wrong is a ``Failed``."""
        advance = call.step_type.implementation.advance  # type: ignore[attr-defined]
        run = StepRun(
            execution_id=call.execution_id,
            step=call.step,
            attempt=call.attempt,
            state=dict(call.state),
            clock=self._clock,
            medic=self._context,
            service=call.service,
            alert_id=call.alert_id,
            deadline=call.deadline,
            playbook=call.playbook,
        )
        renew = asyncio.create_task(self._renew(call.execution_id))
        started = time.monotonic()
        try:
            if call.remaining is None:
                outcome = await advance(call.params, run)
            else:
                async with asyncio.timeout(call.remaining):
                    outcome = await advance(call.params, run)
        except TimeoutError:
            call.timed_out = True
            return Failed(f"step {call.step!r} timed out")
        except Exception as exc:
            log.warning("step %s of run %s raised", call.step, call.execution_id, exc_info=True)
            return Failed(f"the step type raised {type(exc).__name__}: {exc}")
        finally:
            renew.cancel()
            await asyncio.gather(renew, return_exceptions=True)
            self._metrics.playbook_step_seconds.labels(call.step_type.name).observe(
                time.monotonic() - started
            )
        if not isinstance(outcome, Done | Failed | Later):
            return Failed(
                f"step type {call.step_type.name!r} returned {type(outcome).__name__}, not "
                "Done, Failed or Later"
            )
        return outcome

    async def _renew(self, execution_id: int) -> None:
        """Keep the lease while ``advance`` runs (every third of it)."""
        period = self._lease.total_seconds() / 3
        while True:
            await asyncio.sleep(period)
            try:
                async with self._db.transaction() as session:
                    await session.execute(
                        update(PlaybookExecution)
                        .where(
                            PlaybookExecution.id == execution_id,
                            PlaybookExecution.lease_owner == self.owner,
                        )
                        .values(lease_until=self._clock.now() + self._lease)
                    )
            except Exception as exc:
                log.warning("playbook run %s: lease not renewed: %s", execution_id, exc)

    async def _apply(self, call: Call, outcome: Outcome) -> bool:
        """Record ``outcome``; whether to go on driving the execution."""
        pending = PendingEvents()
        now = self._clock.now()
        async with self._db.transaction() as session:
            row = await self._locked(session, call.execution_id)
            if row is None:
                log.warning(
                    "playbook run %s: outcome of step %s dropped: the run ended or another "
                    "replica took it over",
                    call.execution_id,
                    call.step,
                )
                return False
            run = await session.get(PlaybookStepRun, call.run_id)
            assert run is not None
            await self._machine.apply(session, pending, row, run, call, outcome, now)
            ended = row.state not in ACTIVE
        pending.publish(self._bus)
        return not ended
