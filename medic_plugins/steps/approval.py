"""``approval``: wait for a person to approve or reject before the next step."""

from __future__ import annotations

from typing import Any

from medic_plugins.steps._shapes import APPROVERS, TEXT, seconds


class ApprovalStep:
    name = "approval"
    description = (
        "Wait for a person to approve (the run goes on) or reject (the step fails); "
        "unanswered at the timeout, on_timeout decides."
    )
    params_schema: dict[str, Any] = {
        "type": "object",
        "required": ["message"],
        "properties": {
            "message": TEXT,
            "approvers": APPROVERS,
            "timeout": seconds(60, 604_800, "seconds to wait for a decision (default 3600)"),
            "on_timeout": {"enum": ["reject", "approve"], "description": "default reject"},
        },
        "additionalProperties": False,
    }
