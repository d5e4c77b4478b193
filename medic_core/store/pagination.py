"""Cursor pagination: stable under inserts, O(limit) per page.

Lists are ordered by id (oldest or newest first, as the list says); the cursor is the opaque
encoding of the last id returned, so a client never sees a row twice or skips one when rows are
added between pages. Every list is built the same way: ``keyset`` narrows the query to one page
(plus one row, which says whether more exist), ``rows_page`` renders it.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar, TypeVarTuple

from sqlalchemy import Select

from medic_core.errors import ValidationError

T = TypeVar("T")
R = TypeVar("R")
Row = TypeVarTuple("Row")
DEFAULT_LIMIT = 50
MAX_LIMIT = 500


@dataclass(frozen=True, slots=True)
class Page(Generic[T]):
    items: Sequence[T]
    next_cursor: str | None


def encode_cursor(last_id: int) -> str:
    return base64.urlsafe_b64encode(f"id:{last_id}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str | None) -> int | None:
    if not cursor:
        return None
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        prefix, _, value = raw.partition(":")
        if prefix != "id":
            raise ValueError(prefix)
        last = int(value)
        if not 0 < last < 2**63:
            raise ValueError(value)
        return last
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise ValidationError(
            "invalid cursor: pass back the next_cursor value of the previous page unchanged",
            field="cursor",
        ) from None


def check_limit(limit: int | None) -> int:
    if limit is None:
        return DEFAULT_LIMIT
    if not 1 <= limit <= MAX_LIMIT:
        raise ValidationError(f"limit must be between 1 and {MAX_LIMIT}", field="limit")
    return limit


def page_of(rows: Sequence[T], limit: int, last_id: int | None) -> Page[T]:
    """Build a page from ``limit + 1`` fetched rows (the extra row tells whether more exist)."""
    items = rows[:limit]
    more = len(rows) > limit
    return Page(items=items, next_cursor=encode_cursor(last_id) if more and last_id else None)


def keyset(
    query: Select[*Row], column: Any, cursor: str | None, limit: int, *, newest_first: bool = False
) -> Select[*Row]:
    """``query`` narrowed to the page after ``cursor`` in ``column``'s order (an integer id):
    ``limit + 1`` rows, the extra one telling whether more exist."""
    after = decode_cursor(cursor)
    if after is not None:
        query = query.where(column < after if newest_first else column > after)
    return query.order_by(column.desc() if newest_first else column).limit(limit + 1)


def rows_page(
    rows: Sequence[R], limit: int, render: Callable[[R], T], row_id: Callable[[R], int]
) -> Page[T]:
    """The page of ``limit + 1`` rows fetched by a ``keyset`` query, each rendered."""
    shown = rows[:limit]
    more = len(rows) > limit
    return Page(
        items=[render(row) for row in shown],
        next_cursor=encode_cursor(row_id(shown[-1])) if more else None,
    )
