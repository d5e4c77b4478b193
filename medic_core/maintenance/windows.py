"""Maintenance windows: storage, validation and "which windows cover this service now".

A window selects services (all, by slug, by tag or by team) between ``starts_at`` and
``ends_at``, optionally as a recurrence (a cron expression in the window's time zone opening an
occurrence of ``duration`` seconds). The occurrence math lives in ``occurrences.py``.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from medic_core.audit import Actor, record_audit
from medic_core.clock import Clock, isoformat
from medic_core.errors import NotFound, ValidationError
from medic_core.events import EventBus, PendingEvents
from medic_core.maintenance.occurrences import (
    MaintenanceSchedule,
    occurrence_at,
    parse_maintenance_schedule,
)
from medic_core.store import Database
from medic_core.store.models import Alert, MaintenanceWindow, Service, Team
from medic_core.store.pagination import Page, check_limit, decode_cursor, page_of
from medic_core.validation import only_keys, quote, slug, tags, text

_FIELDS = {
    "name",
    "reason",
    "selector",
    "starts_at",
    "ends_at",
    "timezone",
    "recurrence",
    "duration",
}


def schedule_of(window: MaintenanceWindow) -> MaintenanceSchedule:
    return MaintenanceSchedule(
        starts_at=window.starts_at,
        ends_at=window.ends_at,
        timezone=window.timezone,
        recurrence=window.recurrence,
        duration=window.duration,
    )


def window_to_dict(window: MaintenanceWindow, now: datetime | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": window.id,
        "name": window.name,
        "reason": window.reason,
        "selector": window.selector,
        "starts_at": isoformat(window.starts_at),
        "ends_at": isoformat(window.ends_at),
        "timezone": window.timezone,
        "recurrence": window.recurrence,
        "duration": window.duration,
        "created_at": isoformat(window.created_at),
        "updated_at": isoformat(window.updated_at),
    }
    if now is not None:
        occurrence = occurrence_at(schedule_of(window), now)
        body["active"] = occurrence is not None
        body["current_occurrence_ends_at"] = isoformat(occurrence[1]) if occurrence else None
    return body


def parse_selector(value: object) -> dict[str, Any]:
    if not isinstance(value, dict) or len(value) != 1:
        raise ValidationError(
            'selector must have exactly one of: {"all": true}, {"services": [slug, ...]}, '
            '{"tags": [tag, ...]}, {"team": slug}',
            field="selector",
        )
    ((key, val),) = value.items()
    if key == "all" and val is True:
        return {"all": True}
    if key == "services" and isinstance(val, list) and val:
        return {"services": sorted({slug(v, "selector.services") for v in val})}
    if key == "tags" and isinstance(val, list) and val:
        return {"tags": tags(val)}
    if key == "team":
        return {"team": slug(val, "selector.team")}
    raise ValidationError(
        f"selector {quote(key)} is not valid: use all (true), services (non-empty list), "
        "tags (non-empty list) or team (a team slug)",
        field="selector",
    )


def selects(selector: dict[str, Any], service: Service, team_slug: str | None) -> bool:
    if selector.get("all"):
        return True
    if "services" in selector:
        return service.slug in selector["services"]
    if "tags" in selector:
        return bool(set(selector["tags"]) & set(service.tags or []))
    if "team" in selector:
        return team_slug is not None and selector["team"] == team_slug
    return False


async def active_windows_for(
    session: AsyncSession, service: Service, now: datetime
) -> list[tuple[str, datetime]]:
    """``(name, end of the current occurrence)`` of every window covering ``service`` now."""
    windows = (
        await session.scalars(
            select(MaintenanceWindow).where(
                MaintenanceWindow.starts_at <= now, MaintenanceWindow.ends_at > now
            )
        )
    ).all()
    if not windows:
        return []
    team_slug = None
    if service.team_id is not None and any("team" in w.selector for w in windows):
        team_slug = await session.scalar(select(Team.slug).where(Team.id == service.team_id))
    found = []
    for window in windows:
        if not selects(window.selector, service, team_slug):
            continue
        occurrence = occurrence_at(schedule_of(window), now)
        if occurrence is not None:
            found.append((window.name, occurrence[1]))
    return found


class MaintenanceWindows:
    def __init__(
        self,
        db: Database,
        clock: Clock,
        bus: EventBus,
        *,
        on_change: Callable[[datetime], None] = lambda _at: None,
    ) -> None:
        self._db = db
        self._clock = clock
        self._bus = bus
        self._on_change = on_change

    def _parse(self, data: dict[str, Any], current: MaintenanceWindow | None) -> dict[str, Any]:
        only_keys(data, _FIELDS, "maintenance window")
        merged: dict[str, Any] = {}
        if current is not None:
            merged = {
                "name": current.name,
                "reason": current.reason,
                "selector": current.selector,
                "starts_at": current.starts_at,
                "ends_at": current.ends_at,
                "timezone": current.timezone,
                "recurrence": current.recurrence,
                "duration": current.duration,
            }
        merged.update(data)
        for required in ("name", "selector", "starts_at", "ends_at"):
            if merged.get(required) is None:
                raise ValidationError(f"{required} is required", field=required)
        schedule = parse_maintenance_schedule(
            merged["starts_at"],
            merged["ends_at"],
            merged.get("timezone") or "UTC",
            merged.get("recurrence"),
            merged.get("duration"),
        )
        return {
            "name": text(merged["name"], "name", max_len=200),
            "reason": text(merged.get("reason") or "", "reason", max_len=2000, allow_empty=True),
            "selector": parse_selector(merged["selector"]),
            "starts_at": schedule.starts_at,
            "ends_at": schedule.ends_at,
            "timezone": schedule.timezone,
            "recurrence": schedule.recurrence,
            "duration": schedule.duration,
        }

    async def _recheck_suppressed(self, session: AsyncSession, now: datetime) -> None:
        # A changed window may end a suppression early: let the monitor look at every held alert
        # again now (it pushes notify_at back out for those still covered).
        await session.execute(
            update(Alert)
            .where(Alert.resolved_at.is_(None), Alert.notify_at.is_not(None), Alert.notify_at > now)
            .values(notify_at=now)
        )

    async def create(self, data: dict[str, Any], *, actor: Actor) -> dict[str, Any]:
        fields = self._parse(data, None)
        now = self._clock.now()
        async with self._db.transaction() as session:
            window = MaintenanceWindow(**fields, created_at=now, updated_at=now)
            session.add(window)
            await session.flush()
            body = window_to_dict(window, now)
            record_audit(
                session,
                actor=actor,
                at=now,
                action="maintenance.create",
                resource_type="maintenance_window",
                resource_id=window.id,
                after=body,
            )
        self._bus.publish("maintenance.created", now, window=body)
        return body

    async def _get(self, session: AsyncSession, window_id: int) -> MaintenanceWindow:
        window = await session.get(MaintenanceWindow, window_id)
        if window is None:
            raise NotFound(f"no maintenance window with id {window_id}")
        return window

    async def get(self, window_id: int) -> dict[str, Any]:
        async with self._db.sessions() as session:
            return window_to_dict(await self._get(session, window_id), self._clock.now())

    async def update(self, window_id: int, data: dict[str, Any], *, actor: Actor) -> dict[str, Any]:
        now = self._clock.now()
        pending = PendingEvents()
        async with self._db.transaction() as session:
            window = await self._get(session, window_id)
            before = window_to_dict(window)
            for key, value in self._parse(data, window).items():
                setattr(window, key, value)
            window.updated_at = now
            body = window_to_dict(window, now)
            record_audit(
                session,
                actor=actor,
                at=now,
                action="maintenance.update",
                resource_type="maintenance_window",
                resource_id=window.id,
                before=before,
                after=window_to_dict(window),
            )
            await self._recheck_suppressed(session, now)
            pending.add("maintenance.updated", now, window=body)
        pending.publish(self._bus)
        self._on_change(now)
        return body

    async def delete(self, window_id: int, *, actor: Actor) -> None:
        now = self._clock.now()
        async with self._db.transaction() as session:
            window = await self._get(session, window_id)
            record_audit(
                session,
                actor=actor,
                at=now,
                action="maintenance.delete",
                resource_type="maintenance_window",
                resource_id=window.id,
                before=window_to_dict(window),
            )
            await session.delete(window)
            await self._recheck_suppressed(session, now)
        self._bus.publish("maintenance.deleted", now, id=window_id)
        self._on_change(now)

    async def list(
        self, *, active: bool | None = None, cursor: str | None = None, limit: int | None = None
    ) -> Page[dict[str, Any]]:
        limit = check_limit(limit)
        now = self._clock.now()
        query = select(MaintenanceWindow)
        if active is True:
            query = query.where(MaintenanceWindow.starts_at <= now, MaintenanceWindow.ends_at > now)
        elif active is False:
            query = query.where(MaintenanceWindow.ends_at <= now)
        after = decode_cursor(cursor)
        query = query.order_by(MaintenanceWindow.id.desc())
        items: list[dict[str, Any]] = []
        last_id: int | None = None
        async with self._db.sessions() as session:
            # "Active" for a recurring window depends on its occurrences, computed in Python:
            # read in chunks until the page (plus one row, to know whether more exist) is full.
            while len(items) <= limit:
                chunk_query = query if after is None else query.where(MaintenanceWindow.id < after)
                rows = (await session.scalars(chunk_query.limit(limit + 1))).all()
                for window in rows:
                    after = window.id
                    body = window_to_dict(window, now)
                    if active is not True or body["active"]:
                        items.append(body)
                        if len(items) <= limit:
                            last_id = window.id
                if len(rows) <= limit:
                    break
        return page_of(items, limit, last_id)
