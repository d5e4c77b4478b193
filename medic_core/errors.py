"""The one hierarchy of domain errors.

Domain code raises these; the HTTP layer maps each class once to an RFC 9457 problem response
(``medic_core.server.http.problems``) and the CLI prints ``str(error)``. Messages are written for
the person who will read them: say what was wrong and what to do instead.
"""

from __future__ import annotations

from typing import Any


class MedicError(Exception):
    """Base class: every error Medic raises on purpose."""

    status = 500
    title = "Internal error"

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
