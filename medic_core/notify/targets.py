"""Notification targets: a loaded notifier plus its configuration, and when it pages.

A **notification target** is a loaded notifier plus its configuration, validated against the
notifier's ``config_schema`` (JSON Schema 2020-12) and then by its optional ``validate_config``.
It is owned by a team, by one service (an override) or by neither (the fallback), wants
priorities down to ``min_priority``, and applies ``always`` or during the working/off hours of a
schedule (``medic_core.notify.schedules``). A target an escalation policy names cannot be
deleted. The router (``medic_core.notify.router``) reads them; this module creates, lists,
reads, updates and deletes them for the API.

Secrets (``medic_core.notify.secrets``): configuration values the schema marks ``writeOnly``
never leave this module unmasked, a mask sent back keeps the stored value, and validation
messages that would quote a secret are replaced by ones naming the broken rule.
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError
from sqlalchemy import String, select
from sqlalchemy import cast as sql_cast
from sqlalchemy.ext.asyncio import AsyncSession

from medic_core.audit import Actor, record_audit
from medic_core.clock import Clock, isoformat
from medic_core.errors import Conflict, NotFound, ValidationError
from medic_core.notify.secrets import (
    MISSING,
    SECRET_MASK,
    SecretFields,
    UnusableSchema,
    config_path,
    secret_strings,
    touches,
)
from medic_core.notify.tables import id_of, listing
from medic_core.plugins.interfaces import Notifier
from medic_core.store import Database
from medic_core.store.models import EscalationPolicy, NotificationTarget, Schedule, Service, Team
from medic_core.store.pagination import Page, check_limit, keyset, rows_page
from medic_core.validation import PRIORITIES, QUOTE_MAX, only_keys, quote, slug, text

PERIODS = ("always", "working_hours", "off_hours")

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
        self._secret_fields: dict[str, SecretFields] = {}
        self._checked: set[str] = set()

    # -- reading -------------------------------------------------------------------------------

    def to_dict(self, target: NotificationTarget, owners: _Owners) -> dict[str, Any]:
        """The API form: secrets masked (everything masked if the notifier is not loaded)."""
        notifier = self._notifiers.get(target.notifier)
        config = target.config or {}
        if notifier is None:
            shown: Any = {key: SECRET_MASK for key in config}
        else:
            shown = self._secrets(notifier).redact(config)
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
        query = keyset(query, NotificationTarget.id, cursor, limit)
        async with self._db.sessions() as session:
            rows = (await session.execute(query)).all()
        return rows_page(
            rows,
            limit,
            lambda row: self.to_dict(row[0], _Owners(row[1], row[2], row[3])),
            lambda row: row[0].id,
        )

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

    def _secrets(self, notifier: Notifier) -> SecretFields:
        fields = self._secret_fields.get(notifier.name)
        if fields is None:
            fields = self._secret_fields[notifier.name] = SecretFields(notifier.config_schema)
        return fields

    def _schema_problem(self, notifier: Notifier, reason: str) -> ValidationError:
        return ValidationError(
            f"notifier {notifier.name!r} has an invalid config_schema ({reason}): "
            "report this to the plugin's author",
            field="notifier",
        )

    async def _check_config(self, notifier: Notifier, config: dict[str, Any]) -> None:
        """The notifier's schema, then its own ``validate_config``.

        Messages never quote a secret -- a value at or inside a ``writeOnly`` place, whatever
        its type, or any string found in one -- nor more than ``QUOTE_MAX`` characters of any
        value: jsonschema's own message (which quotes the whole value) is used only when it is
        short and names no secret; otherwise the message names the rule that was broken.
        """
        if notifier.name not in self._checked:
            try:
                Draft202012Validator.check_schema(notifier.config_schema)
            except SchemaError as exc:
                raise self._schema_problem(notifier, exc.message) from None
            self._checked.add(notifier.name)
        fields = self._secrets(notifier)
        try:
            errors, places = fields.check(config)
        except UnusableSchema as exc:
            raise self._schema_problem(notifier, str(exc)) from None
        secrets = secret_strings(config, places)

        def safe(message: str, fallback: str) -> str:
            if any(s in message for s in secrets) or len(message) > 2 * QUOTE_MAX:
                return fallback
            return message

        errors.sort(key=lambda e: [str(p) for p in e.absolute_path])
        if errors:
            error = errors[0]
            where = config_path(error.absolute_path)
            rule = json.dumps(error.validator_value, default=str)[:QUOTE_MAX]
            # A secret of any type (an integer token is still a token) at, around or inside the
            # failing value.
            if touches(places, error.absolute_path):
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
            target.config = self._secrets(notifier).restore(
                config, stored_config if same else MISSING
            )
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
                else await id_of(
                    session, Team, team, "team", "create it first (POST /api/v1/teams)"
                )
            )
            target.service_id = (
                None
                if service is None
                else await id_of(
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
                else await id_of(
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
                    f"{listing(users)}: "
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
