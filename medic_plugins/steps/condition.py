"""``condition``: poll a check until it holds, or fail at the step's timeout."""

from __future__ import annotations

from typing import Any

from medic_plugins.steps._shapes import TEXT, seconds

CHECKS = ("heartbeat_received", "service_state", "http_healthy", "alert_resolved")


def _needs(check: str, *fields: str) -> dict[str, Any]:
    return {
        "if": {"properties": {"check": {"const": check}}, "required": ["check"]},
        "then": {"required": list(fields)},
    }


class ConditionStep:
    name = "condition"
    description = (
        "Poll until a check holds (a heartbeat received since the step started, a service "
        "state, an HTTP endpoint healthy, the alert resolved); fails at the step's timeout."
    )
    params_schema: dict[str, Any] = {
        "type": "object",
        "required": ["check"],
        "properties": {
            "check": {"enum": list(CHECKS)},
            "service": {**TEXT, "description": "a service slug (default: the alert's service)"},
            "state": {"enum": ["up", "late", "down", "paused", "new"]},
            "url": {"type": "string", "pattern": "^https?://", "maxLength": 2000},
            "expect_status": {
                "type": "array",
                "items": {"type": "integer", "minimum": 100, "maximum": 599},
                "minItems": 1,
                "maxItems": 50,
                "description": "http_healthy: the codes that count as healthy (default any 2xx)",
            },
            "poll": {
                "type": "object",
                "properties": {
                    "initial": seconds(1, 3600, "seconds before the second look (default 5)"),
                    "max": seconds(1, 3600, "longest wait between two looks (default 60)"),
                    "multiplier": {"type": "number", "minimum": 1, "maximum": 10},
                },
                "additionalProperties": False,
            },
        },
        "allOf": [_needs("service_state", "state"), _needs("http_healthy", "url")],
        "additionalProperties": False,
    }
