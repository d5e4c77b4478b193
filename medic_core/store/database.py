"""The database handle: one async engine and its session factory.

SQLite is the embedded default and runs in WAL mode with ``synchronous=FULL``: a commit is on
disk before it returns, which is what lets the HTTP layer promise "a 2xx means stored". The group
commit writer keeps that affordable (one fsync per batch, not per heartbeat). PostgreSQL is used
through asyncpg with short connect timeouts so an unreachable server fails fast instead of
holding requests, and ``pool_pre_ping`` so the pool heals by itself when the server comes back.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import ColumnElement, String, any_, bindparam, event, func, select, text
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.orm import QueryableAttribute

from medic_core.bounded import within
from medic_core.store.faults import is_transient_db_error

__all__ = ["Database", "is_transient_db_error", "normalize_url"]


def _big_int(text: str) -> int | float:
    value = int(text)
    return value if -(2**63) <= value < 2**64 else float(text)


def _json_loads(text: str) -> Any:
    """JSON columns as read back. PostgreSQL's JSONB keeps a number's decimal value and prints a
    large float without an exponent (``1e300`` comes back as 301 digits), which Python reads as
    an integer that no JSON answer can carry; such an integer is read as the float it was."""
    return json.loads(text, parse_int=_big_int)


def normalize_url(url: str) -> str:
    """Accept the URLs people write and pick the async driver for them."""
    parsed = make_url(url)
    driver = parsed.drivername
    if driver in ("postgres", "postgresql", "postgresql+psycopg2", "postgresql+psycopg"):
        parsed = parsed.set(drivername="postgresql+asyncpg")
    elif driver == "sqlite":
        parsed = parsed.set(drivername="sqlite+aiosqlite")
    elif driver not in ("postgresql+asyncpg", "sqlite+aiosqlite"):
        raise ValueError(
            f"unsupported database URL scheme {driver!r}: use sqlite:///path/to/medic.db "
            "or postgresql://user:password@host:5432/medic"
        )
    return parsed.render_as_string(hide_password=False)


class Database:
    def __init__(
        self,
        url: str,
        *,
        pool_size: int = 10,
        connect_timeout: float = 3.0,
        statement_timeout: float = 15.0,
        sqlite_synchronous: str = "FULL",
    ) -> None:
        self.url = normalize_url(url)
        parsed = make_url(self.url)
        self.dialect = "postgresql" if parsed.drivername.startswith("postgresql") else "sqlite"
        kwargs: dict[str, Any] = {}
        if self.dialect == "postgresql":
            kwargs.update(
                pool_pre_ping=True,
                pool_size=pool_size,
                max_overflow=pool_size,
                pool_timeout=connect_timeout,
                connect_args={"timeout": connect_timeout, "command_timeout": statement_timeout},
            )
        else:
            # No pre-ping: a connection to a local file does not go stale, and the ping was a
            # round trip to aiosqlite's thread on every checkout.
            if parsed.database and parsed.database != ":memory:":
                Path(parsed.database).expanduser().parent.mkdir(parents=True, exist_ok=True)
            kwargs.update(connect_args={"timeout": statement_timeout})
        self.engine: AsyncEngine = create_async_engine(
            self.url, json_deserializer=_json_loads, **kwargs
        )
        if self.dialect == "sqlite":
            _configure_sqlite(self.engine, sqlite_synchronous, statement_timeout)
        self.sessions: async_sessionmaker[AsyncSession] = async_sessionmaker(
            self.engine, expire_on_commit=False
        )

    @property
    def is_postgres(self) -> bool:
        return self.dialect == "postgresql"

    def among(
        self,
        column: QueryableAttribute[str] | QueryableAttribute[str | None],
        values: Sequence[str],
        name: str = "among",
    ) -> ColumnElement[bool]:
        """``column`` is one of ``values``, bound as one parameter however many there are (a
        PostgreSQL array, a JSON array read by ``json_each`` on SQLite): thousands of values as
        an ``IN`` list of parameters cost more to build and send than the query costs to run."""
        if self.is_postgres:
            return column == any_(bindparam(name, list(values), ARRAY(String)))
        rows = func.json_each(bindparam(name, json.dumps(list(values)))).table_valued("value")
        return column.in_(select(rows.c.value))

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncSession]:
        """A session inside one write transaction: committed on success, rolled back on error.

        On SQLite the transaction starts with ``BEGIN IMMEDIATE``: it takes the write lock up
        front (waiting up to the busy timeout), instead of reading first and failing to upgrade
        when another connection committed in between (SQLITE_BUSY_SNAPSHOT, which no busy
        timeout retries).
        """
        async with self.sessions() as session, session.begin():
            if self.dialect == "sqlite":
                await session.connection(execution_options={"sqlite_begin": "IMMEDIATE"})
            yield session

    async def assign_ids(self, session: AsyncSession, model: Any, rows: Sequence[Any]) -> None:
        """On SQLite, number new ORM rows before the flush, so they insert as one batch.

        SQLite cannot tie a multi-row ``INSERT ... RETURNING`` to its parameter order, so for
        rows without ids SQLAlchemy falls back to one INSERT (one driver round trip) per row,
        which caps ingest and the monitor at a few hundred rows per second. Write transactions
        hold SQLite's write lock (``BEGIN IMMEDIATE``), so numbering from the current maximum is
        exactly what SQLite does itself (no AUTOINCREMENT: max + 1). Every pending new row of
        ``model`` must be in ``rows``, and the caller must flush before reading ids elsewhere.
        PostgreSQL needs none of this: its multi-row RETURNING is ordered.
        """
        if self.dialect != "sqlite" or not rows:
            return
        with session.no_autoflush:  # an autoflush here would insert the rows one by one
            last = int(await session.scalar(select(func.max(model.id))) or 0)
        for offset, row in enumerate(rows, start=1):
            if isinstance(row, dict):
                row["id"] = last + offset
            else:
                row.id = last + offset

    async def take_ids(self, session: AsyncSession, model: Any, count: int) -> list[int]:
        """``count`` new ids for ``model``'s table, before inserting (both databases).

        PostgreSQL: from the table's sequence, in one statement. SQLite: numbered from the
        current maximum, as ``assign_ids`` does (the caller holds the write lock). Callers that
        know their ids up front can insert with plain Core ``executemany`` and refer to the
        rows (foreign keys, events) before the insert.
        """
        if count <= 0:
            return []
        if self.dialect != "sqlite":
            table = model.__tablename__
            sequence = func.pg_get_serial_sequence(table, "id")
            rows = await session.execute(
                select(func.nextval(sequence)).select_from(func.generate_series(1, count))
            )
            return sorted(int(value) for (value,) in rows)
        with session.no_autoflush:
            last = int(await session.scalar(select(func.max(model.id))) or 0)
        return list(range(last + 1, last + 1 + count))

    async def ping(self, timeout: float = 2.0) -> None:
        """Raise if the database cannot answer a trivial query within ``timeout`` seconds
        (``TimeoutError`` at the bound, even when the database is frozen: ``within``)."""
        await within(timeout, self._select_one(), what="the database ping")

    async def probe_write(self, timeout: float = 2.0) -> None:
        """Raise if the database cannot commit a write within ``timeout`` seconds.

        A read succeeds on a full disk and on a read-only standby; this writes a row back
        unchanged (the schema's version: always there, one row), which needs the write lock,
        a WAL record and a commit, and fails as a heartbeat would."""
        await within(timeout, self._rewrite_version(), what="the database write probe")

    async def _select_one(self) -> None:
        async with self.engine.connect() as conn:
            await conn.execute(text("SELECT 1"))

    async def _rewrite_version(self) -> None:
        async with self.transaction() as session:
            await session.execute(text("UPDATE alembic_version SET version_num = version_num"))

    async def close(self) -> None:
        await self.engine.dispose()

    def redacted_url(self) -> str:
        return make_url(self.url).render_as_string(hide_password=True)


def _configure_sqlite(engine: AsyncEngine, synchronous: str, busy_timeout: float) -> None:
    mode = synchronous.upper()
    if mode not in ("OFF", "NORMAL", "FULL", "EXTRA"):
        raise ValueError(
            f"MEDIC_SQLITE_SYNCHRONOUS must be OFF, NORMAL, FULL or EXTRA, not {mode!r}"
        )

    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        # Let SQLAlchemy, not the driver, emit BEGIN, so write transactions can be IMMEDIATE.
        dbapi_conn.isolation_level = None
        cursor = dbapi_conn.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA synchronous={mode}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={int(busy_timeout * 1000)}")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(conn: Any) -> None:
        mode = conn.get_execution_options().get("sqlite_begin", "DEFERRED")
        conn.exec_driver_sql(f"BEGIN {mode}")
