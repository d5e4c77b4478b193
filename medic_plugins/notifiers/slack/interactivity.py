"""``SlackInteractivity``: the Acknowledge and Resolve buttons of Slack messages.

Clicking a button makes Slack POST a signed ``block_actions`` payload to
``/integrations/slack/actions``. ``SlackInteractivity`` verifies the signature (HMAC-SHA256 with
the app's signing secret over ``v0:<timestamp>:<body>``, timestamps at most five minutes off by
Medic's clock) and acknowledges or resolves the alert as ``slack:<user id>``. The edited message
then arrives through the ordinary notification path, like any other transition.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import re
from typing import Any
from urllib.parse import parse_qs

from aiohttp import web

from medic_core.audit import Actor
from medic_core.errors import Conflict, NotFound
from medic_core.plugins.context import PluginContext
from medic_core.requests import REQUEST_ID
from medic_plugins.notifiers.slack.blocks import ACK_ACTION, RESOLVE_ACTION

log = logging.getLogger("medic.notify.slack")

SIGNATURE_TOLERANCE = 300.0  # seconds; Slack's own recommendation


def signature_problem(
    secret: str, timestamp: str | None, signature: str | None, body: bytes, *, now: float
) -> str | None:
    """Why a request is not a genuine, fresh Slack request, or None when it is.

    Slack signs ``v0:<X-Slack-Request-Timestamp>:<raw body>`` with HMAC-SHA256 keyed by the app's
    signing secret and sends ``v0=<hex digest>`` as ``X-Slack-Signature``.
    """
    if not timestamp or not signature:
        return "missing X-Slack-Request-Timestamp or X-Slack-Signature"
    if not timestamp.isascii() or not timestamp.isdigit() or len(timestamp) > 12:
        return "bad X-Slack-Request-Timestamp"
    if abs(now - int(timestamp)) > SIGNATURE_TOLERANCE:
        return "stale request: X-Slack-Request-Timestamp is more than 5 minutes off"
    base = b"v0:" + timestamp.encode() + b":" + body
    expected = "v0=" + hmac.new(secret.encode(), base, hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected.encode(), signature.encode("utf-8", "replace")):
        return "bad signature"
    return None


def _text(status: int, message: str) -> web.Response:
    return web.Response(status=status, text=message + "\n", content_type="text/plain")


class SlackInteractivity:
    """``POST /integrations/slack/actions``: the Acknowledge and Resolve buttons."""

    name = "slack"

    def __init__(self, medic: PluginContext) -> None:
        self._medic = medic

    def routes(self) -> list[tuple[str, str, Any]]:
        return [("POST", "actions", self.actions)]

    async def actions(self, request: web.Request) -> web.Response:
        secret = self._medic.settings.slack_signing_secret
        if not secret:
            return _text(
                503, "Slack interactivity is off: MEDIC_SLACK_SIGNING_SECRET is unset in Medic"
            )
        body = await request.read()
        problem = signature_problem(
            secret,
            request.headers.get("X-Slack-Request-Timestamp"),
            request.headers.get("X-Slack-Signature"),
            body,
            now=self._medic.clock.now().timestamp(),
        )
        if problem is not None:
            log.warning("refused a Slack request: %s", problem)
            return _text(401, problem)
        payload = _payload(body)
        if payload is None:
            return _text(400, "expected a form with a JSON 'payload' field")
        if payload.get("type") != "block_actions":
            return web.Response(status=200)
        user = payload.get("user") or {}
        user_id = str(user.get("id") or "") if isinstance(user, dict) else ""
        if not re.fullmatch(r"[A-Z0-9]{1,32}", user_id):
            return _text(400, "block_actions payload without a user id")
        actor = Actor(f"slack:{user_id}", request.get(REQUEST_ID))
        display = str(user.get("username") or user.get("name") or user_id)[:100]
        for action in payload.get("actions") or []:
            if isinstance(action, dict):
                await self._act(action, actor, display)
        return web.Response(status=200)

    async def _act(self, action: dict[str, Any], actor: Actor, display: str) -> None:
        action_id = action.get("action_id")
        if action_id not in (ACK_ACTION, RESOLVE_ACTION):
            return  # link buttons (View in Medic, Runbook) report their clicks too
        try:
            alert_id = int(str(action.get("value")))
        except ValueError:
            log.warning("Slack %s action with a bad alert id %r", action_id, action.get("value"))
            return
        try:
            if action_id == ACK_ACTION:
                await self._medic.alerts.acknowledge(alert_id, actor=actor)
            else:
                note = f"resolved in Slack by {display}"
                await self._medic.alerts.resolve(alert_id, actor=actor, note=note)
        except (Conflict, NotFound) as exc:
            # Someone was faster (or the alert is gone): the message catches up by itself.
            log.info("Slack %s on alert %s ignored: %s", action_id, alert_id, exc)


def _payload(body: bytes) -> dict[str, Any] | None:
    try:
        fields = parse_qs(body.decode(), strict_parsing=False)
        payload = json.loads(fields["payload"][0])
    except (UnicodeDecodeError, KeyError, IndexError, ValueError):
        return None
    return payload if isinstance(payload, dict) else None
