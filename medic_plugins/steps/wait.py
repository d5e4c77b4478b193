"""``wait``: pause the run for a duration, or until an instant."""

from __future__ import annotations

from typing import Any

from medic_plugins.steps._shapes import seconds


class WaitStep:
    name = "wait"
    description = (
        "Pause for a number of seconds, or until an instant (ISO 8601, may be a template)."
    )
    params_schema: dict[str, Any] = {
        "type": "object",
        "properties": {
            "seconds": seconds(1, 604_800, "how long to wait (1 to 604800)"),
            "until": {
                "type": "string",
                "minLength": 1,
                "maxLength": 200,
                "description": "an instant with an offset, e.g. 2026-03-01T02:00:00Z",
            },
        },
        "oneOf": [{"required": ["seconds"]}, {"required": ["until"]}],
        "additionalProperties": False,
    }
