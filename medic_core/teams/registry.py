"""Teams: create, rename, choose an escalation policy, list, delete.

A team's ``escalation_policy`` (a policy slug, or null for none) decides how its services'
unacknowledged alerts escalate and remind; without one only the first page is sent.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from medic_core.audit import Actor, record_audit
from medic_core.clock import Clock, isoformat
from medic_core.errors import Conflict, NotFound, ValidationError
from medic_core.events import EventBus
from medic_core.store import Database
from medic_core.store.models import EscalationPolicy, Service, Team
from medic_core.store.pagination import Page, check_limit, keyset, rows_page
from medic_core.validation import only_keys, quote, slug, text


def team_to_dict(team: Team, escalation_policy: str | None = None) -> dict[str, Any]:
    """The API form; ``escalation_policy`` is the slug of the team's policy (None: none)."""
    return {
        "id": team.id,
        "slug": team.slug,
        "name": team.name,
        "description": team.description,
        "escalation_policy": escalation_policy,
        "created_at": isoformat(team.created_at),
        "updated_at": isoformat(team.updated_at),
    }


async def team_by_slug(session: AsyncSession, team_slug: str) -> Team:
    team = await session.scalar(select(Team).where(Team.slug == team_slug))
    if team is None:
        raise NotFound(f"no team {quote(team_slug)}: create it first (POST /api/v1/teams)")
    return team


async def _policy_slug(session: AsyncSession, team: Team) -> str | None:
    if team.escalation_policy_id is None:
        return None
    return await session.scalar(
        select(EscalationPolicy.slug).where(EscalationPolicy.id == team.escalation_policy_id)
    )


async def _policy_id(session: AsyncSession, value: object) -> int | None:
    """The id of the policy a body names by slug (None clears it)."""
    if value is None:
        return None
    policy_slug = slug(value, "escalation_policy")
    found = await session.scalar(
        select(EscalationPolicy.id).where(EscalationPolicy.slug == policy_slug)
    )
    if found is None:
        raise ValidationError(
            f"no escalation policy {quote(policy_slug)}: create it first "
            "(POST /api/v1/escalation-policies), or send null for none",
            field="escalation_policy",
        )
    return int(found)


class Teams:
    def __init__(self, db: Database, clock: Clock, bus: EventBus) -> None:
        self._db = db
        self._clock = clock
        self._bus = bus

    async def create(self, data: dict[str, Any], *, actor: Actor) -> dict[str, Any]:
        only_keys(data, {"slug", "name", "description", "escalation_policy"}, "team")
        team_slug = slug(data.get("slug"))
        now = self._clock.now()
        async with self._db.transaction() as session:
            if await session.scalar(select(Team.id).where(Team.slug == team_slug)) is not None:
                raise Conflict(f"a team {quote(team_slug)} already exists")
            team = Team(
                slug=team_slug,
                name=text(data.get("name", team_slug), "name", max_len=200),
                description=text(
                    data.get("description", ""), "description", max_len=2000, allow_empty=True
                ),
                escalation_policy_id=await _policy_id(session, data.get("escalation_policy")),
                created_at=now,
                updated_at=now,
            )
            session.add(team)
            await session.flush()
            body = team_to_dict(team, await _policy_slug(session, team))
            record_audit(
                session,
                actor=actor,
                at=now,
                action="team.create",
                resource_type="team",
                resource_id=team.id,
                after=body,
            )
        self._bus.publish("team.created", now, team=body)
        return body

    async def get(self, team_slug: str) -> dict[str, Any]:
        async with self._db.sessions() as session:
            team = await team_by_slug(session, team_slug)
            return team_to_dict(team, await _policy_slug(session, team))

    async def update(self, team_slug: str, data: dict[str, Any], *, actor: Actor) -> dict[str, Any]:
        only_keys(
            data,
            {"name", "description", "escalation_policy"},
            "team update (the slug cannot change)",
        )
        now = self._clock.now()
        async with self._db.transaction() as session:
            team = await team_by_slug(session, team_slug)
            before = team_to_dict(team, await _policy_slug(session, team))
            if "name" in data:
                team.name = text(data["name"], "name", max_len=200)
            if "description" in data:
                team.description = text(
                    data["description"], "description", max_len=2000, allow_empty=True
                )
            if "escalation_policy" in data:
                team.escalation_policy_id = await _policy_id(session, data["escalation_policy"])
            team.updated_at = now
            body = team_to_dict(team, await _policy_slug(session, team))
            record_audit(
                session,
                actor=actor,
                at=now,
                action="team.update",
                resource_type="team",
                resource_id=team.id,
                before=before,
                after=body,
            )
        self._bus.publish("team.updated", now, team=body)
        return body

    async def delete(self, team_slug: str, *, actor: Actor) -> None:
        now = self._clock.now()
        async with self._db.transaction() as session:
            team = await team_by_slug(session, team_slug)
            owned = await session.scalar(
                select(func.count()).select_from(Service).where(Service.team_id == team.id)
            )
            if owned:
                raise Conflict(
                    f"team {quote(team_slug)} still owns {owned} service(s): move or delete them "
                    "first"
                )
            record_audit(
                session,
                actor=actor,
                at=now,
                action="team.delete",
                resource_type="team",
                resource_id=team.id,
                before=team_to_dict(team, await _policy_slug(session, team)),
            )
            await session.delete(team)
        self._bus.publish("team.deleted", now, slug=team_slug)

    async def list(
        self, *, cursor: str | None = None, limit: int | None = None
    ) -> Page[dict[str, Any]]:
        limit = check_limit(limit)
        query = select(Team, EscalationPolicy.slug).outerjoin(
            EscalationPolicy, EscalationPolicy.id == Team.escalation_policy_id
        )
        async with self._db.sessions() as session:
            rows = (await session.execute(keyset(query, Team.id, cursor, limit))).all()
        return rows_page(
            rows, limit, lambda row: team_to_dict(row[0], row[1]), lambda row: row[0].id
        )
