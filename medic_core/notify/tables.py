"""What the routing tables (schedules, escalation policies, targets) share.

Slug references in a request body, pages ordered by ascending id, and the one-line list of
dependants a ``Conflict`` names when a row in use cannot be deleted.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, TypeVarTuple

from sqlalchemy import Select, select
from sqlalchemy.ext.asyncio import AsyncSession

from medic_core.errors import ValidationError
from medic_core.store.pagination import Page, decode_cursor, page_of
from medic_core.validation import quote, slug

_NAMED = 20  # a conflict names at most this many dependants


def listing(names: Sequence[str]) -> str:
    shown = ", ".join(names[:_NAMED])
    return shown if len(names) <= _NAMED else f"{shown} and {len(names) - _NAMED} more"


def page(ids: Sequence[int], limit: int, items: list[dict[str, Any]]) -> Page[dict[str, Any]]:
    """A page from the ids and items of ``limit + 1`` fetched rows (the extra one: more exist)."""
    return page_of(items, limit, ids[min(len(ids), limit) - 1] if ids else None)


Row = TypeVarTuple("Row")


def after_cursor(query: Select[*Row], column: Any, cursor: str | None, limit: int) -> Select[*Row]:
    after = decode_cursor(cursor)
    if after is not None:
        query = query.where(column > after)
    return query.order_by(column).limit(limit + 1)


async def id_of(session: AsyncSession, model: Any, value: object, field: str, how: str) -> int:
    """The id of the ``model`` row whose slug is ``value`` (a body reference: 422 if missing)."""
    wanted = slug(value, field)
    found = await session.scalar(select(model.id).where(model.slug == wanted))
    if found is None:
        raise ValidationError(f"no {field.replace('_', ' ')} {quote(wanted)}: {how}", field=field)
    return int(found)
