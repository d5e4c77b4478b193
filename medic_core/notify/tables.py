"""What the routing tables (schedules, escalation policies, targets) share.

Slug references in a request body and the one-line list of
dependants a ``Conflict`` names when a row in use cannot be deleted.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from medic_core.errors import ValidationError
from medic_core.validation import quote, slug

_NAMED = 20  # a conflict names at most this many dependants


def listing(names: Sequence[str]) -> str:
    shown = ", ".join(names[:_NAMED])
    return shown if len(names) <= _NAMED else f"{shown} and {len(names) - _NAMED} more"


async def id_of(session: AsyncSession, model: Any, value: object, field: str, how: str) -> int:
    """The id of the ``model`` row whose slug is ``value`` (a body reference: 422 if missing)."""
    wanted = slug(value, field)
    found = await session.scalar(select(model.id).where(model.slug == wanted))
    if found is None:
        raise ValidationError(f"no {field.replace('_', ' ')} {quote(wanted)}: {how}", field=field)
    return int(found)
