"""Schedules: weekly wall-clock hours in an IANA zone, by which a target pages.

A **schedule** is weekly wall-clock hours in an IANA zone (``medic_core.notify.weekly``); it is
stored in canonical form, and cannot be deleted while a target's period refers to it. The router
(``medic_core.notify.router``) reads them; this module creates, lists, reads, updates and deletes
them for the API.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from medic_core.audit import Actor, record_audit
from medic_core.clock import Clock, isoformat
from medic_core.deadlines.cron import load_zone
from medic_core.errors import Conflict, NotFound
from medic_core.notify.tables import listing
from medic_core.notify.weekly import describe, parse_weekly
from medic_core.store import Database
from medic_core.store.models import NotificationTarget, Schedule
from medic_core.store.pagination import Page, check_limit, keyset, rows_page
from medic_core.validation import only_keys, quote, slug, text


def schedule_to_dict(schedule: Schedule) -> dict[str, Any]:
    return {
        "id": schedule.id,
        "slug": schedule.slug,
        "name": schedule.name,
        "timezone": schedule.timezone,
        "weekly": schedule.weekly,
        "created_at": isoformat(schedule.created_at),
        "updated_at": isoformat(schedule.updated_at),
    }


async def schedule_by_slug(session: AsyncSession, schedule_slug: str) -> Schedule:
    schedule = await session.scalar(select(Schedule).where(Schedule.slug == schedule_slug))
    if schedule is None:
        raise NotFound(
            f"no schedule {quote(schedule_slug)}: create it first (POST /api/v1/schedules)"
        )
    return schedule


def _timezone(value: object) -> str:
    return load_zone(value, field="timezone").key


def _weekly(value: object) -> list[dict[str, Any]]:
    return describe(parse_weekly(value, "weekly"))


class Schedules:
    def __init__(self, db: Database, clock: Clock) -> None:
        self._db = db
        self._clock = clock

    async def create(self, data: dict[str, Any], *, actor: Actor) -> dict[str, Any]:
        only_keys(data, {"slug", "name", "timezone", "weekly"}, "schedule")
        schedule_slug = slug(data.get("slug"))
        name = text(data.get("name", schedule_slug), "name", max_len=200)
        timezone = _timezone(data.get("timezone"))
        weekly = _weekly(data.get("weekly"))
        now = self._clock.now()
        async with self._db.transaction() as session:
            if await session.scalar(select(Schedule.id).where(Schedule.slug == schedule_slug)):
                raise Conflict(f"a schedule {quote(schedule_slug)} already exists")
            schedule = Schedule(
                slug=schedule_slug,
                name=name,
                timezone=timezone,
                weekly=weekly,
                created_at=now,
                updated_at=now,
            )
            session.add(schedule)
            await session.flush()
            body = schedule_to_dict(schedule)
            record_audit(
                session,
                actor=actor,
                at=now,
                action="schedule.create",
                resource_type="schedule",
                resource_id=schedule.id,
                after=body,
            )
        return body

    async def get(self, schedule_slug: str) -> dict[str, Any]:
        async with self._db.sessions() as session:
            return schedule_to_dict(await schedule_by_slug(session, schedule_slug))

    async def update(
        self, schedule_slug: str, data: dict[str, Any], *, actor: Actor
    ) -> dict[str, Any]:
        only_keys(data, {"name", "timezone", "weekly"}, "schedule update (the slug cannot change)")
        now = self._clock.now()
        async with self._db.transaction() as session:
            schedule = await schedule_by_slug(session, schedule_slug)
            before = schedule_to_dict(schedule)
            if "name" in data:
                schedule.name = text(data["name"], "name", max_len=200)
            if "timezone" in data:
                schedule.timezone = _timezone(data["timezone"])
            if "weekly" in data:
                schedule.weekly = _weekly(data["weekly"])
            schedule.updated_at = now
            body = schedule_to_dict(schedule)
            record_audit(
                session,
                actor=actor,
                at=now,
                action="schedule.update",
                resource_type="schedule",
                resource_id=schedule.id,
                before=before,
                after=body,
            )
        return body

    async def delete(self, schedule_slug: str, *, actor: Actor) -> None:
        now = self._clock.now()
        async with self._db.transaction() as session:
            schedule = await schedule_by_slug(session, schedule_slug)
            users = (
                await session.scalars(
                    select(NotificationTarget.slug)
                    .where(NotificationTarget.schedule_id == schedule.id)
                    .order_by(NotificationTarget.id)
                )
            ).all()
            if users:
                raise Conflict(
                    f"schedule {quote(schedule_slug)} is the period of target(s) "
                    f"{listing(users)}: "
                    "give them another schedule or period first (PATCH /api/v1/targets/{slug})"
                )
            record_audit(
                session,
                actor=actor,
                at=now,
                action="schedule.delete",
                resource_type="schedule",
                resource_id=schedule.id,
                before=schedule_to_dict(schedule),
            )
            await session.delete(schedule)

    async def list(
        self, *, cursor: str | None = None, limit: int | None = None
    ) -> Page[dict[str, Any]]:
        limit = check_limit(limit)
        query = keyset(select(Schedule), Schedule.id, cursor, limit)
        async with self._db.sessions() as session:
            rows = (await session.scalars(query)).all()
        return rows_page(rows, limit, schedule_to_dict, lambda schedule: schedule.id)
