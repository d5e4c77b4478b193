"""``notify``: send a message through a notification target.

The message (a template, rendered with the run's context) goes to the target named by its slug,
now, through that target's notifier (``run.medic.messages``: the delivery service's send path,
with its timeout and metrics; notification kind ``playbook``). It is not queued in the alert
outbox: that outbox is per alert (ordering, escalation, dedup keys) and a run may have no
alert; the step run is the durable record of the message, and the step's ``retry`` retries it.

A receiver's error the notifier calls retryable fails the step (its ``retry`` decides); a
permanent one (bad configuration, rejected request) fails it too, with the receiver's reason.
An unknown or disabled target fails at once.

Idempotent by default: after a crash during the send the message is sent again rather than
stopping the run for a human -- a duplicate message is the lesser harm, and the dedup key is
stable for the step (a PagerDuty event is deduplicated). ``idempotent: false`` on the step
stops the run instead.
"""

from __future__ import annotations

from typing import Any

from medic_core.errors import Conflict, NotFound
from medic_core.plugins.interfaces import Done, Failed, Outcome, StepRun
from medic_plugins.steps._shapes import SLUG, TEXT

#: Most characters of a rendered message sent (a template may render longer than its text).
MESSAGE_CHARS = 4000


class NotifyStep:
    name = "notify"
    description = "Send a message (a template) through a notification target."
    idempotent_by_default = True
    params_schema: dict[str, Any] = {
        "type": "object",
        "required": ["target", "message"],
        "properties": {
            "target": {**SLUG, "description": "a notification target's slug"},
            "message": TEXT,
        },
        "additionalProperties": False,
    }

    async def advance(self, params: dict[str, Any], run: StepRun) -> Outcome:
        target = str(params["target"])
        message = str(params["message"])[:MESSAGE_CHARS]
        try:
            sent = await run.medic.messages.send(
                target,
                message,
                playbook=run.playbook,
                execution_id=run.execution_id,
                step=run.step,
            )
        except (NotFound, Conflict) as exc:
            return Failed(str(exc))
        output = {key: sent.get(key) for key in ("target", "notifier", "ok", "response_code")}
        if sent.get("ok"):
            return Done(output)
        kind = "retryable" if sent.get("retryable") else "permanent"
        return Failed(
            f"target {target} did not take the message ({kind}): {sent.get('error')}", output
        )
