"""``script``: run an allow-listed script on agents chosen by id or by labels."""

from __future__ import annotations

from typing import Any


class ScriptStep:
    name = "script"
    description = (
        "Run a script of the agents' allowlists on one or all of the agents chosen by id or "
        "labels; arguments go as an argument vector, never through a shell."
    )
    params_schema: dict[str, Any] = {
        "type": "object",
        "required": ["agents", "script"],
        "properties": {
            "agents": {
                "type": "object",
                "properties": {
                    "ids": {
                        "type": "array",
                        "items": {"type": "string", "minLength": 1, "maxLength": 64},
                        "minItems": 1,
                        "maxItems": 100,
                        "uniqueItems": True,
                    },
                    "labels": {
                        "type": "object",
                        "propertyNames": {"pattern": "^[A-Za-z0-9._/-]{1,63}$"},
                        "additionalProperties": {"type": "string", "maxLength": 253},
                        "minProperties": 1,
                        "maxProperties": 20,
                    },
                },
                "oneOf": [{"required": ["ids"]}, {"required": ["labels"]}],
                "additionalProperties": False,
            },
            "mode": {
                "enum": ["one", "all"],
                "description": "one: any one matching agent; all: every one (default one)",
            },
            "script": {
                "type": "string",
                "pattern": "^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$",
                "description": "the script's name in the agents' allowlist",
            },
            "args": {
                "type": "array",
                "items": {"type": "string", "maxLength": 4000},
                "maxItems": 64,
            },
            "env": {
                "type": "object",
                "propertyNames": {"pattern": "^[A-Za-z_][A-Za-z0-9_]{0,127}$"},
                "additionalProperties": {"type": "string", "maxLength": 4000},
                "maxProperties": 64,
            },
        },
        "additionalProperties": False,
    }
