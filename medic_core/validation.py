"""Small input rules shared by every domain module (slugs, names, URLs, numbers, instants).

Error messages say what was wrong without handing the input back wholesale: a value is quoted
with ``quote()``, which cuts it after ``QUOTE_MAX`` characters (and says so), so an invalid
megabyte-long slug does not come back in the 422, and secrets are never quoted at all (the
callers that handle them -- notifier configuration, settings -- describe the rule instead).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlparse

from medic_core.errors import ValidationError

SLUG_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{0,99}$")
PRIORITIES = ("p1", "p2", "p3", "p4", "p5")
#: Longest part of an input value an error message quotes back.
QUOTE_MAX = 200
MAX_ID = 2**63 - 1  # ids are BIGINT on both databases
#: The range of a 64-bit signed integer (BIGINT): the widest any integer input may be.
INT64 = (-(2**63), 2**63 - 1)


def quote(value: object) -> str:
    """``value`` quoted for an error message; past ``QUOTE_MAX`` characters cut and marked.

    Every message that hands an input back goes through this: a client that sent a megabyte
    gets a readable error, not its megabyte back (and logs that record errors stay bounded).
    """
    shown = repr(value)
    if len(shown) <= QUOTE_MAX:
        return shown
    size = f"{len(value)} characters" if isinstance(value, str) else f"{len(shown)} characters"
    return f"{shown[:QUOTE_MAX]}... (cut: {size})"


def slug(value: object, field: str = "slug") -> str:
    if not isinstance(value, str) or not SLUG_RE.match(value):
        raise ValidationError(
            f"{field} {quote(value)} is not valid: use 1-100 lower-case letters, digits, '.', "
            "'_' or '-', starting with a letter or digit (for example 'nightly-backup')",
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


def integer(value: object, field: str, *, low: int = INT64[0], high: int = INT64[1]) -> int:
    """An integer in ``[low, high]``; never wider than a 64-bit signed column (``INT64``)."""
    low, high = max(low, INT64[0]), min(high, INT64[1])
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


#: The JSON Schema keywords ``conforms`` understands; parameter declarations use no others
#: (a test walks the route table), so a declared rule can never be silently unenforced.
CHECKED_KEYWORDS = frozenset(
    {"type", "enum", "const", "pattern", "minLength", "maxLength", "minimum", "maximum"}
)
#: Keywords that only describe (for the OpenAPI document); ``format`` is parsed by the caller.
ANNOTATION_KEYWORDS = frozenset({"description", "examples", "default", "format", "title"})
_JSON_TYPES: dict[str, tuple[type, ...]] = {
    "string": (str,),
    "integer": (int,),
    "boolean": (bool,),
    "number": (int, float),
    "null": (type(None),),
}


def conforms(value: object, schema: Mapping[str, Any], field: str, label: str = "") -> None:
    """Check an already-parsed parameter value against its declared (simple) JSON Schema.

    Raises ``ValidationError`` naming the rule, and quotes the value only through ``quote``.
    ``label`` is how the message names the value (default: ``field``).
    """
    name = label or field
    unknown = set(schema) - CHECKED_KEYWORDS - ANNOTATION_KEYWORDS
    if unknown:  # a declaration this checker cannot enforce: a bug in Medic, not in the input
        raise TypeError(f"{name}: cannot check JSON Schema keyword(s) {sorted(unknown)}")
    kinds = schema.get("type")
    if kinds is not None:
        allowed = [kinds] if isinstance(kinds, str) else list(kinds)
        if not any(_is_json_type(value, kind) for kind in allowed):
            raise ValidationError(f"{name} must be of type {' or '.join(allowed)}", field=field)
    if "const" in schema and value != schema["const"]:
        raise ValidationError(f"{name} must be {quote(schema['const'])}", field=field)
    if "enum" in schema and value not in schema["enum"]:
        choices = ", ".join(str(choice) for choice in schema["enum"])
        raise ValidationError(f"{name} must be one of {choices}, not {quote(value)}", field=field)
    if isinstance(value, str):
        if len(value) < schema.get("minLength", 0):
            raise ValidationError(
                f"{name} must be at least {schema['minLength']} characters", field=field
            )
        if "maxLength" in schema and len(value) > schema["maxLength"]:
            raise ValidationError(
                f"{name} must be at most {schema['maxLength']} characters", field=field
            )
        if "pattern" in schema and not re.search(schema["pattern"], value):
            raise ValidationError(
                f"{name} {quote(value)} does not match {schema['pattern']}", field=field
            )
    if isinstance(value, int) and not isinstance(value, bool):
        low = max(schema.get("minimum", INT64[0]), INT64[0])
        high = min(schema.get("maximum", INT64[1]), INT64[1])
        if not low <= value <= high:
            raise ValidationError(f"{name} must be between {low} and {high}", field=field)


def _is_json_type(value: object, kind: str) -> bool:
    if kind in ("integer", "number") and isinstance(value, bool):
        return False
    return isinstance(value, _JSON_TYPES.get(kind, ()))
