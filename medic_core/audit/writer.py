"""Audit entries are written in the same transaction as the change they describe.

So there is never a change without its entry, nor an entry for a change that rolled back.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Table, insert
from sqlalchemy.ext.asyncio import AsyncSession

from medic_core.store.models import AuditEntry


@dataclass(frozen=True, slots=True)
class Actor:
    """Who is acting: ``key:<key_id>``, ``cli``, ``system``, ``plugin:<name>``..."""

    name: str
    request_id: str | None = None


SYSTEM = Actor("system")


def record_audit(
    session: AsyncSession,
    *,
    actor: Actor,
    at: datetime,
    action: str,
    resource_type: str,
    resource_id: object,
    before: dict[str, Any] | None = None,
    after: dict[str, Any] | None = None,
) -> None:
    session.add(
        AuditEntry(
            at=at,
            actor=actor.name,
            action=action,
            resource_type=resource_type,
            resource_id=str(resource_id),
            before=before,
            after=after,
            request_id=actor.request_id,
        )
    )


async def record_audit_many(
    session: AsyncSession, *, actor: Actor, at: datetime, entries: list[AuditRecord]
) -> None:
    """Write many audit entries with one multi-row INSERT (the monitor's batches).

    Entries are never read back in the same transaction, so they need no ORM identity.
    """
    if not entries:
        return
    table: Table = AuditEntry.__table__  # type: ignore[assignment]
    await session.execute(
        insert(table),
        [
            {
                "at": at,
                "actor": actor.name,
                "action": e.action,
                "resource_type": e.resource_type,
                "resource_id": str(e.resource_id),
                "before": e.before,
                "after": e.after,
                "request_id": actor.request_id,
            }
            for e in entries
        ],
    )


@dataclass(frozen=True, slots=True)
class AuditRecord:
    action: str
    resource_type: str
    resource_id: object
    before: dict[str, Any] | None = None
    after: dict[str, Any] | None = None
