"""JSON Schemas of request bodies and common responses, for the OpenAPI document.

The rules themselves (ranges, formats, cross-field checks) are enforced by the domain modules,
which give the field-precise error messages; these schemas describe the shapes for clients.
"""

from __future__ import annotations

from typing import Any

SLUG = {"type": "string", "pattern": "^[a-z0-9][a-z0-9._-]{0,99}$"}
INSTANT = {"type": "string", "format": "date-time"}
CURSOR = {"type": "string"}

EXPECTATION: dict[str, Any] = {
    "oneOf": [
        {
            "type": "object",
            "required": ["kind", "period"],
            "properties": {
                "kind": {"const": "interval"},
                "period": {"type": "integer", "minimum": 1},
            },
            "additionalProperties": False,
        },
        {
            "type": "object",
            "required": ["kind", "expression"],
            "properties": {
                "kind": {"const": "cron"},
                "expression": {"type": "string", "examples": ["0 3 * * *"]},
                "timezone": {"type": "string", "examples": ["Europe/Paris"], "default": "UTC"},
            },
            "additionalProperties": False,
        },
        {
            "type": "object",
            "required": ["kind", "min_count", "window"],
            "properties": {
                "kind": {"const": "quorum"},
                "min_count": {"type": "integer", "minimum": 1},
                "window": {"type": "integer", "minimum": 1},
            },
            "additionalProperties": False,
        },
    ]
}

_SERVICE_FIELDS: dict[str, Any] = {
    "name": {"type": "string", "maxLength": 200},
    "team": {"oneOf": [SLUG, {"type": "null"}]},
    "tags": {"type": "array", "items": SLUG, "maxItems": 50},
    "priority": {"enum": ["p1", "p2", "p3", "p4", "p5"]},
    "runbook_url": {"type": ["string", "null"], "format": "uri"},
    "description": {"type": "string"},
    "expectation": EXPECTATION,
    "grace": {"type": "integer", "minimum": 0},
    "max_duration": {"type": ["integer", "null"], "minimum": 1},
}

SERVICE_CREATE = {
    "type": "object",
    "required": ["slug", "expectation"],
    "properties": {"slug": SLUG, **_SERVICE_FIELDS},
    "additionalProperties": False,
}
SERVICE_UPDATE = {"type": "object", "properties": _SERVICE_FIELDS, "additionalProperties": False}
MUTE = {
    "type": "object",
    "properties": {"until": INSTANT, "reason": {"type": "string", "maxLength": 500}},
    "additionalProperties": False,
}
HEARTBEAT = {
    "type": "object",
    "required": ["service"],
    "properties": {
        "service": SLUG,
        "status": {"enum": ["ok", "start", "success", "fail"], "default": "ok"},
        "run_id": {"type": "string", "maxLength": 200},
        "exit_code": {"type": "integer"},
        "message": {"type": "string", "description": "Cut to 4000 characters (flagged)."},
    },
    "additionalProperties": False,
}
HEARTBEAT_BATCH = {
    "type": "object",
    "required": ["heartbeats"],
    "properties": {
        "heartbeats": {"type": "array", "items": HEARTBEAT, "minItems": 1, "maxItems": 1000}
    },
    "additionalProperties": False,
}
RESOLVE = {
    "type": "object",
    "properties": {"note": {"type": "string", "maxLength": 500}},
    "additionalProperties": False,
}
TEAM_CREATE = {
    "type": "object",
    "required": ["slug"],
    "properties": {"slug": SLUG, "name": {"type": "string"}, "description": {"type": "string"}},
    "additionalProperties": False,
}
TEAM_UPDATE = {
    "type": "object",
    "properties": {"name": {"type": "string"}, "description": {"type": "string"}},
    "additionalProperties": False,
}
MAINTENANCE = {
    "type": "object",
    "required": ["name", "selector", "starts_at", "ends_at"],
    "properties": {
        "name": {"type": "string"},
        "reason": {"type": "string"},
        "selector": {
            "oneOf": [
                {"type": "object", "properties": {"all": {"const": True}}, "required": ["all"]},
                {
                    "type": "object",
                    "properties": {"services": {"type": "array", "items": SLUG}},
                    "required": ["services"],
                },
                {
                    "type": "object",
                    "properties": {"tags": {"type": "array", "items": SLUG}},
                    "required": ["tags"],
                },
                {"type": "object", "properties": {"team": SLUG}, "required": ["team"]},
            ]
        },
        "starts_at": INSTANT,
        "ends_at": INSTANT,
        "timezone": {"type": "string", "default": "UTC"},
        "recurrence": {
            "type": ["string", "null"],
            "description": "cron expression opening each occurrence",
        },
        "duration": {"type": ["integer", "null"], "description": "seconds each occurrence lasts"},
    },
    "additionalProperties": False,
}
MAINTENANCE_UPDATE = {**MAINTENANCE, "required": []}
API_KEY_CREATE = {
    "type": "object",
    "required": ["name", "scopes"],
    "properties": {
        "name": {"type": "string"},
        "scopes": {
            "type": "array",
            "items": {"enum": ["read", "write", "admin", "heartbeat", "agent"]},
            "minItems": 1,
        },
        "expires_at": INSTANT,
    },
    "additionalProperties": False,
}

PROBLEM = {
    "type": "object",
    "properties": {
        "type": {"type": "string"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string"},
        "field": {"type": "string"},
        "request_id": {"type": "string"},
    },
    "required": ["title", "status", "detail"],
}


def page_of(item: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {
            "items": {"type": "array", "items": item},
            "next_cursor": {"type": ["string", "null"]},
        },
        "required": ["items", "next_cursor"],
    }


OBJECT: dict[str, Any] = {"type": "object"}
