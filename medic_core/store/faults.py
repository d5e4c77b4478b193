"""What a database failure means for the caller, decided once for both databases.

``classify`` reads a driver error (SQLAlchemy's wrapper, the DB-API error in ``orig``, the
driver's own error chained as ``__cause__``) and says whether it is the database failing rather
than the statement, and how:

- ``full``: no space left to write (SQLite ``SQLITE_FULL``, "database or disk is full";
  PostgreSQL SQLSTATE 53100 ``disk_full``);
- ``read_only``: the database refuses writes (SQLite ``SQLITE_READONLY``, "attempt to write a
  readonly database"; PostgreSQL 25006 ``read_only_sql_transaction``, a standby);
- ``slow``: it did not answer in time (SQLite ``SQLITE_BUSY``/``SQLITE_LOCKED``, "database is
  locked"; PostgreSQL 57014 ``query_canceled`` -- the statement timeout -- and 55P03
  ``lock_not_available``; a connect, pool or asyncio timeout);
- ``unreachable``: no usable connection (refused, reset, shut down: SQLSTATE classes 08 and
  57P, too many connections, a connection SQLAlchemy invalidated; any other
  ``OperationalError``).

Anything else (an integrity error, a bug) is None: the caller's own problem, a 4xx or a 500,
never a 503. Specific causes win over the generic ``unreachable`` wherever they appear in the
chain, since SQLAlchemy wraps a full disk in the same ``OperationalError`` as a refused
connection.
"""

from __future__ import annotations

import sqlite3

from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from medic_core.errors import DatabaseCause

# asyncpg's connection errors, by name (asyncpg is an optional dependency).
_ASYNCPG_UNREACHABLE = {
    "ConnectionDoesNotExistError",
    "CannotConnectNowError",
    "InterfaceError",
    "ConnectionFailureError",
    "TooManyConnectionsError",
    "AdminShutdownError",
}
_SQLSTATES: dict[str, DatabaseCause] = {
    "53100": "full",
    "25006": "read_only",
    "57014": "slow",
    "55P03": "slow",
    "53300": "unreachable",  # too many connections
}
_SQLITE_CODES: dict[str, DatabaseCause] = {
    "SQLITE_FULL": "full",
    "SQLITE_READONLY": "read_only",
    "SQLITE_BUSY": "slow",
    "SQLITE_LOCKED": "slow",
}
# What SQLite says when the error name is not there (a driver that re-raises the message).
_SQLITE_MESSAGES: tuple[tuple[str, DatabaseCause], ...] = (
    ("database or disk is full", "full"),
    ("readonly database", "read_only"),
    ("database is locked", "slow"),
    ("database table is locked", "slow"),
)


def classify(exc: BaseException) -> DatabaseCause | None:
    """Why the database failed this call, or None when the failure is not the database's."""
    generic = False
    for link in _chain(exc):
        specific = _specific(link)
        if specific is not None:
            return specific
        generic = generic or _generic(link)
    return "unreachable" if generic else None


def _chain(exc: BaseException) -> list[BaseException]:
    """``exc`` and what it wraps: SQLAlchemy's ``orig`` and the ``__cause__`` of each (the
    driver's own error hides behind either), at most a dozen."""
    seen: list[BaseException] = []
    todo: list[BaseException] = [exc]
    while todo and len(seen) < 12:
        current = todo.pop(0)
        if any(current is s for s in seen):
            continue
        seen.append(current)
        orig = getattr(current, "orig", None)
        todo += [e for e in (orig, current.__cause__) if isinstance(e, BaseException)]
    return seen


def is_transient_db_error(exc: BaseException) -> bool:
    """True when the failure is the database's (answer 503, retry later), not the statement's."""
    return classify(exc) is not None


def describe(exc: BaseException) -> str:
    """One line naming the error for the log: the driver's message, without SQLAlchemy's
    statement and parameters (they can hold a heartbeat's message or a key id)."""
    current: BaseException = exc
    orig = getattr(exc, "orig", None)
    if isinstance(orig, BaseException):
        current = orig
    text = str(current).strip().splitlines()[0] if str(current).strip() else ""
    return f"{type(current).__name__}: {text}"[:300] if text else type(current).__name__


def _specific(exc: BaseException) -> DatabaseCause | None:
    if isinstance(exc, TimeoutError | PoolTimeout):
        return "slow"
    sqlstate = str(getattr(exc, "sqlstate", "") or getattr(exc, "pgcode", "") or "")
    if sqlstate in _SQLSTATES:
        return _SQLSTATES[sqlstate]
    if isinstance(exc, sqlite3.Error):
        name = getattr(exc, "sqlite_errorname", "") or ""
        for code, cause in _SQLITE_CODES.items():
            if name == code or name.startswith(code + "_"):
                return cause
    message = str(exc).lower()
    if isinstance(exc, sqlite3.Error | OperationalError):
        for fragment, cause in _SQLITE_MESSAGES:
            if fragment in message:
                return cause
    return None


def _generic(exc: BaseException) -> bool:
    if isinstance(exc, OperationalError | InterfaceError):
        return True
    if isinstance(exc, DBAPIError) and exc.connection_invalidated:
        return True
    if isinstance(exc, sqlite3.OperationalError | OSError | ConnectionError):
        return True
    if type(exc).__name__ in _ASYNCPG_UNREACHABLE:
        return True
    # SQLSTATE classes 08 (connection exception) and 57P (operator intervention: shutdown).
    sqlstate = str(getattr(exc, "sqlstate", "") or "")
    return sqlstate.startswith(("08", "57P"))
