"""``webhook``: call an HTTP endpoint (through Medic's outbound guard when it runs)."""

from __future__ import annotations

from typing import Any

from medic_plugins.steps._shapes import TEXT, seconds


class WebhookStep:
    name = "webhook"
    description = (
        "Call an HTTP endpoint; succeeds when it answers one of success_codes. URL, headers "
        "and body may be templates."
    )
    params_schema: dict[str, Any] = {
        "type": "object",
        "required": ["url"],
        "properties": {
            "url": {
                "type": "string",
                "pattern": "^https?://",
                "maxLength": 2000,
                "description": "an http(s) URL; private addresses only where "
                "MEDIC_OUTBOUND_ALLOW_NETWORKS allows them",
            },
            "method": {"enum": ["GET", "POST", "PUT", "PATCH", "DELETE"], "default": "POST"},
            "headers": {
                "type": "object",
                "propertyNames": {"pattern": "^[A-Za-z0-9!#$%&'*+.^_`|~-]{1,100}$"},
                "additionalProperties": TEXT,
                "maxProperties": 50,
            },
            "body": {"description": "JSON sent as the body (strings in it may be templates)"},
            "success_codes": {
                "type": "array",
                "items": {"type": "integer", "minimum": 100, "maximum": 599},
                "minItems": 1,
                "maxItems": 50,
                "uniqueItems": True,
                "description": "default: any 2xx",
            },
            "timeout": seconds(1, 300, "seconds one request may take (default 10)"),
        },
        "additionalProperties": False,
    }
