"""Escalation policies: who is paged after how long while an alert stays open.

An **escalation policy** lists levels ``{"after": seconds, "targets": [slug, ...]}`` in strictly
increasing ``after``; target slugs must exist when the policy is saved. A policy a team uses
cannot be deleted (nor, in ``medic_core.notify.targets``, a target a policy names). The router
(``medic_core.notify.router``) reads them; this module creates, lists, reads, updates and deletes
them for the API.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from medic_core.audit import Actor, record_audit
from medic_core.clock import Clock, isoformat
from medic_core.errors import Conflict, NotFound, ValidationError
from medic_core.notify.tables import listing
from medic_core.store import Database
from medic_core.store.models import EscalationPolicy, NotificationTarget, Team
from medic_core.store.pagination import Page, check_limit, keyset, rows_page
from medic_core.validation import integer, only_keys, quote, slug, text

MAX_LEVELS = 10
MAX_LEVEL_TARGETS = 20
AFTER_RANGE = (60, 604_800)  # one minute to one week
REPEAT_RANGE = (60, 86_400)  # one minute to one day
MAX_REMINDERS = 100
DEFAULT_MAX_REMINDERS = 3


def policy_to_dict(policy: EscalationPolicy) -> dict[str, Any]:
    return {
        "id": policy.id,
        "slug": policy.slug,
        "name": policy.name,
        "levels": policy.levels,
        "repeat_every": policy.repeat_every,
        "max_reminders": policy.max_reminders,
        "created_at": isoformat(policy.created_at),
        "updated_at": isoformat(policy.updated_at),
    }


async def policy_by_slug(session: AsyncSession, policy_slug: str) -> EscalationPolicy:
    policy = await session.scalar(
        select(EscalationPolicy).where(EscalationPolicy.slug == policy_slug)
    )
    if policy is None:
        raise NotFound(
            f"no escalation policy {quote(policy_slug)}: create it first "
            "(POST /api/v1/escalation-policies)"
        )
    return policy


async def _levels(session: AsyncSession, value: object) -> list[dict[str, Any]]:
    """Validate levels; every target slug must name an existing target."""
    if not isinstance(value, list) or len(value) > MAX_LEVELS:
        raise ValidationError(
            f"levels must be a list of at most {MAX_LEVELS} levels such as "
            '{"after": 900, "targets": ["sre-pager"]}',
            field="levels",
        )
    levels: list[dict[str, Any]] = []
    wanted: dict[str, str] = {}  # slug -> the field that first named it
    for index, item in enumerate(value):
        where = f"levels[{index}]"
        if not isinstance(item, dict) or set(item) != {"after", "targets"}:
            raise ValidationError(
                f"{where} must be an object with exactly after (seconds) and targets (slugs)",
                field=where,
            )
        after = integer(item["after"], f"{where}.after", low=AFTER_RANGE[0], high=AFTER_RANGE[1])
        if levels and after <= levels[-1]["after"]:
            raise ValidationError(
                f"{where}.after must be greater than levels[{index - 1}].after "
                f"({levels[-1]['after']}): levels escalate in order",
                field=f"{where}.after",
            )
        targets = item["targets"]
        if not isinstance(targets, list) or not 1 <= len(targets) <= MAX_LEVEL_TARGETS:
            raise ValidationError(
                f"{where}.targets must be a list of 1 to {MAX_LEVEL_TARGETS} target slugs",
                field=f"{where}.targets",
            )
        seen: set[str] = set()
        for position, target in enumerate(targets):
            field = f"{where}.targets[{position}]"
            slug(target, field)
            if target in seen:
                raise ValidationError(f"{field}: {quote(target)} is listed twice", field=field)
            seen.add(target)
            wanted.setdefault(target, field)
        levels.append({"after": after, "targets": list(targets)})
    if wanted:
        found = set(
            (
                await session.scalars(
                    select(NotificationTarget.slug).where(NotificationTarget.slug.in_(wanted))
                )
            ).all()
        )
        for target, field in wanted.items():
            if target not in found:
                raise ValidationError(
                    f"{field}: no target {quote(target)}: create it first (POST /api/v1/targets)",
                    field=field,
                )
    return levels


def _repeat_every(value: object) -> int | None:
    if value is None:
        return None
    return integer(value, "repeat_every", low=REPEAT_RANGE[0], high=REPEAT_RANGE[1])


def _max_reminders(value: object) -> int:
    return integer(value, "max_reminders", low=0, high=MAX_REMINDERS)


class EscalationPolicies:
    def __init__(self, db: Database, clock: Clock) -> None:
        self._db = db
        self._clock = clock

    async def create(self, data: dict[str, Any], *, actor: Actor) -> dict[str, Any]:
        only_keys(
            data, {"slug", "name", "levels", "repeat_every", "max_reminders"}, "escalation policy"
        )
        policy_slug = slug(data.get("slug"))
        name = text(data.get("name", policy_slug), "name", max_len=200)
        repeat_every = _repeat_every(data.get("repeat_every"))
        max_reminders = _max_reminders(data.get("max_reminders", DEFAULT_MAX_REMINDERS))
        now = self._clock.now()
        async with self._db.transaction() as session:
            levels = await _levels(session, data.get("levels", []))
            exists = await session.scalar(
                select(EscalationPolicy.id).where(EscalationPolicy.slug == policy_slug)
            )
            if exists:
                raise Conflict(f"an escalation policy {quote(policy_slug)} already exists")
            policy = EscalationPolicy(
                slug=policy_slug,
                name=name,
                levels=levels,
                repeat_every=repeat_every,
                max_reminders=max_reminders,
                created_at=now,
                updated_at=now,
            )
            session.add(policy)
            await session.flush()
            body = policy_to_dict(policy)
            record_audit(
                session,
                actor=actor,
                at=now,
                action="escalation_policy.create",
                resource_type="escalation_policy",
                resource_id=policy.id,
                after=body,
            )
        return body

    async def get(self, policy_slug: str) -> dict[str, Any]:
        async with self._db.sessions() as session:
            return policy_to_dict(await policy_by_slug(session, policy_slug))

    async def update(
        self, policy_slug: str, data: dict[str, Any], *, actor: Actor
    ) -> dict[str, Any]:
        only_keys(
            data,
            {"name", "levels", "repeat_every", "max_reminders"},
            "escalation policy update (the slug cannot change)",
        )
        now = self._clock.now()
        async with self._db.transaction() as session:
            policy = await policy_by_slug(session, policy_slug)
            before = policy_to_dict(policy)
            if "name" in data:
                policy.name = text(data["name"], "name", max_len=200)
            if "levels" in data:
                policy.levels = await _levels(session, data["levels"])
            if "repeat_every" in data:
                policy.repeat_every = _repeat_every(data["repeat_every"])
            if "max_reminders" in data:
                policy.max_reminders = _max_reminders(data["max_reminders"])
            policy.updated_at = now
            body = policy_to_dict(policy)
            record_audit(
                session,
                actor=actor,
                at=now,
                action="escalation_policy.update",
                resource_type="escalation_policy",
                resource_id=policy.id,
                before=before,
                after=body,
            )
        return body

    async def delete(self, policy_slug: str, *, actor: Actor) -> None:
        now = self._clock.now()
        async with self._db.transaction() as session:
            policy = await policy_by_slug(session, policy_slug)
            teams = (
                await session.scalars(
                    select(Team.slug)
                    .where(Team.escalation_policy_id == policy.id)
                    .order_by(Team.id)
                )
            ).all()
            if teams:
                raise Conflict(
                    f"escalation policy {quote(policy_slug)} is used by team(s) {listing(teams)}: "
                    "give them another policy or none first (PATCH /api/v1/teams/{slug} with "
                    '{"escalation_policy": null})'
                )
            record_audit(
                session,
                actor=actor,
                at=now,
                action="escalation_policy.delete",
                resource_type="escalation_policy",
                resource_id=policy.id,
                before=policy_to_dict(policy),
            )
            await session.delete(policy)

    async def list(
        self, *, cursor: str | None = None, limit: int | None = None
    ) -> Page[dict[str, Any]]:
        limit = check_limit(limit)
        query = keyset(select(EscalationPolicy), EscalationPolicy.id, cursor, limit)
        async with self._db.sessions() as session:
            rows = (await session.scalars(query)).all()
        return rows_page(rows, limit, policy_to_dict, lambda policy: policy.id)
