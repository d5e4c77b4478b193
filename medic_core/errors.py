"""The one hierarchy of domain errors.

Domain code raises these; the HTTP layer maps each class once to an RFC 9457 problem response
(``medic_core.server.http.problems``) and the CLI prints ``str(error)``. Messages are written for
the person who will read them: say what was wrong and what to do instead.
"""

from __future__ import annotations

from typing import Any, Literal


class MedicError(Exception):
    """Base class: every error Medic raises on purpose."""

    status = 500
    title = "Internal error"
    #: The RFC 9457 problem type: ``about:blank`` (the title is the HTTP status's meaning)
    #: unless the error is a problem of its own that clients may want to tell apart.
    type = "about:blank"

    def __init__(self, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.message = message
        self.extra = extra


class ValidationError(MedicError):
    """Input is well-formed but breaks a rule (bad slug, unknown time zone, ...)."""

    status = 422
    title = "Invalid input"

    def __init__(self, message: str, *, field: str | None = None, **extra: Any) -> None:
        super().__init__(message, **extra)
        self.field = field


class BadRequest(MedicError):
    """The request itself cannot be read (malformed JSON, wrong content type)."""

    status = 400
    title = "Bad request"


class NotFound(MedicError):
    status = 404
    title = "Not found"


class RequestTimeout(MedicError):
    """The client did not send the rest of its request in time."""

    status = 408
    title = "Request timeout"


class Conflict(MedicError):
    """The change contradicts the current state (duplicate slug, resolving a resolved alert)."""

    status = 409
    title = "Conflict"


class Unauthorized(MedicError):
    status = 401
    title = "Unauthorized"


class Forbidden(MedicError):
    status = 403
    title = "Forbidden"


class PayloadTooLarge(MedicError):
    status = 413
    title = "Payload too large"


class RateLimited(MedicError):
    status = 429
    title = "Too many requests"

    def __init__(self, message: str, *, retry_after: float, **extra: Any) -> None:
        super().__init__(message, **extra)
        self.retry_after = retry_after


class Unavailable(MedicError):
    """Medic cannot do this right now (database down, writer queue full); retry later."""

    status = 503
    title = "Service unavailable"

    def __init__(self, message: str, *, retry_after: float = 1.0, **extra: Any) -> None:
        super().__init__(message, **extra)
        self.retry_after = retry_after


#: Why the database cannot do something now (``medic_core.store.faults.classify``):
#: ``unreachable`` (no connection: refused, reset, shut down), ``full`` (no space left to write),
#: ``read_only`` (it refuses writes: a standby, a read-only file), ``slow`` (it did not answer in
#: time: a timeout, a lock held too long).
DatabaseCause = Literal["unreachable", "full", "read_only", "slow"]
DATABASE_CAUSES: tuple[DatabaseCause, ...] = ("unreachable", "full", "read_only", "slow")


class DatabaseUnavailable(Unavailable):
    """The database cannot do this now; ``cause`` says why. Built by ``database_unavailable``."""

    cause: DatabaseCause = "unreachable"

    def __init__(self, message: str, *, cause: DatabaseCause, retry_after: float = 1.0) -> None:
        super().__init__(message, retry_after=retry_after, cause=cause)
        self.cause = cause


class DatabaseUnreachable(DatabaseUnavailable):
    title = "Database unreachable"
    type = "urn:medic:problem:database-unreachable"


class DatabaseNotWritable(DatabaseUnavailable):
    title = "Database full or read-only"
    type = "urn:medic:problem:database-not-writable"


class DatabaseTooSlow(DatabaseUnavailable):
    title = "Database too slow"
    type = "urn:medic:problem:database-too-slow"


_DATABASE_ERRORS: dict[DatabaseCause, tuple[type[DatabaseUnavailable], str]] = {
    "unreachable": (DatabaseUnreachable, "the database is unreachable"),
    "full": (DatabaseNotWritable, "the database is full (no space left to write)"),
    "read_only": (DatabaseNotWritable, "the database is read-only (it refuses writes)"),
    "slow": (DatabaseTooSlow, "the database did not answer in time"),
}


def database_unavailable(
    cause: DatabaseCause, what: str, *, retry_after: float = 1.0
) -> DatabaseUnavailable:
    """The error for ``cause``; ``what`` says what it meant for the request ("the heartbeat was
    NOT stored"). The driver's own message stays in the log: it names hosts and files."""
    kind, reason = _DATABASE_ERRORS[cause]
    return kind(f"{reason}; {what}", cause=cause, retry_after=retry_after)
