"""Playbooks: validate, apply (create or new version), read, list, delete.

Applying is idempotent, so a directory of playbooks can be applied again and again (GitOps): a
definition whose canonical JSON has the digest of the current version makes no version, no audit
entry and no event. Any other change makes version ``current + 1``; versions are never changed
or removed (an execution pins the version it started with), and deleting a playbook only marks
it deleted. Applying a deleted playbook's slug again revives it with a new version.

Every change is audited in its own transaction (``playbook.create``, ``playbook.version``,
``playbook.delete``) and announced after commit as ``playbook.changed``.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any, Literal

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from medic_core.audit import Actor, record_audit
from medic_core.clock import Clock, isoformat
from medic_core.errors import NotFound, ValidationError
from medic_core.events import EventBus
from medic_core.playbooks.definition import Format, InvalidPlaybook, Problem, Validator
from medic_core.playbooks.steptypes import StepTypes
from medic_core.plugins.interfaces import Remark
from medic_core.store import Database
from medic_core.store.models import Playbook, PlaybookVersion
from medic_core.store.pagination import Page, check_limit, keyset, rows_page
from medic_core.validation import quote

Change = Literal["created", "updated", "unchanged"]


def digest(definition: dict[str, Any]) -> str:
    """The SHA-256 (hex) of the definition's canonical JSON: sorted keys, no spaces, UTF-8."""
    canonical = json.dumps(definition, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


def playbook_summary(playbook: Playbook) -> dict[str, Any]:
    return {
        "id": playbook.id,
        "slug": playbook.slug,
        "name": playbook.name,
        "description": playbook.description,
        "current_version": playbook.current_version,
        "created_at": isoformat(playbook.created_at),
        "updated_at": isoformat(playbook.updated_at),
    }


def version_summary(version: PlaybookVersion) -> dict[str, Any]:
    return {
        "version": version.version,
        "digest": version.digest,
        "created_at": isoformat(version.created_at),
        "created_by": version.created_by,
    }


def version_document(playbook: Playbook, version: PlaybookVersion) -> dict[str, Any]:
    return {"slug": playbook.slug, **version_summary(version), "definition": version.definition}


async def review_steps(
    step_types: StepTypes, definition: dict[str, Any], context: Any
) -> list[str]:
    """Ask each step's type to ``review`` it (a valid definition) with the plugin ``context``
    (None offline: a step type checks then only what needs no database): the warnings, or
    ``InvalidPlaybook`` listing every refusal, each naming its step."""
    problems: list[Problem] = []
    warnings: list[str] = []
    for index, step in enumerate(definition["steps"]):
        loaded = step_types.get(step["type"])
        review = getattr(loaded.implementation, "review", None) if loaded else None
        if review is None:
            continue
        remarks: list[Remark] = await review(step.get("params") or {}, context)
        for remark in remarks:
            where = f"steps[{index}].params" + (
                f".{remark.field}" if remark.field and remark.field[0] != "[" else remark.field
            )
            message = f"{where} (step {quote(step['name'])}): {remark.message}"
            if remark.refuse:
                problems.append(Problem(where, message))
            else:
                warnings.append(message)
    if problems:
        raise InvalidPlaybook(problems)
    return warnings


@dataclass(frozen=True, slots=True)
class Applied:
    playbook: dict[str, Any]
    version: int
    change: Change
    warnings: tuple[str, ...] = ()

    def document(self) -> dict[str, Any]:
        return {
            "playbook": self.playbook,
            "version": self.version,
            "change": self.change,
            "warnings": list(self.warnings),
        }


class Playbooks:
    def __init__(
        self,
        db: Database,
        clock: Clock,
        bus: EventBus,
        validator: Validator,
        *,
        plugin_context: Any = None,
    ) -> None:
        self._db = db
        self._clock = clock
        self._bus = bus
        self.validator = validator
        self._context = plugin_context

    # -- validating ----------------------------------------------------------------------------

    def read(self, text: bytes | str, fmt: Format) -> dict[str, Any]:
        """The valid definition in ``text`` (413 too large; 422 unreadable or invalid, with
        every error)."""
        return self.validator.read(text, fmt)

    async def validate(self, definition: dict[str, Any]) -> list[str]:
        """Check ``definition`` as ``apply`` does, saving nothing: its warnings
        (``InvalidPlaybook`` when it would be refused)."""
        self.validator.check(definition)
        return await self.review(definition)

    async def review(self, definition: dict[str, Any]) -> list[str]:
        """The step types' own checks of a valid definition (``review_steps``), counted when
        they refuse it."""
        try:
            return await review_steps(self.validator.step_types, definition, self._context)
        except InvalidPlaybook:
            self.validator.refused("refused_by_step_type")
            raise

    # -- reading -------------------------------------------------------------------------------

    async def find(self, session: AsyncSession, slug: str, *, lock: bool = False) -> Playbook:
        """The live playbook ``slug`` in ``session`` (``NotFound`` when there is none)."""
        query = select(Playbook).where(Playbook.slug == slug, Playbook.deleted_at.is_(None))
        if lock and self._db.is_postgres:
            query = query.with_for_update()
        playbook = await session.scalar(query)
        if playbook is None:
            raise NotFound(f"no playbook {quote(slug)}")
        return playbook

    async def version(
        self, session: AsyncSession, playbook: Playbook, number: int
    ) -> PlaybookVersion:
        version = await session.scalar(
            select(PlaybookVersion).where(
                PlaybookVersion.playbook_id == playbook.id, PlaybookVersion.version == number
            )
        )
        if version is None:
            raise NotFound(f"playbook {quote(playbook.slug)} has no version {number}")
        return version

    async def get(self, slug: str) -> dict[str, Any]:
        """The playbook with its current version's definition."""
        async with self._db.sessions() as session:
            playbook = await self.find(session, slug)
            version = await self.version(session, playbook, playbook.current_version)
        return {
            **playbook_summary(playbook),
            "digest": version.digest,
            "definition": version.definition,
        }

    async def get_version(self, slug: str, number: int) -> dict[str, Any]:
        async with self._db.sessions() as session:
            playbook = await self.find(session, slug)
            return version_document(playbook, await self.version(session, playbook, number))

    async def list(
        self, *, cursor: str | None = None, limit: int | None = None
    ) -> Page[dict[str, Any]]:
        limit = check_limit(limit)
        query = select(Playbook).where(Playbook.deleted_at.is_(None))
        async with self._db.sessions() as session:
            rows = (await session.scalars(keyset(query, Playbook.id, cursor, limit))).all()
        return rows_page(rows, limit, playbook_summary, lambda row: row.id)

    async def versions(
        self, slug: str, *, cursor: str | None = None, limit: int | None = None
    ) -> Page[dict[str, Any]]:
        """The playbook's versions, newest first (without their definitions)."""
        limit = check_limit(limit)
        async with self._db.sessions() as session:
            playbook = await self.find(session, slug)
            query = select(PlaybookVersion).where(PlaybookVersion.playbook_id == playbook.id)
            page = keyset(query, PlaybookVersion.id, cursor, limit, newest_first=True)
            rows = (await session.scalars(page)).all()
        return rows_page(rows, limit, version_summary, lambda row: row.id)

    # -- changing ------------------------------------------------------------------------------

    async def apply(
        self, definition: dict[str, Any], *, actor: Actor, slug: str | None = None
    ) -> Applied:
        """Save ``definition``: a new playbook, a new version, or nothing when unchanged.

        ``slug``, when given (the API's path), must be the definition's own.
        """
        self.validator.check(definition)
        warnings = tuple(await self.review(definition))
        if slug is not None and definition["slug"] != slug:
            raise ValidationError(
                f"slug {quote(definition['slug'])} in the definition is not {quote(slug)} of "
                "the URL: they must be the same",
                field="slug",
            )
        try:
            applied = await self._apply(definition, actor)
        except IntegrityError:
            # Two first applies of one slug raced (the unique slug refused the second): the
            # playbook exists now, so this apply is an update of it.
            applied = await self._apply(definition, actor)
        return Applied(applied.playbook, applied.version, applied.change, warnings)

    async def _apply(self, definition: dict[str, Any], actor: Actor) -> Applied:
        now = self._clock.now()
        sha = digest(definition)
        slug = definition["slug"]
        name = definition.get("name") or slug
        description = definition.get("description", "")
        async with self._db.transaction() as session:
            query = select(Playbook).where(Playbook.slug == slug)
            if self._db.is_postgres:
                query = query.with_for_update()
            playbook = await session.scalar(query)
            before = None
            if playbook is None:
                playbook = Playbook(
                    slug=slug,
                    name=name,
                    description=description,
                    current_version=1,
                    created_at=now,
                    updated_at=now,
                )
                session.add(playbook)
                await session.flush()
                change: Change = "created"
            else:
                revived = playbook.deleted_at is not None
                if not revived:
                    current = await self.version(session, playbook, playbook.current_version)
                    if current.digest == sha:
                        return Applied(playbook_summary(playbook), current.version, "unchanged")
                before = playbook_summary(playbook)
                # A revived playbook goes on from its last version: pinned numbers stay unique.
                last = await session.scalar(
                    select(func.max(PlaybookVersion.version)).where(
                        PlaybookVersion.playbook_id == playbook.id
                    )
                )
                playbook.current_version = (last or 0) + 1
                playbook.name, playbook.description = name, description
                playbook.updated_at = now
                playbook.deleted_at = None
                change = "created" if revived else "updated"
            session.add(
                PlaybookVersion(
                    playbook_id=playbook.id,
                    version=playbook.current_version,
                    definition=definition,
                    digest=sha,
                    created_at=now,
                    created_by=actor.name,
                )
            )
            body = playbook_summary(playbook)
            record_audit(
                session,
                actor=actor,
                at=now,
                action="playbook.create" if change == "created" else "playbook.version",
                resource_type="playbook",
                resource_id=playbook.id,
                before=before,
                after={**body, "digest": sha},
            )
        self._bus.publish(
            "playbook.changed", now, slug=slug, version=playbook.current_version, change=change
        )
        return Applied(body, playbook.current_version, change)

    async def delete(self, slug: str, *, actor: Actor) -> None:
        now = self._clock.now()
        async with self._db.transaction() as session:
            playbook = await self.find(session, slug, lock=True)
            before = playbook_summary(playbook)
            playbook.deleted_at = now
            playbook.updated_at = now
            record_audit(
                session,
                actor=actor,
                at=now,
                action="playbook.delete",
                resource_type="playbook",
                resource_id=playbook.id,
                before=before,
            )
        self._bus.publish(
            "playbook.changed", now, slug=slug, version=playbook.current_version, change="deleted"
        )
