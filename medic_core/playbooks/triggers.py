"""Alert triggers: start a playbook run when an alert matches one of its selectors, exactly once.

A scanning pass on the shared pass loop, not a bus subscriber, decides: the bus delivers after
commit and in memory, so an event lost to a crash between the commit and the delivery (or
arriving while the replica stops) would lose the trigger. The pass instead reads the database:
every unresolved, unsuppressed alert a live playbook's alert selector matches, old enough for
its ``open_for_minutes``, and not yet recorded in ``playbook_trigger_firings`` for that
(playbook, trigger, alert). The bus is only a doorbell: ``alert.opened``/``released``/
``resolved`` and ``playbook.changed`` wake the pass early; without them it still runs every
``max_sleep`` seconds and at the next ``open_for_minutes`` deadline it knows of.

Exactly once: firing records the (playbook, trigger index, alert) row in the same transaction
as the run it starts. Its unique constraint refuses a second record, so two replicas scanning
the same alert start one run between them, and a restart scans again without starting twice.

Guards, checked in that transaction (on PostgreSQL the service's row is locked first, so two
replicas check them one after the other): no active run of the playbook for the service
(``skipped_active``), fewer than ``runs_per_service_hour`` runs for the service in the last hour
(``skipped_rate``). A skipped trigger is recorded with its reason, counted in
``medic_playbook_triggers`` and logged; it does not fire again for that alert.

``cancel_on_resolve``: the same pass cancels, through ``Executions.cancel``, every active run an
alert started whose playbook version asks for it once that alert is resolved (scanned too, so a
missed ``alert.resolved`` event still cancels).

Only alerts opened at or after the playbook was created trigger it: applying a new playbook
does not start runs for every alert already open.
"""

from __future__ import annotations

import fnmatch
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import exists, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from medic_core.alerts.documents import alert_to_dict, service_brief
from medic_core.audit import Actor, record_audit
from medic_core.clock import Clock
from medic_core.errors import Conflict, NotFound, ValidationError
from medic_core.events import Event, EventBus, PendingEvents
from medic_core.observability.metrics import Metrics
from medic_core.passes import Pass, PassLoop
from medic_core.playbooks.executions import (
    ACTIVE,
    Executions,
    active_key,
    check_variables,
    execution_event,
    not_runnable,
)
from medic_core.playbooks.steptypes import StepTypes
from medic_core.store import Database
from medic_core.store.models import (
    Alert,
    Playbook,
    PlaybookExecution,
    PlaybookTriggerFiring,
    PlaybookVersion,
    Service,
    Team,
)

log = logging.getLogger(__name__)

TRIGGER_ACTOR = Actor("trigger:alert")
RESOLVE_ACTOR = Actor("trigger:alert-resolved")
#: Alerts read per query while scanning (the scan goes on page by page).
PAGE = 500
_WAKING = frozenset({"alert.opened", "alert.released", "alert.resolved", "playbook.changed"})


@dataclass(frozen=True, slots=True)
class AlertTrigger:
    """One alert trigger of a live playbook's current version."""

    playbook: Playbook
    version: PlaybookVersion
    index: int
    selector: dict[str, Any]

    @property
    def open_for(self) -> timedelta:
        return timedelta(minutes=int(self.selector.get("open_for_minutes", 0)))


@dataclass(frozen=True, slots=True)
class TriggerPass:
    fired: dict[str, int]
    cancelled: int
    next_due: datetime | None


def matches(selector: dict[str, Any], alert: Alert, service: Service, team: str | None) -> bool:
    """Whether ``alert`` (of ``service``, owned by the team slug ``team``) is selected: every
    criterion given must hold (services: any glob matches the slug; tags: the service has them
    all)."""
    globs = selector.get("services")
    if globs and not any(fnmatch.fnmatchcase(service.slug, g) for g in globs):
        return False
    if not set(selector.get("tags") or ()) <= set(service.tags or ()):
        return False
    if "team" in selector and selector["team"] != team:
        return False
    if "causes" in selector and alert.cause not in selector["causes"]:
        return False
    return "priorities" not in selector or alert.priority in selector["priorities"]


class AlertTriggers:
    """The pass that fires alert triggers and cancels runs whose alert resolved."""

    def __init__(
        self,
        db: Database,
        clock: Clock,
        bus: EventBus,
        metrics: Metrics,
        step_types: StepTypes,
        executions: Executions,
        *,
        runs_per_service_hour: int,
        max_sleep: float = 10.0,
    ) -> None:
        if not 1 <= runs_per_service_hour <= 10_000:
            raise ValueError("MEDIC_PLAYBOOK_RUNS_PER_SERVICE_HOUR must be between 1 and 10000")
        self._db = db
        self._clock = clock
        self._bus = bus
        self._metrics = metrics
        self._types = step_types
        self._executions = executions
        self._per_hour = runs_per_service_hour
        self._loop = PassLoop("playbook-triggers", self._pass, clock, max_sleep=max_sleep)

    async def on_event(self, event: Event) -> None:
        """Bus subscriber: look at once (the scan, not the event, is what fires)."""
        if event.type in _WAKING:
            self._loop.wake()

    async def start(self) -> None:
        await self._loop.start()

    async def stop(self, timeout: float = 10.0) -> None:
        await self._loop.stop(timeout)

    async def _pass(self) -> Pass:
        result = await self.run_once()
        return Pass(False, result.next_due)

    async def run_once(self) -> TriggerPass:
        now = self._clock.now()
        fired: dict[str, int] = {}
        deadlines: list[datetime] = []
        for trigger in await self._triggers():
            async for alert, service, team in self._candidates(trigger, now):
                outcome = await self._fire(trigger, alert, service, team, now)
                fired[outcome] = fired.get(outcome, 0) + 1
            if trigger.open_for:
                due = await self._next_mature(trigger, now)
                if due is not None:
                    deadlines.append(due)
        cancelled = await self._cancel_resolved()
        return TriggerPass(fired, cancelled, min(deadlines) if deadlines else None)

    # -- finding ---------------------------------------------------------------------------------

    async def _triggers(self) -> list[AlertTrigger]:
        async with self._db.sessions() as session:
            rows = (
                await session.execute(
                    select(Playbook, PlaybookVersion)
                    .join(
                        PlaybookVersion,
                        (PlaybookVersion.playbook_id == Playbook.id)
                        & (PlaybookVersion.version == Playbook.current_version),
                    )
                    .where(Playbook.deleted_at.is_(None))
                    .order_by(Playbook.id)
                )
            ).all()
        found = []
        for playbook, version in rows:
            for index, trigger in enumerate(version.definition.get("triggers") or []):
                if trigger.get("kind") == "alert":
                    found.append(AlertTrigger(playbook, version, index, trigger["selector"]))
        return found

    def _unfired(self, trigger: AlertTrigger) -> Any:
        """Unresolved, unsuppressed alerts opened since the playbook exists, not yet recorded
        for this trigger (the selector's causes and priorities applied in SQL)."""
        already = exists().where(
            PlaybookTriggerFiring.playbook_id == trigger.playbook.id,
            PlaybookTriggerFiring.trigger_index == trigger.index,
            PlaybookTriggerFiring.alert_id == Alert.id,
        )
        conditions = [
            Alert.resolved_at.is_(None),
            Alert.suppressed.is_(False),
            Alert.opened_at >= trigger.playbook.created_at,
            ~already,
        ]
        if "causes" in trigger.selector:
            conditions.append(Alert.cause.in_(trigger.selector["causes"]))
        if "priorities" in trigger.selector:
            conditions.append(Alert.priority.in_(trigger.selector["priorities"]))
        return conditions

    async def _candidates(
        self, trigger: AlertTrigger, now: datetime
    ) -> AsyncIterator[tuple[Alert, Service, str | None]]:
        after = 0
        while True:
            async with self._db.sessions() as session:
                rows = (
                    await session.execute(
                        select(Alert, Service, Team.slug)
                        .join(Service, Service.id == Alert.service_id)
                        .outerjoin(Team, Team.id == Service.team_id)
                        .where(
                            *self._unfired(trigger),
                            Alert.opened_at <= now - trigger.open_for,
                            Alert.id > after,
                        )
                        .order_by(Alert.id)
                        .limit(PAGE)
                    )
                ).all()
            for alert, service, team in rows:
                if matches(trigger.selector, alert, service, team):
                    yield alert, service, team
            if len(rows) < PAGE:
                return
            after = rows[-1][0].id

    async def _next_mature(self, trigger: AlertTrigger, now: datetime) -> datetime | None:
        """When the next alert reaches the trigger's ``open_for_minutes`` (None: none waits)."""
        async with self._db.sessions() as session:
            oldest = await session.scalar(
                select(func.min(Alert.opened_at)).where(
                    *self._unfired(trigger), Alert.opened_at > now - trigger.open_for
                )
            )
        return None if oldest is None else oldest + trigger.open_for

    # -- firing ----------------------------------------------------------------------------------

    async def _fire(
        self,
        trigger: AlertTrigger,
        alert: Alert,
        service: Service,
        team: str | None,
        now: datetime,
    ) -> str:
        """Record the trigger for ``alert`` and start a run unless a guard refuses: the
        outcome (``raced`` when another replica recorded it first)."""
        playbook, version = trigger.playbook, trigger.version
        pending = PendingEvents()
        try:
            async with self._db.transaction() as session:
                if self._db.is_postgres:  # the guards of one service, checked one at a time
                    await session.execute(
                        select(Service.id).where(Service.id == service.id).with_for_update()
                    )
                firing = PlaybookTriggerFiring(
                    playbook_id=playbook.id,
                    trigger_index=trigger.index,
                    alert_id=alert.id,
                    outcome="started",
                    fired_at=now,
                )
                session.add(firing)
                await session.flush()  # a second record of this trigger fails here
                outcome, detail = await self._guard(session, trigger, service.id, now)
                if outcome == "started":
                    row = self._new_run(trigger, alert, service, now)
                    session.add(row)
                    await session.flush()
                    firing.execution_id = row.id
                    record_audit(
                        session,
                        actor=TRIGGER_ACTOR,
                        at=now,
                        action="playbook.run",
                        resource_type="playbook_execution",
                        resource_id=row.id,
                        after={
                            "playbook": playbook.slug,
                            "version": version.version,
                            "alert": alert.id,
                            "trigger": trigger.index,
                        },
                    )
                    pending.add("playbook.execution", now, **execution_event(row, playbook.slug))
                firing.outcome, firing.detail = outcome, detail
        except IntegrityError:
            # Another replica recorded this trigger first, or started a run of this playbook
            # for the service meanwhile: nothing is recorded here, and the next pass decides
            # again (it then sees the record, or the active run).
            return "raced"
        self._metrics.playbook_triggers.labels("alert", outcome).inc()
        if outcome == "started":
            log.info(
                "playbook %s started by alert %s (service %s)",
                playbook.slug,
                alert.id,
                service.slug,
            )
            pending.publish(self._bus)
            self._executions.on_change()
        else:
            log.warning(
                "playbook %s not started for alert %s (service %s): %s",
                playbook.slug,
                alert.id,
                service.slug,
                detail,
            )
        return outcome

    async def _guard(
        self, session: AsyncSession, trigger: AlertTrigger, service_id: int, now: datetime
    ) -> tuple[str, str | None]:
        definition = trigger.version.definition
        blocked = not_runnable(definition, self._types)
        if blocked:
            return "skipped_not_runnable", "no running is defined for " + ", ".join(blocked)
        active = await session.scalar(
            select(PlaybookExecution.id).where(
                PlaybookExecution.active_key == active_key(trigger.playbook.id, service_id)
            )
        )
        if active is not None:
            return "skipped_active", f"run {active} of this playbook for the service is active"
        recent = await session.scalar(
            select(func.count())
            .select_from(PlaybookExecution)
            .where(
                PlaybookExecution.service_id == service_id,
                PlaybookExecution.created_at > now - timedelta(hours=1),
            )
        )
        if (recent or 0) >= self._per_hour:
            return (
                "skipped_rate",
                f"{recent} runs for the service in the last hour "
                f"(MEDIC_PLAYBOOK_RUNS_PER_SERVICE_HOUR={self._per_hour})",
            )
        try:
            check_variables(definition, {})
        except ValidationError as exc:
            return "skipped_invalid", str(exc)
        return "started", None

    def _new_run(
        self, trigger: AlertTrigger, alert: Alert, service: Service, now: datetime
    ) -> PlaybookExecution:
        return PlaybookExecution(
            playbook_id=trigger.playbook.id,
            version_id=trigger.version.id,
            service_id=service.id,
            alert_id=alert.id,
            trigger="alert",
            variables=check_variables(trigger.version.definition, {}),
            trigger_context={
                "alert": alert_to_dict(alert, service),
                "service": service_brief(service),
            },
            state="pending",
            step_index=0,
            attempt=0,
            step_runs=0,
            cancel_requested=False,
            next_at=now,
            active_key=active_key(trigger.playbook.id, service.id),
            created_at=now,
            updated_at=now,
            created_by=TRIGGER_ACTOR.name,
        )

    # -- cancel_on_resolve -----------------------------------------------------------------------

    async def _cancel_resolved(self) -> int:
        """Cancel the active runs whose alert resolved and whose version asks for it (read page
        by page: runs that do not ask are passed over, never in the way of those that do)."""
        cancelled = 0
        after = 0
        while True:
            async with self._db.sessions() as session:
                rows = (
                    await session.execute(
                        select(PlaybookExecution.id, PlaybookVersion.definition, Alert.id)
                        .join(PlaybookVersion, PlaybookVersion.id == PlaybookExecution.version_id)
                        .join(Alert, Alert.id == PlaybookExecution.alert_id)
                        .where(
                            PlaybookExecution.state.in_(ACTIVE),
                            PlaybookExecution.cancel_requested.is_(False),
                            Alert.resolved_at.is_not(None),
                            PlaybookExecution.id > after,
                        )
                        .order_by(PlaybookExecution.id)
                        .limit(PAGE)
                    )
                ).all()
            for execution_id, definition, alert_id in rows:
                if definition.get("cancel_on_resolve") and await self._cancel(
                    execution_id, alert_id
                ):
                    cancelled += 1
            if len(rows) < PAGE:
                return cancelled
            after = rows[-1][0]

    async def _cancel(self, execution_id: int, alert_id: int) -> bool:
        try:
            await self._executions.cancel(execution_id, actor=RESOLVE_ACTOR)
        except (Conflict, NotFound):
            return False  # it ended meanwhile
        log.info("playbook run %s cancelled: alert %s resolved", execution_id, alert_id)
        self._metrics.playbook_triggers.labels("alert", "cancelled_on_resolve").inc()
        return True
