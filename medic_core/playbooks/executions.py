"""Playbook executions: starting, cancelling and reading runs (the engine advances them).

A run pins the playbook version it started with and is stored before anything runs; the
engine (``engine.py``) picks it up from the database, so a run survives any restart. States:

- ``pending``: stored, no step started yet;
- ``running``: the engine is inside a step's ``advance`` (committed before the call, so a
  crash during it is visible: see "recovery" in docs/playbooks.md), or between two steps;
- ``waiting``: a step asked to be called again later (a wait's deadline, a retry's back-off);
- ``succeeded``, ``failed``, ``cancelled``, ``timed_out``: ended (``reason`` and ``detail`` say
  why). ``pending_approval`` arrives with approvals.

One active run per playbook x service (a manual run without a service counts as its own
"service"): ``active_key`` is unique while a run is active and cleared when it ends.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from medic_core.audit import Actor, record_audit
from medic_core.clock import Clock, isoformat
from medic_core.errors import Conflict, NotFound, ValidationError
from medic_core.events import EventBus, PendingEvents
from medic_core.playbooks.registry import Playbooks
from medic_core.playbooks.steptypes import StepTypes
from medic_core.store import Database
from medic_core.store.models import Playbook, PlaybookExecution, PlaybookStepRun, PlaybookVersion
from medic_core.store.pagination import Page, check_limit, keyset, rows_page
from medic_core.validation import quote

ACTIVE = ("pending", "running", "waiting")
ENDED = ("succeeded", "failed", "cancelled", "timed_out")
#: Ended runs that may be rerun from a step.
RERUNNABLE = ("failed", "timed_out")
STATES = ACTIVE + ENDED
STEP_STATES = ("running", "succeeded", "failed", "skipped", "unknown", "cancelled")
#: A variable's type in a definition -> the JSON values it accepts.
_TYPES: dict[str, tuple[type, ...]] = {
    "string": (str,),
    "integer": (int,),
    "number": (int, float),
    "boolean": (bool,),
}
MAX_VARIABLE_TEXT = 4000


def active_key(playbook_id: int, service_id: int | None) -> str:
    return f"{playbook_id}:{service_id if service_id is not None else '-'}"


def execution_to_dict(
    row: PlaybookExecution, slug: str, version: int, steps: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    document: dict[str, Any] = {
        "id": row.id,
        "playbook": slug,
        "version": version,
        "trigger": row.trigger,
        "service_id": row.service_id,
        "alert_id": row.alert_id,
        "variables": row.variables,
        "state": row.state,
        "step_index": row.step_index,
        "cancel_requested": row.cancel_requested,
        "next_at": isoformat(row.next_at) if row.state in ACTIVE else None,
        "reason": row.reason,
        "detail": row.detail,
        "created_at": isoformat(row.created_at),
        "updated_at": isoformat(row.updated_at),
        "finished_at": isoformat(row.finished_at),
        "created_by": row.created_by,
    }
    if steps is not None:
        document["steps"] = steps
    return document


def step_run_to_dict(row: PlaybookStepRun) -> dict[str, Any]:
    return {
        "id": row.id,
        "index": row.step_index,
        "name": row.step_name,
        "type": row.step_type,
        "attempt": row.attempt,
        "state": row.state,
        "started_at": isoformat(row.started_at),
        "finished_at": isoformat(row.finished_at),
        "output": row.output,
        "error": row.error,
    }


def not_runnable(definition: dict[str, Any], step_types: StepTypes) -> list[str]:
    """The steps of ``definition`` whose type has no ``advance`` here ("name (type)")."""
    found = []
    for step in definition["steps"]:
        loaded = step_types.get(step["type"])
        if loaded is None or not callable(getattr(loaded.implementation, "advance", None)):
            found.append(f"{step['name']} ({step['type']})")
    return found


def check_variables(definition: dict[str, Any], given: dict[str, Any]) -> dict[str, Any]:
    """The run's variables: the definition's defaults, then ``given``, each checked
    (``ValidationError`` naming the variable: unknown, of the wrong type, missing)."""
    declared: dict[str, Any] = definition.get("variables") or {}
    for name, value in given.items():
        where = f"variables.{name}"
        if name not in declared:
            known = ", ".join(sorted(declared)) or "none"
            raise ValidationError(
                f"{where}: the playbook has no variable {quote(name)} (its variables: {known})",
                field=where,
            )
        kind = declared[name]["type"]
        if (isinstance(value, bool) and kind != "boolean") or not isinstance(value, _TYPES[kind]):
            raise ValidationError(f"{where} must be of type {kind}", field=where)
        if isinstance(value, str) and len(value) > MAX_VARIABLE_TEXT:
            raise ValidationError(
                f"{where} is longer than {MAX_VARIABLE_TEXT} characters", field=where
            )
    values = {
        name: variable["default"] for name, variable in declared.items() if "default" in variable
    }
    values.update(given)
    missing = [
        name
        for name, variable in declared.items()
        if variable.get("required") and name not in values
    ]
    if missing:
        raise ValidationError(
            f"variables.{missing[0]} is required: the playbook needs "
            + ", ".join(quote(m) for m in missing),
            field=f"variables.{missing[0]}",
        )
    return values


class Executions:
    """Start, cancel and read playbook executions (``on_change``: wake the engine)."""

    def __init__(
        self,
        db: Database,
        clock: Clock,
        bus: EventBus,
        playbooks: Playbooks,
        *,
        on_change: Callable[[], None] = lambda: None,
    ) -> None:
        self._db = db
        self._clock = clock
        self._bus = bus
        self._playbooks = playbooks
        self._step_types = playbooks.validator.step_types
        self.on_change = on_change

    async def start(
        self, slug: str, variables: dict[str, Any], *, actor: Actor, trigger: str = "manual"
    ) -> dict[str, Any]:
        """Start a run of the playbook's current version, by hand or by its inbound webhook
        (``trigger``) (``Conflict`` when a step cannot run, or another run of it is active;
        ``ValidationError`` for variables)."""
        now = self._clock.now()
        pending = PendingEvents()
        try:
            async with self._db.transaction() as session:
                playbook, version = await self._current(session, slug)
                blocked = not_runnable(version.definition, self._step_types)
                if blocked:
                    raise Conflict(
                        f"playbook {quote(slug)} cannot run here: no running is defined yet for "
                        f"the steps {', '.join(blocked)} (docs/playbooks.md)",
                        steps=blocked,
                    )
                values = check_variables(version.definition, variables)
                row = PlaybookExecution(
                    playbook_id=playbook.id,
                    version_id=version.id,
                    service_id=None,
                    alert_id=None,
                    trigger=trigger,
                    variables=values,
                    state="pending",
                    step_index=0,
                    attempt=0,
                    step_runs=0,
                    cancel_requested=False,
                    next_at=now,
                    active_key=active_key(playbook.id, None),
                    created_at=now,
                    updated_at=now,
                    created_by=actor.name,
                )
                session.add(row)
                await session.flush()
                document = execution_to_dict(row, slug, version.version, [])
                record_audit(
                    session,
                    actor=actor,
                    at=now,
                    action="playbook.run",
                    resource_type="playbook_execution",
                    resource_id=row.id,
                    after={"playbook": slug, "version": version.version, "variables": values},
                )
                pending.add("playbook.execution", now, **_event(row, slug))
        except IntegrityError:
            raise await self._already_active(slug) from None
        pending.publish(self._bus)
        self.on_change()
        return document

    async def _already_active(self, slug: str) -> Conflict:
        async with self._db.sessions() as session:
            playbook, _ = await self._current(session, slug)
            active = await session.scalar(
                select(PlaybookExecution.id).where(
                    PlaybookExecution.active_key == active_key(playbook.id, None)
                )
            )
        return Conflict(
            f"playbook {quote(slug)} already has an active run ({active}): one run per playbook "
            "and service at a time; cancel it or wait for it to end",
            active_execution=active,
        )

    async def _current(self, session: AsyncSession, slug: str) -> tuple[Playbook, PlaybookVersion]:
        playbook = await self._playbooks.find(session, slug)
        return playbook, await self._playbooks.version(session, playbook, playbook.current_version)

    async def cancel(self, execution_id: int, *, actor: Actor) -> dict[str, Any]:
        """Cancel a run: at once unless a step is running (then at its next transition)."""
        now = self._clock.now()
        pending = PendingEvents()
        async with self._db.transaction() as session:
            row = await self._row(session, execution_id, lock=True)
            if row.state in ENDED:
                raise Conflict(f"playbook run {execution_id} has already ended ({row.state})")
            row.cancel_requested = True
            row.updated_at = now
            if row.state != "running":
                await finish(
                    session,
                    pending,
                    row,
                    "cancelled",
                    now,
                    "cancelled",
                    f"cancelled by {actor.name}",
                )
            record_audit(
                session,
                actor=actor,
                at=now,
                action="playbook.cancel",
                resource_type="playbook_execution",
                resource_id=row.id,
                after={"state": row.state},
            )
        pending.publish(self._bus)
        self.on_change()
        return await self.get(execution_id)

    async def rerun(
        self, execution_id: int, *, from_step: str | None = None, actor: Actor
    ) -> dict[str, Any]:
        """Run an ended, failed run again from a step (default: the step it stopped at), on the
        version it pinned, with its variables: a new attempt of that step, every earlier step
        run kept (``steps.<name>.output`` of the steps before it still reads their latest
        result). Only a ``failed`` or ``timed_out`` run (``outcome_unknown`` included: a human
        checked the target); ``Conflict`` otherwise, or when another run of the playbook is
        active, or a step's type cannot run; ``ValidationError`` for an unknown step."""
        now = self._clock.now()
        pending = PendingEvents()
        try:
            async with self._db.transaction() as session:
                row = await self._row(session, execution_id, lock=True)
                if row.state not in RERUNNABLE:
                    raise Conflict(
                        f"playbook run {execution_id} is {row.state}: only a failed or timed "
                        "out run can be rerun"
                    )
                definition = await session.scalar(
                    select(PlaybookVersion.definition).where(PlaybookVersion.id == row.version_id)
                )
                assert definition is not None  # the run's version cascades with it
                slug, version = await _names(session, row)
                blocked = not_runnable(definition, self._step_types)
                if blocked:
                    raise Conflict(
                        f"playbook {quote(slug)} cannot run here: no running is defined for the "
                        f"steps {', '.join(blocked)} (docs/playbooks.md)",
                        steps=blocked,
                    )
                names = [step["name"] for step in definition["steps"]]
                if from_step is None:
                    index = min(row.step_index, len(names) - 1)
                elif from_step in names:
                    index = names.index(from_step)
                else:
                    raise ValidationError(
                        f"the run's version {version} has no step {quote(from_step)} "
                        f"(its steps: {', '.join(names)})",
                        field="from_step",
                    )
                # Attempts go on counting for the step: the rerun is its next attempt.
                attempts = await session.scalar(
                    select(func.max(PlaybookStepRun.attempt)).where(
                        PlaybookStepRun.execution_id == row.id,
                        PlaybookStepRun.step_index == index,
                    )
                )
                before = {"state": row.state, "reason": row.reason, "step_index": row.step_index}
                row.state, row.step_index, row.attempt = "pending", index, int(attempts or 0)
                row.reason = row.detail = row.finished_at = None
                row.cancel_requested = False
                row.next_at, row.updated_at = now, now
                row.lease_owner = row.lease_until = None
                row.active_key = active_key(row.playbook_id, row.service_id)
                await session.flush()
                record_audit(
                    session,
                    actor=actor,
                    at=now,
                    action="playbook.rerun",
                    resource_type="playbook_execution",
                    resource_id=row.id,
                    before=before,
                    after={"from_step": names[index], "step_index": index},
                )
                pending.add("playbook.execution", now, **_event(row, slug))
        except IntegrityError:
            raise await self._already_active_for(execution_id) from None
        pending.publish(self._bus)
        self.on_change()
        return await self.get(execution_id)

    async def _already_active_for(self, execution_id: int) -> Conflict:
        async with self._db.sessions() as session:
            row = await self._row(session, execution_id)
            active = await session.scalar(
                select(PlaybookExecution.id).where(
                    PlaybookExecution.active_key == active_key(row.playbook_id, row.service_id)
                )
            )
        return Conflict(
            f"playbook run {execution_id} cannot be rerun while run {active} of the same "
            "playbook and service is active; cancel it or wait for it to end",
            active_execution=active,
        )

    async def _row(
        self, session: AsyncSession, execution_id: int, *, lock: bool = False
    ) -> PlaybookExecution:
        query = select(PlaybookExecution).where(PlaybookExecution.id == execution_id)
        if lock and self._db.is_postgres:
            query = query.with_for_update()
        row = await session.scalar(query)
        if row is None:
            raise NotFound(f"no playbook run {execution_id}")
        return row

    async def health(self, *, overdue_after: float) -> tuple[str, str]:
        """How the engine is doing, as ``medic doctor`` shows it: ``("ok" | "degraded",
        detail)``. Degraded when an active run has been due for more than ``overdue_after``
        seconds (no engine is running, or it cannot keep up: the detail says how late the
        oldest is), or when a run failed with an unknown outcome and waits for a human."""
        now = self._clock.now()
        late = now - timedelta(seconds=overdue_after)
        active_runs = PlaybookExecution.state.in_(ACTIVE)
        async with self._db.sessions() as session:
            active = await session.scalar(
                select(func.count()).select_from(PlaybookExecution).where(active_runs)
            )
            overdue, oldest = (
                await session.execute(
                    select(func.count(), func.min(PlaybookExecution.next_at)).where(
                        active_runs, PlaybookExecution.next_at < late
                    )
                )
            ).one()
            unknown = await session.scalar(
                select(func.count())
                .select_from(PlaybookExecution)
                .where(
                    PlaybookExecution.state == "failed",
                    PlaybookExecution.reason == "outcome_unknown",
                )
            )
        problems = []
        if overdue and oldest is not None:
            behind = int((now - oldest).total_seconds())
            problems.append(
                f"{overdue} active run(s) overdue, the oldest by {behind} s: is a `medic serve` "
                "running against this database?"
            )
        if unknown:
            problems.append(
                f"{unknown} run(s) failed with an unknown step outcome and wait for a human "
                "(`medic playbook history`; rerun or close them)"
            )
        if problems:
            return "degraded", "; ".join(problems)
        return "ok", f"{active or 0} active run(s), none overdue"

    async def get(self, execution_id: int) -> dict[str, Any]:
        async with self._db.sessions() as session:
            row = await self._row(session, execution_id)
            slug, version = await _names(session, row)
            runs = (
                await session.scalars(
                    select(PlaybookStepRun)
                    .where(PlaybookStepRun.execution_id == row.id)
                    .order_by(PlaybookStepRun.id)
                )
            ).all()
        return execution_to_dict(row, slug, version, [step_run_to_dict(r) for r in runs])

    async def list(
        self,
        *,
        playbook: str | None = None,
        state: str | None = None,
        cursor: str | None = None,
        limit: int | None = None,
    ) -> Page[dict[str, Any]]:
        """Runs, newest first (filters: playbook slug, state)."""
        limit = check_limit(limit)
        query = (
            select(PlaybookExecution, Playbook.slug, PlaybookVersion.version)
            .join(Playbook, Playbook.id == PlaybookExecution.playbook_id)
            .join(PlaybookVersion, PlaybookVersion.id == PlaybookExecution.version_id)
        )
        if playbook is not None:
            query = query.where(Playbook.slug == playbook)
        if state is not None:
            if state not in STATES:
                raise ValidationError(f"state must be one of {', '.join(STATES)}", field="state")
            query = query.where(PlaybookExecution.state == state)
        async with self._db.sessions() as session:
            page = keyset(query, PlaybookExecution.id, cursor, limit, newest_first=True)
            rows = (await session.execute(page)).all()
        return rows_page(
            rows, limit, lambda r: execution_to_dict(r[0], r[1], r[2]), lambda r: r[0].id
        )


async def _names(session: AsyncSession, row: PlaybookExecution) -> tuple[str, int]:
    result = (
        await session.execute(
            select(Playbook.slug, PlaybookVersion.version)
            .join(PlaybookVersion, PlaybookVersion.playbook_id == Playbook.id)
            .where(PlaybookVersion.id == row.version_id)
        )
    ).one()
    return result[0], result[1]


def _event(row: PlaybookExecution, slug: str) -> dict[str, Any]:
    return {
        "execution_id": row.id,
        "playbook": slug,
        "state": row.state,
        "step_index": row.step_index,
        "reason": row.reason,
    }


async def finish(
    session: AsyncSession,
    pending: PendingEvents,
    row: PlaybookExecution,
    state: str,
    now: datetime,
    reason: str | None,
    detail: str | None,
) -> None:
    """End ``row`` in ``state`` (a step run still ``running`` is marked ``cancelled`` when the
    run is cancelled): the guard's key, the lease and ``next_at`` are released."""
    if state == "cancelled":
        running = await session.scalars(
            select(PlaybookStepRun).where(
                PlaybookStepRun.execution_id == row.id, PlaybookStepRun.state == "running"
            )
        )
        for run in running:
            run.state, run.finished_at = "cancelled", now
            pending.add("playbook.step", now, **step_event(run))
    row.state = state
    row.reason = reason
    row.detail = detail[:4000] if detail else detail
    row.finished_at = now
    row.updated_at = now
    row.next_at = None
    row.active_key = None
    row.lease_owner = None
    row.lease_until = None
    slug, _ = await _names(session, row)
    pending.add("playbook.execution", now, **_event(row, slug))


def step_event(run: PlaybookStepRun) -> dict[str, Any]:
    return {
        "execution_id": run.execution_id,
        "step": run.step_name,
        "index": run.step_index,
        "attempt": run.attempt,
        "state": run.state,
    }


def execution_event(row: PlaybookExecution, slug: str) -> dict[str, Any]:
    return _event(row, slug)
