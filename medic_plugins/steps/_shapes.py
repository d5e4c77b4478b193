"""Schema pieces the built-in step types share (within this package only)."""

from __future__ import annotations

from typing import Any

#: A template or a plain string: playbook strings may hold ``{{ ... }}``.
TEXT: dict[str, Any] = {"type": "string", "minLength": 1, "maxLength": 4000}
SLUG: dict[str, Any] = {"type": "string", "pattern": "^[a-z0-9][a-z0-9._-]{0,99}$"}


def seconds(low: int, high: int, about: str) -> dict[str, Any]:
    return {"type": "integer", "minimum": low, "maximum": high, "description": about}


APPROVERS: dict[str, Any] = {
    "type": "object",
    "properties": {
        "scope": {"enum": ["write", "admin"], "description": "the scope a decider's key needs"},
        "teams": {
            "type": "array",
            "items": SLUG,
            "maxItems": 20,
            "uniqueItems": True,
            "description": "teams whose members may decide (empty: anyone with the scope)",
        },
    },
    "additionalProperties": False,
}
