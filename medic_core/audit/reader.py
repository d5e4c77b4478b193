"""Reading the audit log (it is only ever appended to by ``record_audit``)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import select

from medic_core.clock import isoformat
from medic_core.errors import NotFound
from medic_core.store import Database
from medic_core.store.models import AuditEntry
from medic_core.store.pagination import Page, check_limit, keyset, rows_page


def entry_to_dict(entry: AuditEntry, *, full: bool) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": entry.id,
        "at": isoformat(entry.at),
        "actor": entry.actor,
        "action": entry.action,
        "resource_type": entry.resource_type,
        "resource_id": entry.resource_id,
        "request_id": entry.request_id,
    }
    if full:
        body["before"] = entry.before
        body["after"] = entry.after
    return body


class AuditLog:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def get(self, entry_id: int) -> dict[str, Any]:
        async with self._db.sessions() as session:
            entry = await session.get(AuditEntry, entry_id)
        if entry is None:
            raise NotFound(f"no audit entry with id {entry_id}")
        return entry_to_dict(entry, full=True)

    async def list(
        self,
        *,
        actor: str | None = None,
        action: str | None = None,
        resource_type: str | None = None,
        resource_id: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        cursor: str | None = None,
        limit: int | None = None,
    ) -> Page[dict[str, Any]]:
        limit = check_limit(limit)
        query = select(AuditEntry)
        if actor:
            query = query.where(AuditEntry.actor == actor)
        if action:
            query = query.where(AuditEntry.action == action)
        if resource_type:
            query = query.where(AuditEntry.resource_type == resource_type)
        if resource_id:
            query = query.where(AuditEntry.resource_id == resource_id)
        if since:
            query = query.where(AuditEntry.at >= since)
        if until:
            query = query.where(AuditEntry.at < until)
        query = keyset(query, AuditEntry.id, cursor, limit, newest_first=True)
        async with self._db.sessions() as session:
            rows = (await session.scalars(query)).all()
        return rows_page(
            rows,
            limit,
            lambda entry: entry_to_dict(entry, full=False),
            lambda entry: entry.id,
        )
