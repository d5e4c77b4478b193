"""Routing: which targets an alert transition notifies, written to the outbox in the same
transaction as the transition (so a committed alert always has its deliveries, exactly once).

Who is paged for an alert of service S:
1. S's own targets (``NotificationTarget.service_id``), if it has any: an override;
2. else the targets of S's team, if it has any;
3. else the fallback targets (no team, no service).
Each target then filters by ``min_priority`` and by its ``period`` (working or off hours of its
schedule, evaluated at the moment of the transition). Escalation targets filter the same way.

Acknowledgement and resolution go to every target that was paged for the alert (so a Slack
message is updated, a PagerDuty incident acknowledged), whatever the filters say now.

Paging while an alert stays open and unacknowledged follows the team's escalation policy:
level ``i`` pages its targets ``after`` seconds from the first notification, and every
``repeat_every`` seconds everyone paged so far is reminded, at most ``max_reminders`` times.
``alerts.page_at`` holds the next such instant (indexed); the delivery service claims due ones.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal, cast
from zoneinfo import ZoneInfo

from sqlalchemy import Table, insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from medic_core.deadlines.cron import load_zone
from medic_core.events import PendingEvents
from medic_core.notify.weekly import WeeklyRange, parse_weekly, within
from medic_core.store import Database
from medic_core.store.models import (
    Alert,
    Delivery,
    EscalationPolicy,
    NotificationTarget,
    Schedule,
    Service,
    Team,
)
from medic_core.validation import PRIORITIES

_DELIVERIES = cast(Table, Delivery.__table__)
#: Deliveries that mean "this target was told about the alert".
PAGING_KINDS = ("opened", "escalated", "reminder")


@dataclass(frozen=True, slots=True)
class _Target:
    id: int
    slug: str
    team_id: int | None
    service_id: int | None
    min_priority: int
    period: str
    schedule: tuple[list[WeeklyRange], ZoneInfo] | None

    def accepts(self, priority: str, now: datetime) -> bool:
        if PRIORITIES.index(priority) > self.min_priority:
            return False
        if self.period == "always" or self.schedule is None:
            return self.period == "always"
        inside = within(self.schedule[0], self.schedule[1], now)
        return inside if self.period == "working_hours" else not inside


@dataclass(frozen=True, slots=True)
class _Policy:
    levels: list[tuple[int, list[str]]]  # (after seconds, target slugs)
    repeat_every: int | None
    max_reminders: int


class _Routes:
    """The routing tables, read once per transaction that needs them (they are small).

    Satisfies ``medic_core.alerts.outbox.Routes``: the alert book opens a batch of alerts with
    it (``first_page`` before the rows are inserted, ``queue_opened`` after).
    """

    def __init__(
        self,
        targets: list[_Target],
        policies: dict[int, _Policy],
        team_policy: dict[int, int],
    ) -> None:
        self.targets = targets
        self.by_slug = {t.slug: t for t in targets}
        self._policies = policies
        self._team_policy = team_policy

    def for_service(self, service: Service) -> list[_Target]:
        own = [t for t in self.targets if t.service_id == service.id]
        if own:
            return own
        team = [t for t in self.targets if t.team_id is not None and t.team_id == service.team_id]
        if team:
            return team
        return [t for t in self.targets if t.team_id is None and t.service_id is None]

    def policy(self, service: Service) -> _Policy | None:
        if service.team_id is None:
            return None
        policy_id = self._team_policy.get(service.team_id)
        return None if policy_id is None else self._policies.get(policy_id)

    def first_page(self, service: Service, alert: Alert, now: datetime) -> datetime | None:
        """When an alert first notified ``now`` is next escalated or reminded (None: never)."""
        return _next_page(self.policy(service), alert, now)

    async def queue_opened(
        self,
        session: AsyncSession,
        pending: PendingEvents,
        alerts: Sequence[tuple[Alert, Service]],
        now: datetime,
    ) -> int:
        """Queue the ``opened`` deliveries of alerts already inserted (their ids are known)."""
        rows: list[dict[str, Any]] = []
        for alert, service in alerts:
            for target in self.for_service(service):
                if target.accepts(alert.priority, now):
                    rows.append(_row(alert.id, target.id, "opened", 0, now))
        await _insert(session, pending, rows, now)
        return len(rows)


class Router:
    """Writes the outbox: satisfies ``medic_core.alerts.outbox.Outbox`` (the composition root
    hands it to the alert book) and pages due alerts for the delivery service."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def routes(self, session: AsyncSession) -> _Routes:
        """The routing tables, for opening alerts (``first_page``, ``queue_opened``)."""
        schedules: dict[int, tuple[list[WeeklyRange], ZoneInfo]] = {}
        for schedule in (await session.scalars(select(Schedule))).all():
            schedules[schedule.id] = (
                parse_weekly(schedule.weekly),
                load_zone(schedule.timezone, field="timezone"),
            )
        targets = [
            _Target(
                t.id,
                t.slug,
                t.team_id,
                t.service_id,
                PRIORITIES.index(t.min_priority),
                t.period,
                schedules.get(t.schedule_id) if t.schedule_id is not None else None,
            )
            for t in (
                await session.scalars(
                    select(NotificationTarget)
                    .where(NotificationTarget.enabled.is_(True))
                    .order_by(NotificationTarget.id)
                )
            ).all()
        ]
        policies = {
            p.id: _Policy(
                [(int(level["after"]), list(level["targets"])) for level in p.levels],
                p.repeat_every,
                p.max_reminders,
            )
            for p in (await session.scalars(select(EscalationPolicy))).all()
        }
        team_policy: dict[int, int] = {
            team_id: policy_id
            for team_id, policy_id in (
                await session.execute(
                    select(Team.id, Team.escalation_policy_id).where(
                        Team.escalation_policy_id.is_not(None)
                    )
                )
            ).all()
            if policy_id is not None
        }
        return _Routes(targets, policies, team_policy)

    # -- transitions (inside the caller's transaction) ------------------------------------------

    async def opened_in(
        self,
        session: AsyncSession,
        pending: PendingEvents,
        alerts: Sequence[tuple[Alert, Service]],
        now: datetime,
    ) -> int:
        """First notification of alerts (released from suppression): page now, plan paging."""
        if not alerts:
            return 0
        routes = await self.routes(session)
        for alert, service in alerts:
            alert.page_at = routes.first_page(service, alert, now)
        return await routes.queue_opened(session, pending, alerts, now)

    async def closed_in(
        self,
        session: AsyncSession,
        pending: PendingEvents,
        kind: Literal["acknowledged", "resolved"],
        alerts: Sequence[Alert],
        now: datetime,
    ) -> int:
        """``acknowledged`` or ``resolved``: tell every target that was paged; stop paging."""
        if not alerts:
            return 0
        ids = [a.id for a in alerts]
        for alert in alerts:
            alert.page_at = None
        # Reminders not yet sent are pointless now.
        await session.execute(
            update(_DELIVERIES)
            .where(
                _DELIVERIES.c.alert_id.in_(ids),
                _DELIVERIES.c.kind == "reminder",
                _DELIVERIES.c.status == "pending",
            )
            .values(status="cancelled", updated_at=now, next_attempt_at=None)
        )
        paged = (
            await session.execute(
                select(_DELIVERIES.c.alert_id, _DELIVERIES.c.target_id)
                .where(
                    _DELIVERIES.c.alert_id.in_(ids),
                    _DELIVERIES.c.kind.in_(PAGING_KINDS),
                    _DELIVERIES.c.status != "cancelled",
                )
                .distinct()
            )
        ).all()
        rows = [_row(alert_id, target_id, kind, 0, now) for alert_id, target_id in paged]
        await _insert(session, pending, rows, now)
        return len(rows)

    # -- escalation and reminders (the delivery service calls this) -----------------------------

    async def page_due_in(self, session: AsyncSession, now: datetime, limit: int) -> int:
        """Escalate and remind the open, unacknowledged alerts whose ``page_at`` has passed."""
        query = (
            select(Alert, Service)
            .join(Service, Service.id == Alert.service_id)
            .where(Alert.page_at.is_not(None), Alert.page_at <= now)
            .order_by(Alert.page_at)
            .limit(limit)
        )
        if self._db.is_postgres:
            query = query.with_for_update(skip_locked=True, of=Alert)
        due = (await session.execute(query)).all()
        if not due:
            return 0
        routes = await self.routes(session)
        rows: list[dict[str, Any]] = []
        for alert, service in due:
            policy = routes.policy(service)
            if alert.state != "open" or alert.suppressed or policy is None:
                alert.page_at = None
                continue
            since = alert.notified_at or alert.opened_at
            elapsed = (now - since).total_seconds()
            while alert.escalation_level < len(policy.levels):
                after, slugs = policy.levels[alert.escalation_level]
                if after > elapsed:
                    break
                alert.escalation_level += 1
                for slug in slugs:
                    target = routes.by_slug.get(slug)
                    if target is not None and target.accepts(alert.priority, now):
                        rows.append(
                            _row(alert.id, target.id, "escalated", alert.escalation_level, now)
                        )
            if policy.repeat_every and alert.reminders_sent < policy.max_reminders:
                reminder_at = since + timedelta(
                    seconds=policy.repeat_every * (alert.reminders_sent + 1)
                )
                if reminder_at <= now:
                    alert.reminders_sent += 1
                    paged = await session.execute(
                        select(_DELIVERIES.c.target_id)
                        .where(
                            _DELIVERIES.c.alert_id == alert.id,
                            _DELIVERIES.c.kind.in_(PAGING_KINDS),
                            _DELIVERIES.c.status != "cancelled",
                        )
                        .distinct()
                    )
                    targets = {target_id for (target_id,) in paged}
                    targets |= {r["target_id"] for r in rows if r["alert_id"] == alert.id}
                    rows += [
                        _row(alert.id, target_id, "reminder", alert.reminders_sent, now)
                        for target_id in sorted(targets)
                    ]
            alert.page_at = _next_page(policy, alert, now)
        await _insert(session, None, rows, now)
        return len(due)


async def _insert(
    session: AsyncSession,
    pending: PendingEvents | None,
    rows: list[dict[str, Any]],
    now: datetime,
) -> None:
    if not rows:
        return
    await session.execute(insert(_DELIVERIES), rows)
    if pending is not None:
        # After commit: wakes the delivery service. Transitions that queue nothing (no
        # targets) do not wake it, so an outage's alert storm costs it nothing.
        pending.add("deliveries.queued", now, count=len(rows))


def _row(alert_id: int, target_id: int, kind: str, level: int, now: datetime) -> dict[str, Any]:
    return {
        # The key makes every delivery unique: one opening per target, one escalation per level,
        # one reminder per round. A redone transaction cannot queue a second copy.
        "key": f"{alert_id}:{target_id}:{kind}:{level}",
        "alert_id": alert_id,
        "target_id": target_id,
        "kind": kind,
        "level": level,
        "status": "pending",
        "attempts": 0,
        "next_attempt_at": now,
        "created_at": now,
        "updated_at": now,
    }


def _next_page(policy: _Policy | None, alert: Alert, now: datetime) -> datetime | None:
    """The next escalation or reminder instant of an open alert, or None."""
    if policy is None:
        return None
    since = alert.notified_at or alert.opened_at
    candidates = []
    level = alert.escalation_level or 0
    if level < len(policy.levels):
        candidates.append(since + timedelta(seconds=policy.levels[level][0]))
    reminders = alert.reminders_sent or 0
    if policy.repeat_every and reminders < policy.max_reminders:
        candidates.append(since + timedelta(seconds=policy.repeat_every * (reminders + 1)))
    return min(candidates) if candidates else None
