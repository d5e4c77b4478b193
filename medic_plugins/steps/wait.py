"""``wait``: pause the run for a duration, or until an instant.

Recovery: the first call computes the deadline and keeps it in the step's persisted state, so a
wait interrupted by a restart ends at the deadline it had, never later (it is not restarted).
A wait is idempotent: it has no side effect.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from medic_core.plugins.interfaces import Done, Failed, Later, Outcome, StepRun
from medic_plugins.steps._shapes import seconds


def _instant(text: str) -> datetime | None:
    try:
        when = datetime.fromisoformat(text.strip())
    except ValueError:
        return None
    return when if when.tzinfo is not None else None


class WaitStep:
    name = "wait"
    description = (
        "Pause for a number of seconds, or until an instant (ISO 8601, may be a template)."
    )
    idempotent_by_default = True
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

    async def advance(self, params: dict[str, Any], run: StepRun) -> Outcome:
        now: datetime = run.clock.now()
        kept = run.state.get("until")
        if isinstance(kept, str):
            deadline = _instant(kept)
            if deadline is None:
                return Failed(f"the kept deadline {kept!r} is not an instant")
        elif "seconds" in params:
            deadline = now + timedelta(seconds=int(params["seconds"]))
        else:
            deadline = _instant(str(params.get("until", "")))
            if deadline is None:
                return Failed(
                    f"until {str(params.get('until'))[:200]!r} is not an ISO 8601 instant with "
                    "an offset (e.g. 2026-03-01T02:00:00Z)"
                )
        if now >= deadline:
            return Done({"waited_until": deadline.isoformat()})
        return Later(deadline, {"until": deadline.isoformat()})
