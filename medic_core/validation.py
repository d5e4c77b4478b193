"""Small input rules shared by every domain module (slugs, names, URLs, numbers, instants)."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlparse

from medic_core.errors import ValidationError

SLUG_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{0,99}$")
PRIORITIES = ("p1", "p2", "p3", "p4", "p5")


def slug(value: object, field: str = "slug") -> str:
    if not isinstance(value, str) or not SLUG_RE.match(value):
        raise ValidationError(
            f"{field} {value!r} is not valid: use 1-100 lower-case letters, digits, '.', '_' or "
            "'-', starting with a letter or digit (for example 'nightly-backup')",
            field=field,
        )
    return value


def text(value: object, field: str, *, max_len: int, allow_empty: bool = False) -> str:
    if not isinstance(value, str):
        raise ValidationError(f"{field} must be a string", field=field)
    value = value.strip()
    if not allow_empty and not value:
        raise ValidationError(f"{field} must not be empty", field=field)
    if len(value) > max_len:
        raise ValidationError(f"{field} is longer than {max_len} characters", field=field)
    return value


def integer(value: object, field: str, *, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValidationError(f"{field} must be an integer", field=field)
    if not low <= value <= high:
        raise ValidationError(f"{field} must be between {low} and {high}", field=field)
    return value


def priority(value: object) -> str:
    if value not in PRIORITIES:
        raise ValidationError(
            f"priority must be one of {', '.join(PRIORITIES)} (p1 is the most severe)",
            field="priority",
        )
    assert isinstance(value, str)
    return value


def tags(value: object) -> list[str]:
    if not isinstance(value, list) or len(value) > 50:
        raise ValidationError("tags must be a list of at most 50 tags", field="tags")
    return sorted({slug(t, "tag") for t in value})


def http_url(value: object, field: str) -> str | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str) or len(value) > 2000:
        raise ValidationError(f"{field} must be a URL of at most 2000 characters", field=field)
    parsed = urlparse(value)
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        raise ValidationError(f"{field} must be an http(s) URL", field=field)
    return value


def instant(value: object, field: str) -> datetime:
    """Parse an ISO 8601 instant (a string or an aware datetime); it must carry an offset."""
    parsed: datetime | None = None
    if isinstance(value, datetime):
        parsed = value
    elif isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            parsed = None
    if parsed is None:
        raise ValidationError(
            f"{field} must be an ISO 8601 instant such as '2026-03-01T02:00:00Z'", field=field
        )
    if parsed.tzinfo is None or parsed.utcoffset() is None:
        raise ValidationError(
            f"{field} must include a UTC offset or 'Z', e.g. '2026-03-01T02:00:00Z'", field=field
        )
    try:
        return parsed.astimezone(UTC)
    except OverflowError:
        raise ValidationError(
            f"{field} is outside the supported range of dates", field=field
        ) from None


MAX_ID = 2**63 - 1  # ids are BIGINT on both databases


def row_id(value: int, field: str) -> int:
    """An id that fits the database's BIGINT (larger ones cannot exist: not found, not a 500)."""
    if not 0 < value <= MAX_ID:
        raise ValidationError(f"{field} must be a positive 64-bit integer", field=field)
    return value


def like_pattern(text: str) -> str:
    """A LIKE pattern matching ``text`` as a substring, with ``%``/``_`` taken literally."""
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def only_keys(data: dict[str, Any], allowed: set[str], where: str) -> None:
    unknown = sorted(set(data) - allowed)
    if unknown:
        raise ValidationError(
            f"unknown field(s) in {where}: {', '.join(unknown)}; "
            f"allowed: {', '.join(sorted(allowed))}",
            field=unknown[0],
        )
