"""Column types that behave the same on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, DateTime, Dialect, Integer
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.types import TypeDecorator


class UTCDateTime(TypeDecorator[datetime]):
    """An aware UTC instant.

    PostgreSQL stores ``timestamptz``. SQLite has no time type, so the value is stored naive in UTC;
    SQLAlchemy writes a fixed-width ISO string, so string order is time order and the
    ``next_due`` index works.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime: Medic stores only timezone-aware UTC instants")
        value = value.astimezone(UTC)
        if dialect.name == "sqlite":
            return value.replace(tzinfo=None)
        return value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


def instant_from_db(value: datetime | str) -> datetime:
    """An aware instant from a raw column value.

    Aggregates such as ``MIN()`` over a SQLite column return the stored (naive UTC) text, not
    the decorated type, so a caller reading them gets a string.
    """
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value if value.tzinfo else value.replace(tzinfo=UTC)


#: Integer primary keys: BIGINT on PostgreSQL, INTEGER on SQLite (where only ``INTEGER PRIMARY
#: KEY`` is the rowid alias that autoincrements).
BigId = BigInteger().with_variant(Integer(), "sqlite")

#: JSON documents: JSONB on PostgreSQL, JSON text on SQLite.
Json: Any = JSON().with_variant(JSONB(), "postgresql")
