"""The alert book: opening, acknowledging and resolving alerts.

Every transition is written with its audit entry in the caller's transaction and announced on the
event bus after commit (``alert.opened``, ``alert.acknowledged``, ``alert.resolved``, and
``alert.released`` when a suppressed alert's mute or maintenance ends while it is unresolved).

The ``*_in`` methods work inside a transaction the caller owns (the heartbeat writer's batch,
the monitor's claim), so an alert and the state change that caused it commit together. Opening
relies on the caller holding the service row (``FOR UPDATE`` on PostgreSQL, the single writer on
SQLite); the partial unique index is the backstop, caught in a savepoint.

Each transition also queues its notifications in the same transaction, through the ``Outbox``
the book is given (``outbox.py``; the composition root passes ``notify.router.Router``).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Table, func, insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from medic_core.alerts.documents import alert_to_dict
from medic_core.alerts.outbox import Outbox
from medic_core.alerts.suppression import any_window_active, mute_active, suppression_for
from medic_core.audit import SYSTEM, Actor, AuditRecord, record_audit, record_audit_many
from medic_core.clock import Clock
from medic_core.errors import Conflict, NotFound, ValidationError
from medic_core.events import EventBus, PendingEvents
from medic_core.observability.metrics import Metrics
from medic_core.store import Database
from medic_core.store.models import Alert, Service
from medic_core.store.pagination import Page, check_limit, keyset, rows_page

log = logging.getLogger(__name__)
CAUSES = ("missed", "failed", "overrun", "agent_offline")


@dataclass(frozen=True, slots=True)
class Opening:
    """An alert to open: its service, cause, one-line summary and details."""

    service: Service
    cause: str
    summary: str
    details: dict[str, Any] = field(default_factory=dict)


STATES = ("open", "acknowledged", "resolved")
_ALERTS = cast(Table, Alert.__table__)
_ALERT_COLUMNS = tuple(c.name for c in _ALERTS.columns)


def _alert_row(alert: Alert) -> dict[str, Any]:
    return {name: getattr(alert, name) for name in _ALERT_COLUMNS}


class AlertBook:
    def __init__(
        self,
        db: Database,
        clock: Clock,
        bus: EventBus,
        metrics: Metrics,
        outbox: Outbox,
    ) -> None:
        self._db = db
        self._clock = clock
        self._bus = bus
        self._metrics = metrics
        # Queues the notifications of each transition in the transition's own transaction.
        self._outbox = outbox

    # -- inside a caller's transaction -------------------------------------------------------

    async def open_in(
        self,
        session: AsyncSession,
        pending: PendingEvents,
        service: Service,
        cause: str,
        *,
        summary: str,
        now: datetime,
        details: dict[str, Any] | None = None,
    ) -> Alert | None:
        """Open an alert unless one for (service, cause) is unresolved; return it or None."""
        opened = await self.open_many_in(
            session, pending, [Opening(service, cause, summary, details or {})], now=now
        )
        return opened[0] if opened else None

    async def open_many_in(
        self,
        session: AsyncSession,
        pending: PendingEvents,
        openings: Sequence[Opening],
        *,
        now: datetime,
    ) -> list[Alert]:
        """Open alerts for several (service, cause) pairs in a constant number of statements.

        Pairs with an unresolved alert are skipped. Suppression is looked up per service only
        when it can apply (a muted service, or any maintenance window active now). If the
        unique index still reports a duplicate (another transaction opened one meanwhile), the
        batch is redone one alert at a time, each in its own savepoint.
        """
        if not openings:
            return []
        rows = await session.execute(
            select(Alert.service_id, Alert.cause).where(
                Alert.service_id.in_({o.service.id for o in openings}),
                Alert.cause.in_({o.cause for o in openings}),
                Alert.resolved_at.is_(None),
            )
        )
        already: set[tuple[int, str]] = {(service_id, cause) for service_id, cause in rows}
        window_active = await any_window_active(session, now)
        fresh: list[tuple[Alert, Service]] = []
        for opening in openings:
            key = (opening.service.id, opening.cause)
            if key in already:
                continue
            already.add(key)
            reason, notify_at = None, None
            if window_active or mute_active(opening.service, now):
                reason, notify_at = await suppression_for(session, opening.service, now)
            alert = Alert(
                service_id=opening.service.id,
                cause=opening.cause,
                state="open",
                priority=opening.service.priority,
                summary=opening.summary[:500],
                details=opening.details,
                opened_at=now,
                suppressed=reason is not None,
                suppressed_reason=reason,
                notify_at=notify_at,
                notified_at=None if reason is not None else now,
            )
            fresh.append((alert, opening.service))
        if not fresh:
            return []
        # The alerts are inserted with Core, not flushed as ORM objects (a quarter of the
        # monitor's CPU per alert during an outage): ids are taken first, so deliveries, audit
        # entries and events can name them, and the first escalation instant is known before
        # the insert. The objects stay transient; later reads in the transaction load rows.
        unsuppressed = [(a, s) for a, s in fresh if not a.suppressed]
        routes = await self._outbox.routes(session) if unsuppressed else None
        try:
            async with session.begin_nested():
                ids = await self._db.take_ids(session, Alert, len(fresh))
                for (alert, service), alert_id in zip(fresh, ids, strict=True):
                    alert.id = alert_id
                    alert.escalation_level = 0
                    alert.reminders_sent = 0
                    alert.page_at = (
                        None
                        if routes is None or alert.suppressed
                        else routes.first_page(service, alert, now)
                    )
                await session.execute(insert(_ALERTS), [_alert_row(a) for a, _ in fresh])
        except IntegrityError:
            if len(openings) == 1:
                return []  # another transaction opened it first; that one is the alert
            log.warning("an alert was opened concurrently; opening this batch one by one")
            opened: list[Alert] = []
            for opening in openings:
                opened += await self.open_many_in(session, pending, [opening], now=now)
            return opened
        records = []
        for alert, service in fresh:
            body = alert_to_dict(alert, service)
            records.append(AuditRecord("alert.open", "alert", alert.id, after=body))
            pending.add("alert.opened", now, alert=body)
            self._metrics.alerts.labels(alert.cause, "open").inc()
        await record_audit_many(session, actor=SYSTEM, at=now, entries=records)
        if routes is not None:
            await routes.queue_opened(session, pending, unsuppressed, now)
        return [a for a, _ in fresh]

    async def resolve_in(
        self,
        session: AsyncSession,
        pending: PendingEvents,
        service: Service,
        causes: tuple[str, ...],
        *,
        now: datetime,
        resolution: str,
        actor: Actor = SYSTEM,
    ) -> list[Alert]:
        """Resolve the unresolved alerts of ``service`` with one of ``causes``."""
        return await self.resolve_many_in(
            session, pending, [(service.id, actor)], causes, now=now, resolution=resolution
        )

    async def resolve_many_in(
        self,
        session: AsyncSession,
        pending: PendingEvents,
        closings: Sequence[tuple[int, Actor]],
        causes: tuple[str, ...],
        *,
        now: datetime,
        resolution: str,
    ) -> list[Alert]:
        """Resolve the unresolved alerts with one of ``causes`` of several services (by id),
        each in the name of the actor given with it: one query when there is nothing to resolve
        (the usual case: a fleet of agents saying Hello after a restart)."""
        if not closings:
            return []
        actors = dict(closings)
        rows = (
            await session.execute(
                select(Alert, Service)
                .join(Service, Service.id == Alert.service_id)
                .where(
                    Alert.service_id.in_(list(actors)),
                    Alert.cause.in_(causes),
                    Alert.resolved_at.is_(None),
                )
                .order_by(Alert.id)
            )
        ).all()
        for alert, service in rows:
            self._resolve(
                session,
                pending,
                alert,
                service,
                now=now,
                actor=actors[alert.service_id],
                note=resolution,
            )
        alerts = [alert for alert, _ in rows]
        await self._outbox.closed_in(session, pending, "resolved", alerts, now)
        return alerts

    def _resolve(
        self,
        session: AsyncSession,
        pending: PendingEvents,
        alert: Alert,
        service: Service,
        *,
        now: datetime,
        actor: Actor,
        note: str,
    ) -> None:
        before = alert_to_dict(alert, service)
        alert.state = "resolved"
        alert.resolved_at = now
        alert.resolved_by = actor.name
        alert.resolution = note[:500]
        alert.notify_at = None
        after = alert_to_dict(alert, service)
        record_audit(
            session,
            actor=actor,
            at=now,
            action="alert.resolve",
            resource_type="alert",
            resource_id=alert.id,
            before=before,
            after=after,
        )
        pending.add("alert.resolved", now, alert=after)
        self._metrics.alerts.labels(alert.cause, "resolved").inc()

    async def release_due_in(
        self, session: AsyncSession, pending: PendingEvents, now: datetime, limit: int
    ) -> int:
        """Notify suppressed alerts whose suppression has ended and that are still unresolved."""
        query = (
            select(Alert, Service)
            .join(Service, Service.id == Alert.service_id)
            .where(Alert.notify_at.is_not(None), Alert.notify_at <= now)
            .order_by(Alert.notify_at)
            .limit(limit)
        )
        if self._db.is_postgres:
            query = query.with_for_update(skip_locked=True, of=Alert)
        rows = (await session.execute(query)).all()
        released: list[tuple[Alert, Service]] = []
        for alert, service in rows:
            reason, notify_at = await suppression_for(session, service, now)
            if reason is not None:
                # Still suppressed (a new window, a longer mute): look again when that ends.
                alert.suppressed_reason = reason
                alert.notify_at = notify_at
                continue
            alert.suppressed = False
            alert.notify_at = None
            alert.notified_at = now
            released.append((alert, service))
            pending.add("alert.released", now, alert=alert_to_dict(alert, service))
        await self._outbox.opened_in(session, pending, released, now)
        return len(rows)

    # -- whole operations (own transaction) --------------------------------------------------

    async def _load(self, session: AsyncSession, alert_id: int) -> tuple[Alert, Service]:
        query = select(Alert, Service).join(Service, Service.id == Alert.service_id)
        row = (await session.execute(query.where(Alert.id == alert_id))).first()
        if row is None:
            raise NotFound(f"no alert with id {alert_id}")
        return row[0], row[1]

    async def get(self, alert_id: int) -> dict[str, Any]:
        async with self._db.sessions() as session:
            alert, service = await self._load(session, alert_id)
            return alert_to_dict(alert, service)

    async def acknowledge(self, alert_id: int, *, actor: Actor) -> dict[str, Any]:
        now = self._clock.now()
        pending = PendingEvents()
        async with self._db.transaction() as session:
            alert, service = await self._load(session, alert_id)
            if alert.state != "open":
                raise Conflict(
                    f"alert {alert_id} is {alert.state}: only an open alert can be acknowledged"
                )
            before = alert_to_dict(alert, service)
            alert.state = "acknowledged"
            alert.acknowledged_at = now
            alert.acknowledged_by = actor.name
            after = alert_to_dict(alert, service)
            record_audit(
                session,
                actor=actor,
                at=now,
                action="alert.acknowledge",
                resource_type="alert",
                resource_id=alert.id,
                before=before,
                after=after,
            )
            pending.add("alert.acknowledged", now, alert=after)
            await self._outbox.closed_in(session, pending, "acknowledged", [alert], now)
        self._metrics.alerts.labels(alert.cause, "acknowledged").inc()
        pending.publish(self._bus)
        return after

    async def resolve(
        self, alert_id: int, *, actor: Actor, note: str | None = None
    ) -> dict[str, Any]:
        now = self._clock.now()
        pending = PendingEvents()
        async with self._db.transaction() as session:
            alert, service = await self._load(session, alert_id)
            if alert.state == "resolved":
                raise Conflict(f"alert {alert_id} is already resolved")
            self._resolve(
                session,
                pending,
                alert,
                service,
                now=now,
                actor=actor,
                note=note or f"resolved by {actor.name}",
            )
            await self._outbox.closed_in(session, pending, "resolved", [alert], now)
            body = alert_to_dict(alert, service)
        pending.publish(self._bus)
        return body

    async def list(
        self,
        *,
        state: str | None = None,
        cause: str | None = None,
        service: str | None = None,
        unresolved: bool | None = None,
        cursor: str | None = None,
        limit: int | None = None,
    ) -> Page[dict[str, Any]]:
        limit = check_limit(limit)
        query = select(Alert, Service).join(Service, Service.id == Alert.service_id)
        if state is not None:
            if state not in STATES:
                raise ValidationError(f"state must be one of {', '.join(STATES)}", field="state")
            query = query.where(Alert.state == state)
        if cause is not None:
            if cause not in CAUSES:
                raise ValidationError(f"cause must be one of {', '.join(CAUSES)}", field="cause")
            query = query.where(Alert.cause == cause)
        if service is not None:
            query = query.where(Service.slug == service)
        if unresolved is not None:
            query = query.where(
                Alert.resolved_at.is_(None) if unresolved else Alert.resolved_at.is_not(None)
            )
        query = keyset(query, Alert.id, cursor, limit, newest_first=True)
        async with self._db.sessions() as session:
            rows = (await session.execute(query)).all()
        return rows_page(
            rows, limit, lambda row: alert_to_dict(row[0], row[1]), lambda row: row[0].id
        )

    async def count_unresolved(self) -> dict[str, int]:
        async with self._db.sessions() as session:
            rows = await session.execute(
                select(Alert.cause, func.count())
                .where(Alert.resolved_at.is_(None))
                .group_by(Alert.cause)
            )
            return {cause: int(n) for cause, n in rows.all()}
