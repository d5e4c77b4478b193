"""Schedules, escalation policies and notification targets: create, list, get, update, delete.

These are the routing tables the router reads (``medic_core.notify.router``). The rules:

- a **schedule** is weekly wall-clock hours in an IANA zone (``medic_core.schedule.weekly``);
  it is stored in canonical form, and cannot be deleted while a target's period refers to it;
- an **escalation policy** lists levels ``{"after": seconds, "targets": [slug, ...]}`` in
  strictly increasing ``after``; target slugs must exist when the policy is saved. A policy a
  team uses cannot be deleted, nor can a target a policy names;
- a **notification target** is a loaded notifier plus its configuration, validated against the
  notifier's ``config_schema`` (JSON Schema 2020-12) and then by its optional
  ``validate_config``. It is owned by a team, by one service (an override) or by neither (the
  fallback), wants priorities down to ``min_priority``, and applies ``always`` or during the
  working/off hours of a schedule.

Secrets: configuration properties the notifier's schema marks ``"writeOnly": true`` never leave
this module unmasked -- responses and audit entries carry ``"********"`` instead -- and sending
``"********"`` back for such a property on update keeps the stored value, so a client can send
back what it read. Validation messages that would quote a secret are replaced by a generic one.
"""

from __future__ import annotations

import inspect
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVarTuple

from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError
from sqlalchemy import Select, String, select
from sqlalchemy import cast as sql_cast
from sqlalchemy.ext.asyncio import AsyncSession

from medic_core.audit import Actor, record_audit
from medic_core.clock import Clock, isoformat
from medic_core.errors import Conflict, NotFound, ValidationError
from medic_core.plugins.interfaces import Notifier
from medic_core.schedule.cron import load_zone
from medic_core.schedule.weekly import describe, parse_weekly
from medic_core.store import Database
from medic_core.store.models import (
    EscalationPolicy,
    NotificationTarget,
    Schedule,
    Service,
    Team,
)
from medic_core.store.pagination import Page, check_limit, decode_cursor, page_of
from medic_core.validation import PRIORITIES, QUOTE_MAX, integer, only_keys, quote, slug, text

#: What a secret configuration value reads as, and what a client sends back to keep it.
SECRET_MASK = "********"  # noqa: S105 - a placeholder, not a password
PERIODS = ("always", "working_hours", "off_hours")
MAX_LEVELS = 10
MAX_LEVEL_TARGETS = 20
AFTER_RANGE = (60, 604_800)  # one minute to one week
REPEAT_RANGE = (60, 86_400)  # one minute to one day
MAX_REMINDERS = 100
DEFAULT_MAX_REMINDERS = 3
_NAMED = 20  # a conflict names at most this many dependants


def _listing(names: Sequence[str]) -> str:
    shown = ", ".join(names[:_NAMED])
    return shown if len(names) <= _NAMED else f"{shown} and {len(names) - _NAMED} more"


def _page(ids: Sequence[int], limit: int, items: list[dict[str, Any]]) -> Page[dict[str, Any]]:
    """A page from the ids and items of ``limit + 1`` fetched rows (the extra one: more exist)."""
    return page_of(items, limit, ids[min(len(ids), limit) - 1] if ids else None)


Row = TypeVarTuple("Row")


def _after_cursor(query: Select[*Row], column: Any, cursor: str | None, limit: int) -> Select[*Row]:
    after = decode_cursor(cursor)
    if after is not None:
        query = query.where(column > after)
    return query.order_by(column).limit(limit + 1)


async def _id_of(session: AsyncSession, model: Any, value: object, field: str, how: str) -> int:
    """The id of the ``model`` row whose slug is ``value`` (a body reference: 422 if missing)."""
    wanted = slug(value, field)
    found = await session.scalar(select(model.id).where(model.slug == wanted))
    if found is None:
        raise ValidationError(f"no {field.replace('_', ' ')} {quote(wanted)}: {how}", field=field)
    return int(found)


# -- schedules ----------------------------------------------------------------------------------


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
                    f"{_listing(users)}: "
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
        query = _after_cursor(select(Schedule), Schedule.id, cursor, limit)
        async with self._db.sessions() as session:
            rows = (await session.scalars(query)).all()
        return _page([s.id for s in rows], limit, [schedule_to_dict(s) for s in rows])


# -- escalation policies ------------------------------------------------------------------------


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
                    f"escalation policy {quote(policy_slug)} is used by team(s) {_listing(teams)}: "
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
        query = _after_cursor(select(EscalationPolicy), EscalationPolicy.id, cursor, limit)
        async with self._db.sessions() as session:
            rows = (await session.scalars(query)).all()
        return _page([p.id for p in rows], limit, [policy_to_dict(p) for p in rows])


# -- secrets in notifier configuration ----------------------------------------------------------

_MISSING: Any = object()
_MAX_DEPTH = 16  # $ref chains and nested combinators deeper than this are not followed


class SecretFields:
    """Where a notifier's ``config_schema`` marks values ``writeOnly``, and what to do there.

    A place in a configuration is described by every schema that applies to it: the schema
    itself, what its local ``$ref`` points to and the branches of ``allOf``/``anyOf``/``oneOf``.
    A value is secret when any of them says ``writeOnly: true`` (erring towards hiding).
    Children come from ``properties``, ``patternProperties``, ``additionalProperties`` and
    ``items``.
    """

    def __init__(self, schema: object) -> None:
        self._root = schema
        self._top = self._expand(schema)

    def _pointer(self, ref: str) -> object:
        node: object = self._root
        for part in ref[1:].split("/")[1:]:
            if not isinstance(node, dict):
                return None
            node = node.get(part.replace("~1", "/").replace("~0", "~"))
        return node

    def _expand(self, schema: object, depth: int = 0) -> list[dict[str, Any]]:
        """``schema`` and every schema it pulls in, each once."""
        found: list[dict[str, Any]] = []
        pending = [(schema, depth)]
        while pending:
            node, level = pending.pop()
            if not isinstance(node, dict) or level > _MAX_DEPTH or any(node is f for f in found):
                continue
            found.append(node)
            ref = node.get("$ref")
            if isinstance(ref, str) and ref.startswith("#"):
                pending.append((self._pointer(ref), level + 1))
            for combinator in ("allOf", "anyOf", "oneOf"):
                branches = node.get(combinator)
                if isinstance(branches, list):
                    pending += [(branch, level + 1) for branch in branches]
        return found

    def _children(self, schemas: list[dict[str, Any]], key: str | int) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = []
        for schema in schemas:
            if isinstance(key, int):
                found += self._expand(schema.get("items"))
                continue
            properties = schema.get("properties")
            if isinstance(properties, dict) and key in properties:
                found += self._expand(properties[key])
                continue
            matched = False
            patterns = schema.get("patternProperties")
            if isinstance(patterns, dict):
                for pattern, sub in patterns.items():
                    try:
                        hit = re.search(pattern, key) is not None
                    except re.error:
                        hit = True  # cannot tell: treat it as applying (hides more, not less)
                    if hit:
                        matched = True
                        found += self._expand(sub)
            if not matched:
                found += self._expand(schema.get("additionalProperties"))
        return found

    @staticmethod
    def _secret(schemas: list[dict[str, Any]]) -> bool:
        return any(schema.get("writeOnly") is True for schema in schemas)

    def secret_at(self, path: Iterable[str | int]) -> bool:
        """Whether the place at ``path`` is, or lies inside, a secret."""
        schemas = self._top
        for key in path:
            if self._secret(schemas):
                return True
            schemas = self._children(schemas, key)
        return self._secret(schemas)

    def redact(self, value: Any) -> Any:
        """``value`` with every secret replaced by ``SECRET_MASK``."""
        return self._redact(value, self._top)

    def _redact(self, value: Any, schemas: list[dict[str, Any]]) -> Any:
        if self._secret(schemas):
            return SECRET_MASK
        if isinstance(value, dict):
            return {k: self._redact(v, self._children(schemas, k)) for k, v in value.items()}
        if isinstance(value, list):
            return [self._redact(v, self._children(schemas, i)) for i, v in enumerate(value)]
        return value

    def restore(self, value: Any, stored: Any, where: str = "config") -> Any:
        """``value`` with each ``SECRET_MASK`` in a secret place replaced by the stored value.

        ``stored`` is the stored configuration, or ``_MISSING`` when there is none to use.
        """
        return self._restore(value, stored, self._top, where)

    def _restore(self, value: Any, stored: Any, schemas: list[dict[str, Any]], where: str) -> Any:
        if value == SECRET_MASK and self._secret(schemas):
            if stored is _MISSING:
                raise ValidationError(
                    f"{where} is {SECRET_MASK!r}, which stands for the stored secret, but none "
                    "is stored for this target and notifier: send the value itself",
                    field=where,
                )
            return stored
        if isinstance(value, dict):
            old = stored if isinstance(stored, dict) else {}
            return {
                k: self._restore(
                    v, old.get(k, _MISSING), self._children(schemas, k), f"{where}.{k}"
                )
                for k, v in value.items()
            }
        if isinstance(value, list):
            items = stored if isinstance(stored, list) else []
            return [
                self._restore(
                    v,
                    items[i] if i < len(items) else _MISSING,
                    self._children(schemas, i),
                    f"{where}[{i}]",
                )
                for i, v in enumerate(value)
            ]
        return value

    def strings(self, value: Any) -> set[str]:
        """Every non-empty string inside a secret (to keep them out of messages)."""
        found: set[str] = set()
        self._strings(value, self._top, False, found)
        return found

    def _strings(
        self, value: Any, schemas: list[dict[str, Any]], inside: bool, found: set[str]
    ) -> None:
        inside = inside or self._secret(schemas)
        if isinstance(value, dict):
            for k, v in value.items():
                self._strings(v, self._children(schemas, k), inside, found)
        elif isinstance(value, list):
            for i, v in enumerate(value):
                self._strings(v, self._children(schemas, i), inside, found)
        elif inside and isinstance(value, str) and value:
            found.add(value)


def _at(value: Any, path: Sequence[str | int]) -> Any:
    """The part of a JSON document at ``path`` (a jsonschema error's ``absolute_path``).

    ``_MISSING`` where the path does not lead anywhere (in a redacted copy, a secret object is
    a mask string): compared with the real value, that reads as "holds a secret".
    """
    for key in path:
        try:
            value = value[key]
        except (KeyError, IndexError, TypeError):
            return _MISSING
    return value


def _json_path(parts: Iterable[str | int]) -> str:
    path = "config"
    for part in parts:
        path += f"[{part}]" if isinstance(part, int) else f".{part}"
    return path


# -- notification targets -----------------------------------------------------------------------

_TARGET_FIELDS = {
    "slug",
    "name",
    "notifier",
    "config",
    "team",
    "service",
    "min_priority",
    "period",
    "schedule",
    "enabled",
}


@dataclass(slots=True)
class _Owners:
    """The slugs a target's ids refer to, for its API form."""

    team: str | None = None
    service: str | None = None
    schedule: str | None = None


def _min_priority(value: object) -> str:
    if value not in PRIORITIES:
        raise ValidationError(
            f"min_priority must be one of {', '.join(PRIORITIES)}: the least severe priority "
            "this target is paged for (p1 is the most severe; p5 means every alert)",
            field="min_priority",
        )
    return value


def _period(value: object) -> str:
    if value not in PERIODS:
        raise ValidationError(
            f"period must be one of {', '.join(PERIODS)} (working_hours and off_hours need a "
            "schedule)",
            field="period",
        )
    return value


def _enabled(value: object) -> bool:
    if not isinstance(value, bool):
        raise ValidationError("enabled must be true or false", field="enabled")
    return value


class Targets:
    def __init__(
        self,
        db: Database,
        clock: Clock,
        notifiers: Mapping[str, Notifier],
    ) -> None:
        self._db = db
        self._clock = clock
        self._notifiers = notifiers
        self._validators: dict[str, Draft202012Validator] = {}

    # -- reading -------------------------------------------------------------------------------

    def to_dict(self, target: NotificationTarget, owners: _Owners) -> dict[str, Any]:
        """The API form: secrets masked (everything masked if the notifier is not loaded)."""
        notifier = self._notifiers.get(target.notifier)
        config = target.config or {}
        if notifier is None:
            shown: Any = {key: SECRET_MASK for key in config}
        else:
            shown = SecretFields(notifier.config_schema).redact(config)
        return {
            "id": target.id,
            "slug": target.slug,
            "name": target.name,
            "notifier": target.notifier,
            "config": shown,
            "team": owners.team,
            "service": owners.service,
            "min_priority": target.min_priority,
            "period": target.period,
            "schedule": owners.schedule,
            "enabled": target.enabled,
            "created_at": isoformat(target.created_at),
            "updated_at": isoformat(target.updated_at),
        }

    async def _owners(self, session: AsyncSession, target: NotificationTarget) -> _Owners:
        owners = _Owners()
        if target.team_id is not None:
            owners.team = await session.scalar(select(Team.slug).where(Team.id == target.team_id))
        if target.service_id is not None:
            owners.service = await session.scalar(
                select(Service.slug).where(Service.id == target.service_id)
            )
        if target.schedule_id is not None:
            owners.schedule = await session.scalar(
                select(Schedule.slug).where(Schedule.id == target.schedule_id)
            )
        return owners

    async def _find(self, session: AsyncSession, target_slug: str) -> NotificationTarget:
        target = await session.scalar(
            select(NotificationTarget).where(NotificationTarget.slug == target_slug)
        )
        if target is None:
            raise NotFound(f"no target {quote(target_slug)}: list them with GET /api/v1/targets")
        return target

    async def get(self, target_slug: str) -> dict[str, Any]:
        async with self._db.sessions() as session:
            target = await self._find(session, target_slug)
            return self.to_dict(target, await self._owners(session, target))

    async def list(
        self,
        *,
        team: str | None = None,
        service: str | None = None,
        notifier: str | None = None,
        enabled: bool | None = None,
        cursor: str | None = None,
        limit: int | None = None,
    ) -> Page[dict[str, Any]]:
        limit = check_limit(limit)
        query = (
            select(NotificationTarget, Team.slug, Service.slug, Schedule.slug)
            .outerjoin(Team, Team.id == NotificationTarget.team_id)
            .outerjoin(Service, Service.id == NotificationTarget.service_id)
            .outerjoin(Schedule, Schedule.id == NotificationTarget.schedule_id)
        )
        if team is not None:
            query = query.where(Team.slug == slug(team, "team"))
        if service is not None:
            query = query.where(Service.slug == slug(service, "service"))
        if notifier is not None:
            query = query.where(NotificationTarget.notifier == notifier)
        if enabled is not None:
            query = query.where(NotificationTarget.enabled.is_(enabled))
        query = _after_cursor(query, NotificationTarget.id, cursor, limit)
        async with self._db.sessions() as session:
            rows = (await session.execute(query)).all()
        items = [self.to_dict(t, _Owners(ts, ss, sc)) for t, ts, ss, sc in rows]
        return _page([row[0].id for row in rows], limit, items)

    # -- validating ----------------------------------------------------------------------------

    def _notifier(self, name: object) -> Notifier:
        notifier = self._notifiers.get(name) if isinstance(name, str) else None
        if notifier is None:
            loaded = ", ".join(sorted(self._notifiers)) or "none"
            raise ValidationError(
                f"unknown notifier {quote(name)}: the loaded notifiers are {loaded} "
                "(`medic plugins list` shows the plugins)",
                field="notifier",
            )
        return notifier

    def _validator(self, notifier: Notifier) -> Draft202012Validator:
        validator = self._validators.get(notifier.name)
        if validator is None:
            try:
                Draft202012Validator.check_schema(notifier.config_schema)
            except SchemaError as exc:
                raise ValidationError(
                    f"notifier {notifier.name!r} has an invalid config_schema ({exc.message}): "
                    "report this to the plugin's author",
                    field="notifier",
                ) from None
            validator = Draft202012Validator(notifier.config_schema)
            self._validators[notifier.name] = validator
        return validator

    async def _check_config(self, notifier: Notifier, config: dict[str, Any]) -> None:
        """The notifier's schema, then its own ``validate_config``.

        Messages never quote a secret -- a value at or inside a ``writeOnly`` place, whatever
        its type, or any string found in one -- nor more than ``QUOTE_MAX`` characters of any
        value: jsonschema's own message (which quotes the whole value) is used only when it is
        short and names no secret; otherwise the message names the rule that was broken.
        """
        secret_fields = SecretFields(notifier.config_schema)
        secrets = secret_fields.strings(config)

        def safe(message: str, fallback: str) -> str:
            if any(s in message for s in secrets) or len(message) > 2 * QUOTE_MAX:
                return fallback
            return message

        errors = sorted(
            self._validator(notifier).iter_errors(config),
            key=lambda e: [str(p) for p in e.absolute_path],
        )
        if errors:
            error = errors[0]
            where = _json_path(error.absolute_path)
            rule = json.dumps(error.validator_value, default=str)[:QUOTE_MAX]
            path = list(error.absolute_path)
            # A secret of any type (an integer token is still a token) inside the failing value.
            holds_secret = secret_fields.secret_at(path) or _at(config, path) != _at(
                secret_fields.redact(config), path
            )
            if holds_secret:
                message = (
                    f"the value (not shown: it holds a secret) breaks {error.validator} {rule}"
                )
            else:
                message = safe(
                    error.message,
                    f"the value {quote(error.instance)} breaks {error.validator} {rule}",
                )
            raise ValidationError(
                f"{where}: {message} (the {notifier.name} notifier's configuration schema)",
                field=where,
            )
        check = getattr(notifier, "validate_config", None)
        if check is None:
            return
        try:
            result = check(config)
            if inspect.isawaitable(result):
                await result
        except ValueError as exc:
            message = safe(str(exc), "the configuration is refused (the reason quotes a secret)")
            raise ValidationError(
                f"config: {message} (the {notifier.name} notifier)", field="config"
            ) from None

    async def _apply(
        self,
        session: AsyncSession,
        target: NotificationTarget,
        data: dict[str, Any],
        *,
        creating: bool,
    ) -> _Owners:
        """Apply ``data`` to ``target`` (new or stored) and validate the merged result.

        Owner and period rules on update: sending ``team`` or ``service`` sets the owner (the
        other one is cleared); ``period: "always"`` without ``schedule`` clears the schedule.
        """
        owners = await self._owners(session, target) if not creating else _Owners()
        if "name" in data:
            target.name = text(data["name"], "name", max_len=200)

        # notifier and config
        stored_notifier, stored_config = target.notifier, target.config
        if "notifier" in data:
            target.notifier = self._notifier(data["notifier"]).name
        if "config" in data:
            config = data["config"]
            if not isinstance(config, dict):
                raise ValidationError("config must be a JSON object", field="config")
            notifier = self._notifier(target.notifier)
            same = not creating and stored_notifier == target.notifier
            secret_fields = SecretFields(notifier.config_schema)
            target.config = secret_fields.restore(config, stored_config if same else _MISSING)
        loaded = self._notifiers.get(target.notifier)
        if creating or {"notifier", "config"} & data.keys() or loaded is not None:
            await self._check_config(self._notifier(target.notifier), target.config)

        # owner: a team, one service, or neither (the fallback)
        if "team" in data or "service" in data:
            team, service = data.get("team"), data.get("service")
            if team is not None and service is not None:
                raise ValidationError(
                    "a target belongs to a team or to one service, not both (neither makes it "
                    "the fallback target)",
                    field="service",
                )
            target.team_id = (
                None
                if team is None
                else await _id_of(
                    session, Team, team, "team", "create it first (POST /api/v1/teams)"
                )
            )
            target.service_id = (
                None
                if service is None
                else await _id_of(
                    session, Service, service, "service", "create it first (POST /api/v1/services)"
                )
            )
            owners.team, owners.service = team, service

        if "min_priority" in data:
            target.min_priority = _min_priority(data["min_priority"])
        if "enabled" in data:
            target.enabled = _enabled(data["enabled"])

        # period and schedule
        if "period" in data:
            target.period = _period(data["period"])
            if target.period == "always" and "schedule" not in data:
                target.schedule_id, owners.schedule = None, None
        if "schedule" in data:
            chosen = data["schedule"]
            target.schedule_id = (
                None
                if chosen is None
                else await _id_of(
                    session,
                    Schedule,
                    chosen,
                    "schedule",
                    "create it first (POST /api/v1/schedules)",
                )
            )
            owners.schedule = chosen
        if target.period == "always" and target.schedule_id is not None:
            raise ValidationError(
                "period 'always' takes no schedule: drop schedule (or send null), or choose "
                "working_hours or off_hours",
                field="schedule",
            )
        if target.period != "always" and target.schedule_id is None:
            raise ValidationError(
                f"period {quote(target.period)} needs a schedule: send schedule with the slug of a "
                "schedule (POST /api/v1/schedules creates one)",
                field="schedule",
            )
        return owners

    # -- changing ------------------------------------------------------------------------------

    async def create(self, data: dict[str, Any], *, actor: Actor) -> dict[str, Any]:
        only_keys(data, _TARGET_FIELDS, "target")
        target_slug = slug(data.get("slug"))
        if "notifier" not in data:
            loaded = ", ".join(sorted(self._notifiers)) or "none"
            raise ValidationError(
                f"notifier is required: one of the loaded notifiers ({loaded})", field="notifier"
            )
        now = self._clock.now()
        target = NotificationTarget(
            slug=target_slug,
            name=target_slug,
            notifier="",
            config={},
            team_id=None,
            service_id=None,
            min_priority="p5",
            period="always",
            schedule_id=None,
            enabled=True,
            created_at=now,
            updated_at=now,
        )
        async with self._db.transaction() as session:
            exists = await session.scalar(
                select(NotificationTarget.id).where(NotificationTarget.slug == target_slug)
            )
            if exists:
                raise Conflict(f"a target {quote(target_slug)} already exists")
            fields = {"config": {}, **{k: v for k, v in data.items() if k != "slug"}}
            owners = await self._apply(session, target, fields, creating=True)
            session.add(target)
            await session.flush()
            body = self.to_dict(target, owners)
            record_audit(
                session,
                actor=actor,
                at=now,
                action="target.create",
                resource_type="target",
                resource_id=target.id,
                after=body,
            )
        return body

    async def update(
        self, target_slug: str, data: dict[str, Any], *, actor: Actor
    ) -> dict[str, Any]:
        only_keys(data, _TARGET_FIELDS - {"slug"}, "target update (the slug cannot change)")
        now = self._clock.now()
        async with self._db.transaction() as session:
            target = await self._find(session, target_slug)
            before = self.to_dict(target, await self._owners(session, target))
            owners = await self._apply(session, target, data, creating=False)
            target.updated_at = now
            body = self.to_dict(target, owners)
            record_audit(
                session,
                actor=actor,
                at=now,
                action="target.update",
                resource_type="target",
                resource_id=target.id,
                before=before,
                after=body,
            )
        return body

    async def delete(self, target_slug: str, *, actor: Actor) -> None:
        now = self._clock.now()
        async with self._db.transaction() as session:
            target = await self._find(session, target_slug)
            # Levels are JSON: narrow with LIKE, then look properly (LIKE's '_' is a wildcard).
            candidates = (
                await session.scalars(
                    select(EscalationPolicy)
                    .where(sql_cast(EscalationPolicy.levels, String).like(f'%"{target_slug}"%'))
                    .order_by(EscalationPolicy.id)
                )
            ).all()
            users = [
                p.slug
                for p in candidates
                if any(target_slug in level["targets"] for level in p.levels)
            ]
            if users:
                raise Conflict(
                    f"target {quote(target_slug)} is named by escalation policy(ies) "
                    f"{_listing(users)}: "
                    "remove it from their levels first (PATCH /api/v1/escalation-policies/{slug})"
                )
            record_audit(
                session,
                actor=actor,
                at=now,
                action="target.delete",
                resource_type="target",
                resource_id=target.id,
                before=self.to_dict(target, await self._owners(session, target)),
            )
            await session.delete(target)
