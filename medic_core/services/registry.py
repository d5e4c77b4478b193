"""The service registry: create, change, list, mute, pause and delete services.

Every change that touches the expectation recomputes the stored deadline (``next_due``) in the
same transaction, then tells the monitor (``on_deadline``) so it can wake early for a deadline
sooner than the one it sleeps towards.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from sqlalchemy import String, cast, delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from medic_core import validation as v
from medic_core.alerts import AlertBook
from medic_core.audit import Actor, record_audit
from medic_core.clock import Clock, isoformat
from medic_core.deadlines import (
    expectation_to_dict,
    parse_expectation,
    quorum_memory,
    validate_grace,
)
from medic_core.errors import Conflict, NotFound, ValidationError
from medic_core.events import EventBus, PendingEvents
from medic_core.services.deadlines import display_state, recompute, record_beat
from medic_core.store import Database
from medic_core.store.models import Alert, Heartbeat, JobRun, Service, Team
from medic_core.store.pagination import Page, check_limit, keyset, rows_page
from medic_core.validation import quote

STATES = ("new", "up", "late", "down", "paused")
#: Slugs of agents' own services (``agent-<agent id>``, made by the agent hub): people may not
#: create services under it, so no agent id can ever name a service someone else made.
AGENT_SLUG_PREFIX = "agent-"
_CREATE_FIELDS = {
    "slug",
    "name",
    "team",
    "tags",
    "priority",
    "runbook_url",
    "description",
    "expectation",
    "grace",
    "max_duration",
}
_UPDATE_FIELDS = _CREATE_FIELDS - {"slug"}
_MAX_SECONDS = 31_536_000


def service_to_dict(
    service: Service, now: datetime, team_slug: str | None = None
) -> dict[str, Any]:
    muted = service.muted and (service.muted_until is None or service.muted_until > now)
    return {
        "id": service.id,
        "slug": service.slug,
        "name": service.name,
        "team": team_slug,
        "tags": list(service.tags or []),
        "priority": service.priority,
        "runbook_url": service.runbook_url,
        "description": service.description,
        "expectation": service.expectation,
        "grace": service.grace,
        "max_duration": service.max_duration,
        "state": display_state(service, now),
        "last_heartbeat_at": isoformat(service.last_heartbeat_at),
        "last_status": service.last_status,
        "expected_at": isoformat(service.expected_at),
        "next_due": isoformat(service.next_due),
        "muted": muted,
        "muted_until": isoformat(service.muted_until) if muted else None,
        "mute_reason": service.mute_reason if muted else None,
        "paused_at": isoformat(service.paused_at),
        "created_at": isoformat(service.created_at),
        "updated_at": isoformat(service.updated_at),
    }


class ServiceRegistry:
    def __init__(
        self,
        db: Database,
        clock: Clock,
        bus: EventBus,
        alerts: AlertBook,
        *,
        on_deadline: Callable[[datetime], None] = lambda _at: None,
    ) -> None:
        self._db = db
        self._clock = clock
        self._bus = bus
        self._alerts = alerts
        self._on_deadline = on_deadline

    # -- reading -------------------------------------------------------------------------------

    async def _team_slug(self, session: AsyncSession, service: Service) -> str | None:
        if service.team_id is None:
            return None
        return await session.scalar(select(Team.slug).where(Team.id == service.team_id))

    async def _body(self, session: AsyncSession, service: Service, now: datetime) -> dict[str, Any]:
        return service_to_dict(service, now, await self._team_slug(session, service))

    async def _find(self, session: AsyncSession, slug: str, *, lock: bool = False) -> Service:
        query = select(Service).where(Service.slug == slug)
        if lock and self._db.is_postgres:
            query = query.with_for_update()
        service = await session.scalar(query)
        if service is None:
            raise NotFound(f"no service {quote(slug)}")
        return service

    async def get(self, slug: str) -> dict[str, Any]:
        async with self._db.sessions() as session:
            service = await self._find(session, slug)
            return await self._body(session, service, self._clock.now())

    async def list(
        self,
        *,
        state: str | None = None,
        team: str | None = None,
        tag: str | None = None,
        q: str | None = None,
        muted: bool | None = None,
        cursor: str | None = None,
        limit: int | None = None,
    ) -> Page[dict[str, Any]]:
        limit = check_limit(limit)
        now = self._clock.now()
        query = select(Service, Team.slug).outerjoin(Team, Team.id == Service.team_id)
        if state is not None:
            if state not in STATES:
                raise ValidationError(f"state must be one of {', '.join(STATES)}", field="state")
            if state == "late":
                query = query.where(Service.state == "up", Service.expected_at <= now)
            elif state == "up":
                query = query.where(
                    Service.state == "up",
                    (Service.expected_at.is_(None)) | (Service.expected_at > now),
                )
            else:
                query = query.where(Service.state == state)
        if team is not None:
            query = query.where(Team.slug == v.slug(team, "team"))
        if q:
            pattern = v.like_pattern(q.lower())
            query = query.where(
                func.lower(Service.slug).like(pattern, escape="\\")
                | func.lower(Service.name).like(pattern, escape="\\")
            )
        if muted is not None:
            active = Service.muted.is_(True) & (
                Service.muted_until.is_(None) | (Service.muted_until > now)
            )
            query = query.where(active if muted else ~active)
        if tag is not None:
            # Tags are slugs (no quotes), so the quoted tag matches exactly one JSON list item;
            # one query shape serves SQLite (JSON text) and PostgreSQL (JSONB rendered as text).
            query = query.where(cast(Service.tags, String).like(f'%"{v.slug(tag, "tag")}"%'))
        async with self._db.sessions() as session:
            rows = (await session.execute(keyset(query, Service.id, cursor, limit))).all()
        return rows_page(
            rows, limit, lambda row: service_to_dict(row[0], now, row[1]), lambda row: row[0].id
        )

    # -- changing ------------------------------------------------------------------------------

    async def _parse(
        self, session: AsyncSession, data: dict[str, Any], fields: set[str]
    ) -> dict[str, Any]:
        v.only_keys(data, fields, "service")
        out: dict[str, Any] = {}
        if "slug" in data:
            out["slug"] = v.slug(data["slug"])
        if "name" in data:
            out["name"] = v.text(data["name"], "name", max_len=200)
        if "team" in data:
            if data["team"] is None:
                out["team_id"] = None
            else:
                team = await session.scalar(
                    select(Team).where(Team.slug == v.slug(data["team"], "team"))
                )
                if team is None:
                    raise ValidationError(
                        f"no team {quote(data['team'])}: create it first", field="team"
                    )
                out["team_id"] = team.id
        if "tags" in data:
            out["tags"] = v.tags(data["tags"])
        if "priority" in data:
            out["priority"] = v.priority(data["priority"])
        if "runbook_url" in data:
            out["runbook_url"] = v.http_url(data["runbook_url"], "runbook_url")
        if "description" in data:
            out["description"] = v.text(
                data["description"], "description", max_len=5000, allow_empty=True
            )
        if "expectation" in data:
            if not isinstance(data["expectation"], dict):
                raise ValidationError("expectation must be an object", field="expectation")
            out["expectation"] = expectation_to_dict(parse_expectation(data["expectation"]))
        if "grace" in data:
            out["grace"] = validate_grace(data["grace"])
        if "max_duration" in data:
            out["max_duration"] = (
                None
                if data["max_duration"] is None
                else v.integer(data["max_duration"], "max_duration", low=1, high=_MAX_SECONDS)
            )
        return out

    async def create(self, data: dict[str, Any], *, actor: Actor) -> dict[str, Any]:
        if "slug" not in data:
            raise ValidationError("slug is required", field="slug")
        if "expectation" not in data:
            raise ValidationError(
                'expectation is required, e.g. {"kind": "interval", "period": 300}',
                field="expectation",
            )
        now = self._clock.now()
        async with self._db.transaction() as session:
            fields = await self._parse(session, data, _CREATE_FIELDS)
            if fields["slug"].startswith(AGENT_SLUG_PREFIX):
                raise ValidationError(
                    f"slugs starting with {AGENT_SLUG_PREFIX!r} are reserved for the services "
                    "Medic makes for agents (agent-<agent id>): choose another slug",
                    field="slug",
                )
            if await session.scalar(select(Service.id).where(Service.slug == fields["slug"])):
                raise Conflict(f"a service {quote(fields['slug'])} already exists")
            fields.setdefault("name", fields["slug"])
            fields.setdefault("priority", "p3")
            fields.setdefault("tags", [])
            fields.setdefault("grace", 0)
            service = Service(
                **fields, state="new", recent_beats=[], muted=False, created_at=now, updated_at=now
            )
            session.add(service)
            await session.flush()
            body = await self._body(session, service, now)
            record_audit(
                session,
                actor=actor,
                at=now,
                action="service.create",
                resource_type="service",
                resource_id=service.id,
                after=body,
            )
        self._bus.publish("service.created", now, service=body)
        return body

    async def update(self, slug: str, data: dict[str, Any], *, actor: Actor) -> dict[str, Any]:
        now = self._clock.now()
        pending = PendingEvents()
        async with self._db.transaction() as session:
            service = await self._find(session, slug, lock=True)
            before = await self._body(session, service, now)
            fields = await self._parse(session, data, _UPDATE_FIELDS)
            for key, value in fields.items():
                setattr(service, key, value)
            service.updated_at = now
            if {"expectation", "grace"} & fields.keys():
                await self._refresh_deadline(session, pending, service, now, actor)
            body = await self._body(session, service, now)
            record_audit(
                session,
                actor=actor,
                at=now,
                action="service.update",
                resource_type="service",
                resource_id=service.id,
                before=before,
                after=body,
            )
            pending.add("service.updated", now, service=body)
        pending.publish(self._bus)
        if service.next_due is not None:
            self._on_deadline(service.next_due)
        return body

    async def _refresh_deadline(
        self,
        session: AsyncSession,
        pending: PendingEvents,
        service: Service,
        now: datetime,
        actor: Actor,
    ) -> None:
        if service.state in ("new", "paused"):
            return
        keep = quorum_memory(parse_expectation(service.expectation))
        if keep:
            # The window may now need more history than was remembered: read it back.
            times = (
                await session.scalars(
                    select(Heartbeat.received_at)
                    .where(Heartbeat.service_id == service.id, Heartbeat.status != "start")
                    .order_by(Heartbeat.id.desc())
                    .limit(keep)
                )
            ).all()
            service.recent_beats = [isoformat(t) or "" for t in reversed(times)]
        recompute(service)
        if service.state == "down" and service.last_status != "fail":
            if service.next_due is not None and service.next_due > now:
                service.state = "up"
                pending.add("service.state_changed", now, slug=service.slug, state="up", was="down")
                await self._alerts.resolve_in(
                    session,
                    pending,
                    service,
                    ("missed",),
                    now=now,
                    resolution="expectation changed: no longer overdue",
                    actor=actor,
                )
            else:
                service.next_due = None  # already down and alerted; wait for a heartbeat

    async def delete(self, slug: str, *, actor: Actor) -> None:
        now = self._clock.now()
        async with self._db.transaction() as session:
            service = await self._find(session, slug, lock=True)
            before = await self._body(session, service, now)
            # Explicit deletes: SQLite enforces ON DELETE CASCADE only with foreign_keys on, and
            # being explicit keeps both databases identical.
            await session.execute(delete(Heartbeat).where(Heartbeat.service_id == service.id))
            await session.execute(delete(JobRun).where(JobRun.service_id == service.id))
            await session.execute(delete(Alert).where(Alert.service_id == service.id))
            await session.delete(service)
            record_audit(
                session,
                actor=actor,
                at=now,
                action="service.delete",
                resource_type="service",
                resource_id=before["id"],
                before=before,
            )
        self._bus.publish("service.deleted", now, slug=slug)

    async def mute(
        self, slug: str, *, until: datetime | None, reason: str | None, actor: Actor
    ) -> dict[str, Any]:
        now = self._clock.now()
        if until is not None and until <= now:
            raise ValidationError("until must be in the future", field="until")
        if reason is not None:
            reason = v.text(reason, "reason", max_len=500, allow_empty=True) or None
        return await self._change(
            slug, "mute", actor, muted=True, muted_until=until, mute_reason=reason
        )

    async def unmute(self, slug: str, *, actor: Actor) -> dict[str, Any]:
        body = await self._change(
            slug, "unmute", actor, muted=False, muted_until=None, mute_reason=None
        )
        return body

    async def pause(self, slug: str, *, actor: Actor) -> dict[str, Any]:
        return await self._change(slug, "pause", actor)

    async def resume(self, slug: str, *, actor: Actor) -> dict[str, Any]:
        return await self._change(slug, "resume", actor)

    async def _change(self, slug: str, action: str, actor: Actor, **values: Any) -> dict[str, Any]:
        now = self._clock.now()
        pending = PendingEvents()
        async with self._db.transaction() as session:
            service = await self._find(session, slug, lock=True)
            before = await self._body(session, service, now)
            for key, value in values.items():
                setattr(service, key, value)
            if action == "pause":
                if service.state == "paused":
                    raise Conflict(f"service {quote(slug)} is already paused")
                pending.add(
                    "service.state_changed", now, slug=slug, state="paused", was=service.state
                )
                service.state = "paused"
                service.paused_at = now
                service.expected_at = service.next_due = None
                await self._alerts.resolve_in(
                    session,
                    pending,
                    service,
                    ("missed",),
                    now=now,
                    resolution="service paused: not monitored",
                    actor=actor,
                )
            elif action == "resume":
                if service.state != "paused":
                    raise Conflict(f"service {quote(slug)} is not paused")
                service.paused_at = None
                service.state = "up" if service.last_heartbeat_at is not None else "new"
                if service.state == "up":
                    # A fresh deadline from now, as if it had just checked in.
                    record_beat(service, now)
                pending.add(
                    "service.state_changed", now, slug=slug, state=service.state, was="paused"
                )
            elif action == "unmute":
                # Alerts held back by the mute are looked at again now: the monitor notifies
                # those still unresolved (unless a maintenance window still covers them).
                await session.execute(
                    update(Alert)
                    .where(
                        Alert.service_id == service.id,
                        Alert.resolved_at.is_(None),
                        Alert.suppressed.is_(True),
                    )
                    .values(notify_at=now)
                )
            service.updated_at = now
            body = await self._body(session, service, now)
            record_audit(
                session,
                actor=actor,
                at=now,
                action=f"service.{action}",
                resource_type="service",
                resource_id=service.id,
                before=before,
                after=body,
            )
            pending.add(f"service.{action}d", now, service=body)
        pending.publish(self._bus)
        if action == "unmute":
            self._on_deadline(now)
        if service.next_due is not None:
            self._on_deadline(service.next_due)
        return body
