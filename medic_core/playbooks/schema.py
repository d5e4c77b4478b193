"""The JSON Schema of a playbook definition, composed from the envelope and the step types.

The envelope (everything but a step's ``params``) is Medic's; each step type's ``params_schema``
is its plugin's. ``compose`` joins them: a step's ``type`` must be one of the loaded types, and
for each type an ``if {type: T} then {params: T's schema}`` clause, so a third-party step type is
validated (and shown in the OpenAPI document and the UI builder) with no change to Medic.

Every object says ``additionalProperties: false`` (a misspelt key is an error, not a silently
ignored setting); every duration is an integer number of seconds with explicit bounds.
"""

from __future__ import annotations

import copy
from typing import Any

from medic_core.playbooks.steptypes import StepTypes
from medic_core.schema_errors import NAME
from medic_core.validation import SLUG_RE

#: Longest template or ``when`` expression, and longest free text.
MAX_TEMPLATE = 4000
MAX_DESCRIPTION = 5000
#: A step's name: referred to by ``goto <name>`` and in templates (``steps['<name>']``).
STEP_NAME_PATTERN = r"^[a-z][a-z0-9_-]{0,63}$"
ON_FAILURE_PATTERN = r"^(stop|continue|goto [a-z][a-z0-9_-]{0,63})$"
#: A variable's name: ``vars.<name>`` in templates, so an identifier.
VARIABLE_PATTERN = r"^[a-z_][a-z0-9_]{0,63}$"
VARIABLE_TYPES = ("string", "integer", "number", "boolean")
ALERT_CAUSES = ("missed", "failed", "overrun", "agent_offline")
PRIORITIES = ("p1", "p2", "p3", "p4", "p5")
DAY = 86_400
WEEK = 7 * DAY

_SLUG: dict[str, Any] = {"type": "string", "pattern": SLUG_RE.pattern}


def _seconds(low: int, high: int, about: str) -> dict[str, Any]:
    return {"type": "integer", "minimum": low, "maximum": high, "description": about}


def _closed(name: str, properties: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {
        NAME: name,
        "type": "object",
        "properties": properties,
        "additionalProperties": False,
        **extra,
    }


APPROVAL: dict[str, Any] = _closed(
    "approval",
    {
        "required": {"type": "boolean", "description": "false (the default): no approval"},
        "approvers": _closed(
            "approvers",
            {
                "scope": {
                    "enum": ["write", "admin"],
                    "description": "the API-key scope a decider needs (default write)",
                },
                "teams": {
                    "type": "array",
                    "items": _SLUG,
                    "maxItems": 20,
                    "uniqueItems": True,
                    "description": "teams whose members may decide (empty: anyone with the scope)",
                },
            },
        ),
        "timeout": _seconds(60, WEEK, "seconds to wait for a decision (60 to 604800)"),
        "on_timeout": {
            "enum": ["reject", "approve"],
            "description": "what an unanswered request becomes (default reject)",
        },
        "message": {"type": "string", "maxLength": MAX_TEMPLATE},
    },
)

SELECTOR: dict[str, Any] = _closed(
    "alert selector",
    {
        "services": {
            "type": "array",
            "items": {
                "type": "string",
                "pattern": r"^[a-z0-9*?\[\]][a-z0-9._*?\[\]-]{0,99}$",
                "description": "a service slug or a glob of slugs (db-*, web-?)",
            },
            "minItems": 1,
            "maxItems": 50,
        },
        "tags": {"type": "array", "items": _SLUG, "maxItems": 50, "uniqueItems": True},
        "team": _SLUG,
        "causes": {
            "type": "array",
            "items": {"enum": list(ALERT_CAUSES)},
            "minItems": 1,
            "uniqueItems": True,
        },
        "priorities": {
            "type": "array",
            "items": {"enum": list(PRIORITIES)},
            "minItems": 1,
            "uniqueItems": True,
        },
        "open_for_minutes": {
            "type": "integer",
            "minimum": 0,
            "maximum": 10_080,
            "description": "start only once the alert has been open this long (0 to 10080)",
        },
    },
)

TRIGGER: dict[str, Any] = {
    "oneOf": [
        _closed(
            "alert trigger",
            {"kind": {"const": "alert"}, "selector": SELECTOR},
            required=["kind", "selector"],
        ),
        _closed("manual trigger", {"kind": {"const": "manual"}}, required=["kind"]),
        _closed("webhook trigger", {"kind": {"const": "webhook"}}, required=["kind"]),
    ]
}

VARIABLE: dict[str, Any] = _closed(
    "variable",
    {
        "type": {"enum": list(VARIABLE_TYPES)},
        "default": {
            "type": ["string", "integer", "number", "boolean"],
            "description": "of the variable's type",
        },
        "description": {"type": "string", "maxLength": MAX_DESCRIPTION},
        "required": {"type": "boolean", "description": "a run must give it (no default then)"},
    },
    required=["type"],
)

RETRY: dict[str, Any] = _closed(
    "retry",
    {
        "attempts": {
            "type": "integer",
            "minimum": 1,
            "maximum": 20,
            "description": "tries in all, the first included (default 1: no retry)",
        },
        "backoff": _closed(
            "backoff",
            {
                "initial": _seconds(1, 3600, "seconds before the second try"),
                "max": _seconds(1, DAY, "longest wait between two tries"),
                "multiplier": {"type": "number", "minimum": 1, "maximum": 10},
            },
        ),
    },
)


def _step(type_names: list[str]) -> dict[str, Any]:
    return _closed(
        "step",
        {
            "name": {
                "type": "string",
                "pattern": STEP_NAME_PATTERN,
                "description": "unique in the playbook: lower-case letters, digits, '_', '-'",
            },
            "type": {
                "enum": type_names,
                "description": "a loaded step type (GET /api/v1/step-types)",
            },
            "params": {"type": "object", "description": "checked by the step type's schema"},
            "timeout": _seconds(1, DAY, "seconds the step may take (1 to 86400)"),
            "retry": RETRY,
            "on_failure": {
                "type": "string",
                "pattern": ON_FAILURE_PATTERN,
                "description": "stop (the default), continue, or goto <step name>",
            },
            "when": {
                "type": "string",
                "minLength": 1,
                "maxLength": MAX_TEMPLATE,
                "description": "a template expression: the step runs only when it is true",
            },
            "idempotent": {
                "type": "boolean",
                "description": "safe to run twice: retried after a restart left it unknown",
            },
            "approval": APPROVAL,
        },
        required=["name", "type", "params"],
    )


#: A minimal valid playbook (the OpenAPI document's example).
EXAMPLE: dict[str, Any] = {
    "slug": "example",
    "steps": [{"name": "pause", "type": "wait", "params": {"seconds": 60}}],
}


def compose(step_types: StepTypes, *, max_steps: int) -> dict[str, Any]:
    """The playbook schema for these step types (a fresh dict: callers may keep it)."""
    step = _step(step_types.names())
    clauses = []
    for step_type in step_types:
        params = copy.deepcopy(dict(step_type.params_schema))
        params.pop("$schema", None)  # the composed document declares one dialect
        params.setdefault(NAME, f"params of a {step_type.name} step")
        clauses.append(
            {
                "if": {"properties": {"type": {"const": step_type.name}}, "required": ["type"]},
                "then": {"properties": {"params": params}},
            }
        )
    if clauses:
        step["allOf"] = clauses
    schema = _closed(
        "playbook",
        {
            "slug": {**_SLUG, "description": "the playbook's name in URLs and commands"},
            "name": {"type": "string", "minLength": 1, "maxLength": 200},
            "description": {"type": "string", "maxLength": MAX_DESCRIPTION},
            "triggers": {"type": "array", "items": TRIGGER, "maxItems": 20},
            "variables": {
                "type": "object",
                "propertyNames": {
                    "pattern": VARIABLE_PATTERN,
                    "description": "variable names are lower-case identifiers (vars.<name>)",
                },
                "additionalProperties": VARIABLE,
                "maxProperties": 50,
            },
            "approval": APPROVAL,
            "cancel_on_resolve": {
                "type": "boolean",
                "description": "cancel a run started by an alert when that alert resolves",
            },
            "steps": {"type": "array", "items": step, "minItems": 1, "maxItems": max_steps},
        },
        required=["slug", "steps"],
        description="A playbook definition (docs/playbooks.md). Send it as JSON, or as YAML "
        "with Content-Type: application/yaml.",
        examples=[EXAMPLE],
    )
    return copy.deepcopy(schema)
