"""The execution state machine: what the engine does next with a run, and how an outcome
moves it on. Pure decisions over rows inside the engine's transactions (``engine.py`` holds the
transactions, the lease and the calls).

``prepare`` looks at a claimed run and answers one of: stop (ended, cancelled, waiting for a
later instant), go on (a step was skipped), or a ``Call`` of a step type's ``advance`` -- the
step run is recorded ``running`` and the run's state ``running`` before the engine commits
and calls. ``apply`` records the outcome: ``Done`` moves to the next step, ``Later`` keeps
the step's state and sets ``next_at``, ``Failed`` retries (with back-off) or follows
``on_failure``.

Recovery (docs/playbooks.md): a run found ``running`` with its step run ``running`` was being
advanced by a process that died. The outcome is unknown. An idempotent step runs again as a new
attempt that keeps the state its last ``Later`` persisted (a wait keeps its deadline); any
other step is marked ``unknown`` and the run fails with reason ``outcome_unknown``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from medic_core.backoff import backoff
from medic_core.events import PendingEvents
from medic_core.playbooks.executions import execution_event, finish, step_event
from medic_core.playbooks.steptypes import LoadedStepType, StepTypes
from medic_core.playbooks.templates import Renderer, TemplateFailure
from medic_core.plugins.interfaces import Done, Failed, Later, Outcome
from medic_core.store.models import (
    Playbook,
    PlaybookExecution,
    PlaybookStepRun,
    PlaybookVersion,
    Service,
)

MAX_ERROR = 4000
_GOTO = "goto "


@dataclass(slots=True)
class Call:
    """One call of a step type's ``advance`` the engine makes after committing."""

    execution_id: int
    run_id: int
    step: str
    attempt: int
    step_type: LoadedStepType
    params: dict[str, Any] = field(default_factory=dict)
    state: dict[str, Any] = field(default_factory=dict)
    #: Seconds left before the step's timeout (None: no timeout).
    remaining: float | None = None
    #: The instant the step's timeout ends the attempt (None: no timeout).
    deadline: datetime | None = None
    #: What the execution is about: its service's slug and its alert (None: not given).
    service: str | None = None
    alert_id: int | None = None
    playbook: str = ""
    #: Decided without calling (the step timed out, a template failed to render).
    outcome: Outcome | None = None
    timed_out: bool = False


STOP = "stop"
AGAIN = "again"


@dataclass(slots=True)
class Limits:
    max_step_runs: int
    output_bytes: int


def bounded_output(output: Any, limit: int) -> Any:
    """``output`` as stored: itself when its JSON fits in ``limit`` bytes, else its JSON text
    cut to the limit, marked truncated."""
    if output is None:
        return None
    text = json.dumps(output, ensure_ascii=False, default=str)
    if len(text.encode()) <= limit:
        return json.loads(text)
    cut = text.encode()[:limit].decode("utf-8", "ignore")
    return {"truncated": True, "text": cut}


def _step_deadline(step: dict[str, Any], run: PlaybookStepRun) -> datetime | None:
    timeout = step.get("timeout")
    return run.started_at + timedelta(seconds=timeout) if timeout else None


class Machine:
    def __init__(self, step_types: StepTypes, renderer: Renderer, limits: Limits) -> None:
        self._types = step_types
        self._render = renderer
        self._limits = limits

    async def load(
        self, session: AsyncSession, row: PlaybookExecution
    ) -> tuple[str, int, dict[str, Any], list[PlaybookStepRun]]:
        slug, version, definition = (
            await session.execute(
                select(Playbook.slug, PlaybookVersion.version, PlaybookVersion.definition)
                .join(PlaybookVersion, PlaybookVersion.playbook_id == Playbook.id)
                .where(PlaybookVersion.id == row.version_id)
            )
        ).one()
        runs = list(
            (
                await session.scalars(
                    select(PlaybookStepRun)
                    .where(PlaybookStepRun.execution_id == row.id)
                    .order_by(PlaybookStepRun.id)
                )
            ).all()
        )
        return slug, version, definition, runs

    async def service_slug(self, session: AsyncSession, row: PlaybookExecution) -> str | None:
        if row.service_id is None:
            return None
        slug: str | None = await session.scalar(
            select(Service.slug).where(Service.id == row.service_id)
        )
        return slug

    def context(
        self,
        row: PlaybookExecution,
        slug: str,
        version: int,
        runs: list[PlaybookStepRun],
        service: str | None = None,
    ) -> dict[str, Any]:
        steps: dict[str, dict[str, Any]] = {}
        for run in runs:  # oldest first: the latest run of each step wins
            steps[run.step_name] = {"output": run.output, "status": run.state}
        return {
            **(row.trigger_context or {}),  # alert, service: what started the run
            "vars": dict(row.variables),
            "steps": steps,
            "execution": {
                "id": row.id,
                "playbook": slug,
                "version": version,
                "service": service,
                "alert_id": row.alert_id,
            },
        }

    async def prepare(
        self, session: AsyncSession, pending: PendingEvents, row: PlaybookExecution, now: datetime
    ) -> Call | str:
        slug, version, definition, runs = await self.load(session, row)
        if row.cancel_requested:
            await finish(session, pending, row, "cancelled", now, "cancelled", "cancelled")
            return STOP
        if row.next_at is not None and row.next_at > now:
            return STOP
        steps: list[dict[str, Any]] = definition["steps"]
        if row.step_index >= len(steps):
            await finish(session, pending, row, "succeeded", now, None, None)
            return STOP
        step = steps[row.step_index]
        loaded = self._types.get(step["type"])
        context = self.context(row, slug, version, runs, await self.service_slug(session, row))
        latest = runs[-1] if runs and row.attempt > 0 else None
        if latest is not None and latest.state == "running":
            if row.state == "running":
                return await self._recover(
                    session, pending, row, step, loaded, latest, context, now
                )
            return self._call(row, step, loaded, latest, context, now)
        if row.step_runs >= self._limits.max_step_runs:
            await finish(
                session,
                pending,
                row,
                "failed",
                now,
                "too_many_step_runs",
                f"the run made {row.step_runs} step runs, the most allowed "
                "(MEDIC_PLAYBOOK_MAX_STEP_RUNS): a goto loop that never ends?",
            )
            return STOP
        run = self._new_run(row, step, now, {})
        session.add(run)
        decided: Outcome | None = None
        if "when" in step and latest is None:  # a retry does not ask again
            try:
                wanted = self._render.when(step["when"], context, f"steps[{row.step_index}].when")
            except TemplateFailure as exc:
                wanted, decided = True, Failed(str(exc))
            if not wanted:
                run.state, run.finished_at = "skipped", now
                await session.flush()
                pending.add("playbook.step", now, **step_event(run))
                self._next(row, row.step_index + 1, now)
                return AGAIN
        if loaded is None or not callable(getattr(loaded.implementation, "advance", None)):
            run.state, run.finished_at = "failed", now
            run.error = f"step type {step['type']!r} cannot run here: no running is defined for it"
            await session.flush()
            pending.add("playbook.step", now, **step_event(run))
            await finish(
                session,
                pending,
                row,
                "failed",
                now,
                "step_type_not_runnable",
                f"step {step['name']!r}: the step type {step['type']!r} cannot run yet "
                "(docs/playbooks.md lists the step types that run)",
            )
            return STOP
        return await self._begin(session, pending, row, slug, run, step, loaded, decided, context)

    def _new_run(
        self, row: PlaybookExecution, step: dict[str, Any], now: datetime, state: dict[str, Any]
    ) -> PlaybookStepRun:
        row.attempt += 1
        row.step_runs += 1
        return PlaybookStepRun(
            execution_id=row.id,
            step_index=row.step_index,
            step_name=step["name"],
            step_type=step["type"],
            attempt=row.attempt,
            state="running",
            started_at=now,
            step_state=state,
        )

    async def _begin(
        self,
        session: AsyncSession,
        pending: PendingEvents,
        row: PlaybookExecution,
        slug: str,
        run: PlaybookStepRun,
        step: dict[str, Any],
        loaded: LoadedStepType,
        decided: Outcome | None,
        context: dict[str, Any],
    ) -> Call:
        """Record the new step run ``running`` and the run ``running`` (committed by the
        engine before it calls ``advance``)."""
        was = row.state
        row.state, row.updated_at = "running", run.started_at
        await session.flush()
        pending.add("playbook.step", run.started_at, **step_event(run))
        if was != "running":
            pending.add("playbook.execution", run.started_at, **execution_event(row, slug))
        call = Call(row.id, run.id, step["name"], run.attempt, loaded)
        if decided is not None:
            call.outcome = decided
            return call
        return self._fill(call, row, step, run, context, run.started_at)

    def _call(
        self,
        row: PlaybookExecution,
        step: dict[str, Any],
        loaded: LoadedStepType | None,
        run: PlaybookStepRun,
        context: dict[str, Any],
        now: datetime,
    ) -> Call:
        """Call ``advance`` again for a step that asked for ``Later``."""
        assert loaded is not None  # it ran: its type has ``advance``
        row.state, row.updated_at = "running", now
        call = Call(row.id, run.id, step["name"], run.attempt, loaded)
        call.state = dict(run.step_state or {})
        return self._fill(call, row, step, run, context, now)

    def _fill(
        self,
        call: Call,
        row: PlaybookExecution,
        step: dict[str, Any],
        run: PlaybookStepRun,
        context: dict[str, Any],
        now: datetime,
    ) -> Call:
        call.service, call.alert_id = context["execution"]["service"], row.alert_id
        call.playbook = context["execution"]["playbook"]
        deadline = _step_deadline(step, run)
        call.deadline = deadline
        if deadline is not None:
            call.remaining = (deadline - now).total_seconds()
            if call.remaining <= 0:
                call.outcome = Failed(f"step {step['name']!r} timed out after {step['timeout']}s")
                call.timed_out = True
                return call
        try:
            call.params = self._render.params(
                step.get("params") or {}, context, f"steps[{row.step_index}].params"
            )
        except TemplateFailure as exc:
            call.outcome = Failed(str(exc))
        return call

    async def _recover(
        self,
        session: AsyncSession,
        pending: PendingEvents,
        row: PlaybookExecution,
        step: dict[str, Any],
        loaded: LoadedStepType | None,
        run: PlaybookStepRun,
        context: dict[str, Any],
        now: datetime,
    ) -> Call | str:
        """The process advancing ``run`` died: its outcome is unknown."""
        default = (
            getattr(loaded.implementation, "idempotent_by_default", False) if loaded else False
        )
        idempotent = bool(step.get("idempotent", bool(default)))
        run.state, run.finished_at = "unknown", now
        pending.add("playbook.step", now, **step_event(run))
        if not idempotent:
            run.error = "Medic stopped while this step ran: whether it took effect is unknown"
            await finish(
                session,
                pending,
                row,
                "failed",
                now,
                "outcome_unknown",
                f"Medic stopped while step {step['name']!r} ({step['type']}, attempt "
                f"{run.attempt}) ran, so whether it took effect is unknown; check its target "
                "by hand (e.g. did the webhook's receiver act?), then start a new run. Mark "
                "the step idempotent: true if running it twice is safe.",
            )
            return STOP
        run.error = "Medic stopped while this step ran; it is idempotent: run again"
        assert loaded is not None  # it ran: its type has ``advance``
        fresh = self._new_run(row, step, now, dict(run.step_state or {}))
        session.add(fresh)
        slug = context["execution"]["playbook"]
        call = await self._begin(session, pending, row, slug, fresh, step, loaded, None, context)
        call.state = dict(fresh.step_state)
        return call

    def _next(self, row: PlaybookExecution, index: int, now: datetime) -> None:
        row.step_index, row.attempt = index, 0
        row.state, row.next_at, row.updated_at = "running", now, now

    async def apply(
        self,
        session: AsyncSession,
        pending: PendingEvents,
        row: PlaybookExecution,
        run: PlaybookStepRun,
        call: Call,
        outcome: Outcome,
        now: datetime,
    ) -> None:
        _, _, definition, _ = await self.load(session, row)
        steps: list[dict[str, Any]] = definition["steps"]
        step = steps[row.step_index]
        limit = self._limits.output_bytes
        if isinstance(outcome, Later):
            run.step_state = dict(outcome.state)
            deadline = _step_deadline(step, run)
            at = outcome.at if deadline is None else min(outcome.at, deadline)
            row.state, row.next_at, row.updated_at = "waiting", max(at, now), now
            slug = (await self.load(session, row))[0]
            pending.add("playbook.execution", now, **execution_event(row, slug))
        elif isinstance(outcome, Done):
            run.state, run.finished_at = "succeeded", now
            run.output = bounded_output(outcome.output, limit)
            pending.add("playbook.step", now, **step_event(run))
            self._next(row, row.step_index + 1, now)
        else:
            run.state, run.finished_at = "failed", now
            run.output = bounded_output(outcome.output, limit)
            run.error = outcome.error[:MAX_ERROR]
            pending.add("playbook.step", now, **step_event(run))
            await self._failed(session, pending, row, step, steps, call, outcome, now)
        if row.cancel_requested and row.state in ("running", "waiting"):
            await finish(session, pending, row, "cancelled", now, "cancelled", "cancelled")

    async def _failed(
        self,
        session: AsyncSession,
        pending: PendingEvents,
        row: PlaybookExecution,
        step: dict[str, Any],
        steps: list[dict[str, Any]],
        call: Call,
        outcome: Failed,
        now: datetime,
    ) -> None:
        retry = step.get("retry") or {}
        if row.attempt < int(retry.get("attempts", 1)) and not call.timed_out:
            shape = retry.get("backoff") or {}
            delay = backoff(
                row.attempt,
                base=float(shape.get("initial", 5)),
                cap=float(shape.get("max", 300)),
                factor=float(shape.get("multiplier", 2)),
            )
            row.state, row.next_at, row.updated_at = "waiting", now + timedelta(seconds=delay), now
            slug = (await self.load(session, row))[0]
            pending.add("playbook.execution", now, **execution_event(row, slug))
            return
        on_failure = step.get("on_failure", "stop")
        if on_failure == "continue":
            self._next(row, row.step_index + 1, now)
        elif on_failure.startswith(_GOTO):
            target = on_failure[len(_GOTO) :]
            index = next(i for i, s in enumerate(steps) if s["name"] == target)
            self._next(row, index, now)
        else:
            state = "timed_out" if call.timed_out else "failed"
            reason = "step_timed_out" if call.timed_out else "step_failed"
            await finish(
                session,
                pending,
                row,
                state,
                now,
                reason,
                f"step {step['name']!r} ({step['type']}) failed: {outcome.error}",
            )
