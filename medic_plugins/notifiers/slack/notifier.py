"""``SlackNotifier``: one alert, one Slack message, edited as the alert changes.

The opening is posted with ``chat.postMessage``; the message's ``channel`` and ``ts`` come back as
the notifier's state, so the acknowledgement and the resolution *edit that same message*
(``chat.update``) instead of adding noise to the channel. A reminder or an escalation also edits
it, and then posts a reply in its thread, broadcast to the channel, because an edit alone notifies
nobody. ``check_target`` tests a target without posting anything.
"""

from __future__ import annotations

import re
from typing import Any

from medic_core.plugins.interfaces import DeliveryError, HealthResult, Notification
from medic_plugins.notifiers.slack.blocks import render_message, thread_reply
from medic_plugins.notifiers.slack.client import SlackError, SlackWebApi

CHANNEL_ID_RE = re.compile(r"^[CGD][A-Z0-9]{2,}$")
_MENTION = r"<(?:!here|!channel|!everyone|!subteam\^[A-Z0-9]+(?:\|[^<>|]{1,100})?|@[UW][A-Z0-9]+)>"

CONFIG_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "Slack target",
    "type": "object",
    "properties": {
        "channel": {
            "description": "Channel id (C0123ABCD, found in the channel's details) or #name. "
            "Ids keep working when a channel is renamed.",
            "type": "string",
            "pattern": r"^(?:[CGD][A-Z0-9]{2,}|#[a-z0-9][a-z0-9._-]{0,79})$",
        },
        "mention": {
            "description": "Who to notify when an alert opens, is escalated or reminded: "
            "<!here>, <!channel>, <!subteam^S0123ABCD> (a user group) or <@U0123ABCD>, "
            "several separated by spaces.",
            "type": "string",
            "pattern": rf"^{_MENTION}(?: {_MENTION})*$",
        },
    },
    "required": ["channel"],
    "additionalProperties": False,
}


class SlackNotifier:
    """Posts one message per alert to a target's channel, then edits it (see the module)."""

    name = "slack"
    config_schema: dict[str, Any] = CONFIG_SCHEMA

    def __init__(self, api: SlackWebApi) -> None:
        self._api = api

    async def send(self, notification: Notification) -> dict[str, Any]:
        ts = notification.state.get("ts")
        channel = notification.state.get("channel")
        message = render_message(notification)
        if ts and channel:
            body = await self._api.call(
                "chat.update", json_body={"channel": channel, "ts": ts, **message}
            )
            channel, ts = str(body.get("channel") or channel), str(body.get("ts") or ts)
            if notification.kind in ("reminder", "escalated") and (
                notification.alert.get("state") != "resolved"
            ):
                await self._api.call(
                    "chat.postMessage", json_body=thread_reply(notification, channel, ts)
                )
            return {"channel": channel, "ts": ts}
        target = notification.config.get("channel")
        if not isinstance(target, str) or not target:
            raise SlackError(
                f"Slack target {notification.target or '?'} has no channel",
                error="channel_not_configured",
                retryable=False,
            )
        body = await self._api.call(
            "chat.postMessage",
            json_body={"channel": target, **message, "unfurl_links": False, "unfurl_media": False},
        )
        return {"channel": str(body.get("channel") or target), "ts": str(body.get("ts") or "")}

    async def check_target(self, config: dict[str, Any]) -> HealthResult:
        """Whether the token works and, for a channel id, whether the channel can be posted to."""
        try:
            who = await self._api.call("auth.test")
        except DeliveryError as exc:
            return HealthResult("down", str(exc))
        identity = f"{who.get('user') or 'the bot'} in {who.get('team') or 'the workspace'}"
        channel = str(config.get("channel") or "")
        if not CHANNEL_ID_RE.match(channel):
            return HealthResult("ok", f"token works ({identity}); channel {channel} not looked up")
        try:
            info = await self._api.call("conversations.info", form={"channel": channel})
        except DeliveryError as exc:
            return HealthResult("down", str(exc))
        found = info.get("channel") or {}
        label = f"#{found.get('name') or channel}"
        if found.get("is_archived"):
            return HealthResult("down", f"{label} is archived")
        if not found.get("is_member"):
            return HealthResult(
                "ok",
                f"{identity} can see {label} but is not a member: posting needs the "
                "chat:write.public scope (public channels) or an invitation",
            )
        return HealthResult("ok", f"{identity} can post to {label}")

    async def close(self) -> None:
        await self._api.close()
