"""JSON Schemas of request bodies and parameters: documented in OpenAPI and enforced.

A route's ``body`` schema is checked before its handler runs (``bodies.py``), so what clients
read here is what the server holds them to. Rules a schema cannot say (a team that must exist,
a known time zone, ``ends_at`` after ``starts_at``) stay with the domain modules. The shapes of
answers are the named components of ``components.py``.
"""

from __future__ import annotations

from typing import Any

from medic_core.deadlines.expectations import MAX_MIN_COUNT, MAX_SECONDS
from medic_core.store.pagination import MAX_LIMIT
from medic_core.validation import MAX_ID

SLUG = {"type": "string", "pattern": "^[a-z0-9][a-z0-9._-]{0,99}$"}
INSTANT = {"type": "string", "format": "date-time"}
CURSOR = {"type": "string", "maxLength": 100}
#: A row id in a path or a filter: ids are positive BIGINTs, so larger numbers cannot exist.
ROW_ID: dict[str, Any] = {"type": "integer", "minimum": 1, "maximum": MAX_ID}
LIMIT: dict[str, Any] = {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT}

EXPECTATION: dict[str, Any] = {
    "oneOf": [
        {
            "type": "object",
            "required": ["kind", "period"],
            "properties": {
                "kind": {"const": "interval"},
                "period": {"type": "integer", "minimum": 1, "maximum": MAX_SECONDS},
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
                "min_count": {"type": "integer", "minimum": 1, "maximum": MAX_MIN_COUNT},
                "window": {"type": "integer", "minimum": 1, "maximum": MAX_SECONDS},
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
    "grace": {"type": "integer", "minimum": 0, "maximum": MAX_SECONDS},
    "max_duration": {"type": ["integer", "null"], "minimum": 1, "maximum": MAX_SECONDS},
}

SERVICE_CREATE = {
    "x-medic-name": "service",
    "type": "object",
    "required": ["slug", "expectation"],
    "properties": {"slug": SLUG, **_SERVICE_FIELDS},
    "additionalProperties": False,
}
SERVICE_UPDATE = {
    "x-medic-name": "service update (the slug cannot change)",
    "type": "object",
    "properties": _SERVICE_FIELDS,
    "additionalProperties": False,
}
MUTE = {
    "x-medic-name": "mute",
    "type": "object",
    "properties": {
        "until": {
            "oneOf": [INSTANT, {"type": "null"}],
            "description": "null or absent: muted until unmuted",
        },
        "reason": {"type": "string", "maxLength": 500},
    },
    "additionalProperties": False,
}
HEARTBEAT = {
    "x-medic-name": "heartbeat",
    "type": "object",
    "required": ["service"],
    "properties": {
        "service": {**SLUG, "description": "the slug of a registered service"},
        # No default: left out, the server decides (ok, or the exit code's success/fail). A
        # default of "ok" would make generated clients send ok for a job that exited 3.
        "status": {
            "enum": ["ok", "start", "success", "fail"],
            "description": "left out: ok, or with an exit_code success (0) / fail (non-zero); "
            "a status the exit_code contradicts (ok or success with a non-zero code, fail with "
            "0, start with any) is a 422",
        },
        "run_id": {"type": "string", "minLength": 1, "maxLength": 200},
        "exit_code": {"type": "integer", "minimum": -(2**31), "maximum": 2**31 - 1},
        "message": {"type": "string", "description": "Cut to 4000 characters (flagged)."},
    },
    "additionalProperties": False,
}
HEARTBEAT_BATCH = {
    "x-medic-name": "batch",
    "type": "object",
    "required": ["heartbeats"],
    "properties": {
        "heartbeats": {
            "type": "array",
            # Any item is taken: each is checked on its own against the Heartbeat schema and a
            # bad one is refused in its result, not by refusing the batch (one malformed line
            # of a collector must not cost the other 999 heartbeats).
            "items": {
                "description": "a heartbeat (components/schemas/HeartbeatIn), checked on its own: "
                "a bad item is refused in its result (ok: false) and the others are stored"
            },
            "minItems": 1,
            "maxItems": 1000,
        }
    },
    "additionalProperties": False,
}
RESOLVE = {
    "x-medic-name": "resolve",
    "type": "object",
    "properties": {"note": {"type": "string", "maxLength": 500}},
    "additionalProperties": False,
}
_TEAM_FIELDS: dict[str, Any] = {
    "name": {"type": "string"},
    "description": {"type": "string"},
    "escalation_policy": {
        "oneOf": [SLUG, {"type": "null"}],
        "description": "slug of the escalation policy for the team's alerts; null: none",
    },
}
TEAM_CREATE = {
    "x-medic-name": "team",
    "type": "object",
    "required": ["slug"],
    "properties": {"slug": SLUG, **_TEAM_FIELDS},
    "additionalProperties": False,
}
TEAM_UPDATE = {
    "x-medic-name": "team update (the slug cannot change)",
    "type": "object",
    "properties": _TEAM_FIELDS,
    "additionalProperties": False,
}
MAINTENANCE = {
    "x-medic-name": "maintenance window",
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
        "duration": {
            "type": ["integer", "null"],
            "minimum": 1,
            "maximum": MAX_SECONDS,
            "description": "seconds each occurrence lasts",
        },
    },
    "additionalProperties": False,
}
MAINTENANCE_UPDATE = {**MAINTENANCE, "required": []}
API_KEY_CREATE = {
    "x-medic-name": "API key",
    "type": "object",
    "required": ["name", "scopes"],
    "properties": {
        "name": {"type": "string"},
        "scopes": {
            "type": "array",
            "items": {"enum": ["read", "write", "admin", "heartbeat", "agent"]},
            "minItems": 1,
        },
        "expires_at": {"oneOf": [INSTANT, {"type": "null"}], "description": "null: never"},
    },
    "additionalProperties": False,
}

# -- alert delivery: schedules, escalation policies, notification targets ----------------------

_CLOCK = "([01][0-9]|2[0-3]):[0-5][0-9]"
WEEKLY_RANGE = {
    "type": "object",
    "required": ["days", "start", "end"],
    "properties": {
        "days": {
            "type": "array",
            "items": {"enum": ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]},
            "minItems": 1,
        },
        "start": {
            "type": "string",
            "pattern": f"^{_CLOCK}$",
            "description": "HH:MM, 00:00 to 23:59",
            "examples": ["09:00"],
        },
        "end": {
            "type": "string",
            "pattern": f"^({_CLOCK}|24:00)$",
            "description": "HH:MM, 00:00 to 24:00; exclusive; at or before start: the range "
            "runs past midnight",
            "examples": ["17:30"],
        },
    },
    "additionalProperties": False,
}
_SCHEDULE_FIELDS: dict[str, Any] = {
    "name": {"type": "string", "maxLength": 200},
    "timezone": {
        "type": "string",
        "description": "an IANA time zone such as 'Europe/Berlin'",
        "examples": ["Europe/Berlin"],
    },
    "weekly": {
        "type": "array",
        "items": WEEKLY_RANGE,
        "minItems": 1,
        "maxItems": 50,
        "description": "a list of 1 to 50 ranges",
    },
}
SCHEDULE_CREATE = {
    "x-medic-name": "schedule",
    "type": "object",
    "required": ["slug", "timezone", "weekly"],
    "properties": {"slug": SLUG, **_SCHEDULE_FIELDS},
    "additionalProperties": False,
}
SCHEDULE_UPDATE = {
    "x-medic-name": "schedule update (the slug cannot change)",
    "type": "object",
    "properties": _SCHEDULE_FIELDS,
    "additionalProperties": False,
}
ESCALATION_LEVEL = {
    "type": "object",
    "required": ["after", "targets"],
    "properties": {
        "after": {
            "type": "integer",
            "minimum": 60,
            "maximum": 604800,
            "description": "seconds after the alert was first notified, if still unacknowledged",
        },
        "targets": {"type": "array", "items": SLUG, "minItems": 1, "maxItems": 20},
    },
    "additionalProperties": False,
}
_POLICY_FIELDS: dict[str, Any] = {
    "name": {"type": "string", "maxLength": 200},
    "levels": {
        "type": "array",
        "items": ESCALATION_LEVEL,
        "maxItems": 10,
        "description": "in strictly increasing `after`",
    },
    "repeat_every": {
        "type": ["integer", "null"],
        "minimum": 60,
        "maximum": 86400,
        "description": "seconds between reminders to everyone paged so far; null: no reminders",
    },
    "max_reminders": {"type": "integer", "minimum": 0, "maximum": 100, "default": 3},
}
ESCALATION_POLICY_CREATE = {
    "x-medic-name": "escalation policy",
    "type": "object",
    "required": ["slug"],
    "properties": {"slug": SLUG, **_POLICY_FIELDS},
    "additionalProperties": False,
}
ESCALATION_POLICY_UPDATE = {
    "x-medic-name": "escalation policy update (the slug cannot change)",
    "type": "object",
    "properties": _POLICY_FIELDS,
    "additionalProperties": False,
}
_NULLABLE_SLUG = {"oneOf": [SLUG, {"type": "null"}]}
_TARGET_FIELDS: dict[str, Any] = {
    "name": {"type": "string", "maxLength": 200},
    "notifier": {"type": "string", "description": "a loaded notifier (`medic plugins list`)"},
    "config": {
        "type": "object",
        "description": "checked against the notifier's config_schema; secrets (writeOnly "
        "properties) read back as ******** and sending ******** keeps the stored value",
    },
    "team": {**_NULLABLE_SLUG, "description": "owner team (at most one of team and service)"},
    "service": {**_NULLABLE_SLUG, "description": "owner service: replaces its team's targets"},
    "min_priority": {"enum": ["p1", "p2", "p3", "p4", "p5"], "default": "p5"},
    "period": {"enum": ["always", "working_hours", "off_hours"], "default": "always"},
    "schedule": {**_NULLABLE_SLUG, "description": "required by working_hours and off_hours"},
    "enabled": {"type": "boolean", "default": True},
}
TARGET_CREATE = {
    "x-medic-name": "target",
    "type": "object",
    "required": ["slug", "notifier"],
    "properties": {"slug": SLUG, **_TARGET_FIELDS},
    "additionalProperties": False,
}
TARGET_UPDATE = {
    "x-medic-name": "target update (the slug cannot change)",
    "type": "object",
    "properties": _TARGET_FIELDS,
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
        "errors": {
            "type": "array",
            "description": "every error found, when a document is checked whole (a playbook)",
            "items": {
                "type": "object",
                "properties": {"field": {"type": "string"}, "message": {"type": "string"}},
                "required": ["field", "message"],
            },
        },
        "errors_not_shown": {"type": "integer", "description": "errors past the 50 listed"},
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


#: The path parameters of routes addressing a row by its integer id.
ID_PATH: dict[str, dict[str, Any]] = {"id": ROW_ID}
SECRET_SET = {
    "x-medic-name": "secret",
    "type": "object",
    "required": ["value"],
    "properties": {
        "value": {
            "type": "string",
            "writeOnly": True,
            "description": "the secret's value: at least 4 characters, not only '*', at most "
            "MEDIC_SECRET_MAX_BYTES bytes of UTF-8; stored encrypted and never answered",
        }
    },
    "additionalProperties": False,
}
