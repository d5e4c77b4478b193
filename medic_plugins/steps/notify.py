"""``notify``: send a message through a notification target."""

from __future__ import annotations

from typing import Any

from medic_plugins.steps._shapes import SLUG, TEXT


class NotifyStep:
    name = "notify"
    description = "Send a message (a template) through a notification target."
    params_schema: dict[str, Any] = {
        "type": "object",
        "required": ["target", "message"],
        "properties": {
            "target": {**SLUG, "description": "a notification target's slug"},
            "message": TEXT,
        },
        "additionalProperties": False,
    }
