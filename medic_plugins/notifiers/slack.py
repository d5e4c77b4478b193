"""The ``slack`` notifier, its health check, and the Slack interactivity integration.

One alert is one Slack message. Its opening is posted with ``chat.postMessage``; the message's
``channel`` and ``ts`` come back as the notifier's state, so the acknowledgement and the resolution
*edit that same message* (``chat.update``) instead of adding noise to the channel. A reminder or an
escalation also edits it, and then posts a reply in its thread, broadcast to the channel, because
an edit alone notifies nobody.

The message is a short headline (``text``: the notification text and the fallback, carrying the
target's ``mention``) and one attachment coloured by priority (green once resolved) holding Block
Kit blocks: a header, the summary with service, cause, priority, state and opening time, and
buttons — links to the alert and the runbook, and **Acknowledge** / **Resolve** while they still
apply.

Clicking a button makes Slack POST a signed ``block_actions`` payload to
``/integrations/slack/actions``. ``SlackInteractivity`` verifies the signature (HMAC-SHA256 with
the app's signing secret over ``v0:<timestamp>:<body>``, timestamps at most five minutes off by
Medic's clock) and acknowledges or resolves the alert as ``slack:<user id>``. The edited message
then arrives through the ordinary notification path, like any other transition.

Slack reports most errors as HTTP 200 with ``{"ok": false, "error": "..."}``. ``SlackWebApi``
turns every failure into ``DeliveryError``: not retryable when only a configuration change can
help (``FATAL_ERRORS``: unknown channel, bad token, rejected blocks...), retryable otherwise
(rate limits with Slack's ``Retry-After``, 5xx, timeouts, unreachable network).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import re
from datetime import datetime
from typing import Any
from urllib.parse import parse_qs, urlparse

import aiohttp
from aiohttp import web

from medic_core.audit import Actor
from medic_core.errors import Conflict, NotFound
from medic_core.plugins import hookimpl
from medic_core.plugins.interfaces import (
    DeliveryError,
    HealthCheck,
    HealthResult,
    Integration,
    Notification,
    Notifier,
)
from medic_core.server.http.context import REQUEST_ID

log = logging.getLogger("medic.notify.slack")

ACK_ACTION = "medic_ack"
RESOLVE_ACTION = "medic_resolve"

#: Slack errors that retrying cannot fix: the token, the channel or the message must change.
FATAL_ERRORS = frozenset(
    {
        "access_denied",
        "account_inactive",
        "cant_update_message",
        "channel_not_found",
        "deprecated_endpoint",
        "edit_window_closed",
        "ekm_access_denied",
        "enterprise_is_restricted",
        "invalid_arg_name",
        "invalid_arguments",
        "invalid_array_arg",
        "invalid_attachments",
        "invalid_auth",
        "invalid_blocks",
        "invalid_blocks_format",
        "invalid_charset",
        "invalid_form_data",
        "invalid_json",
        "invalid_post_type",
        "is_archived",
        "json_not_object",
        "message_not_found",
        "method_deprecated",
        "missing_post_type",
        "missing_scope",
        "msg_too_long",
        "no_permission",
        "no_text",
        "not_allowed_token_type",
        "not_authed",
        "not_in_channel",
        "org_login_required",
        "restricted_action",
        "team_access_not_granted",
        "token_expired",
        "token_revoked",
        "too_many_attachments",
        "two_factor_setup_required",
    }
)

#: Attachment colour by priority: p1 red ... p5 grey; resolved alerts turn green.
PRIORITY_COLOURS = {
    "p1": "#d92d20",
    "p2": "#f79009",
    "p3": "#fdb022",
    "p4": "#2e90fa",
    "p5": "#98a2b3",
}
RESOLVED_COLOUR = "#12b76a"
TEST_COLOUR = "#7a5af8"

CAUSE_LABELS = {
    "missed": "missed its deadline",
    "failed": "reported a failure",
    "overrun": "is running too long",
    "agent_offline": "lost its agent",
}

CHANNEL_ID_RE = re.compile(r"^[CGD][A-Z0-9]{2,}$")
_MENTION = r"<(?:!here|!channel|!everyone|!subteam\^[A-Z0-9]+(?:\|[^<>|]{1,100})?|@[UW][A-Z0-9]+)>"

SIGNATURE_TOLERANCE = 300.0  # seconds; Slack's own recommendation


class SlackError(DeliveryError):
    """A Slack Web API call failed; ``error`` is Slack's error code (``channel_not_found``...)."""

    def __init__(self, message: str, *, error: str, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.error = error


class SlackWebApi:
    """The few Web API methods Medic calls, with Slack's error conventions mapped once.

    One ``aiohttp.ClientSession`` is created on first use (inside the running loop) and reused;
    ``close()`` closes it, and a later call would open a new one.
    """

    def __init__(self, base_url: str, token: str, *, timeout: float) -> None:
        self._base_url = base_url.rstrip("/")
        self._token = token
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._session: aiohttp.ClientSession | None = None

    async def call(
        self,
        method: str,
        *,
        json_body: dict[str, Any] | None = None,
        form: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        """POST ``method``: a JSON body for write methods, a form for read methods.

        Slack's read methods (``conversations.info``) do not accept JSON bodies.
        """
        if not self._token:
            raise SlackError(
                "Slack is not configured: set MEDIC_SLACK_BOT_TOKEN to the app's bot token "
                "(xoxb-...)",
                error="not_configured",
                retryable=False,
            )
        headers = {"Authorization": f"Bearer {self._token}"}
        data: Any
        if json_body is not None:
            headers["Content-Type"] = "application/json; charset=utf-8"
            data = json.dumps(json_body, ensure_ascii=False).encode()
        else:
            data = form or {}
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(timeout=self._timeout)
        url = f"{self._base_url}/{method}"
        try:
            async with self._session.post(url, data=data, headers=headers) as response:
                return await self._answer(method, response)
        except DeliveryError:
            raise
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            detail = str(exc) or "timed out"
            raise SlackError(
                f"Slack {method}: {type(exc).__name__}: {detail}"[:300], error="unreachable"
            ) from exc

    async def _answer(self, method: str, response: aiohttp.ClientResponse) -> dict[str, Any]:
        status = response.status
        retry_after = _seconds(response.headers.get("Retry-After"))
        if status == 429:
            raise SlackError(
                f"Slack {method}: rate limited (HTTP 429), retry after {retry_after or '?'} s",
                error="ratelimited",
                status_code=429,
                retry_after=retry_after,
            )
        if status >= 500 or status == 408:
            raise SlackError(
                f"Slack {method}: HTTP {status}",
                error=f"http_{status}",
                status_code=status,
                retry_after=retry_after,
            )
        if status != 200:
            # 404 (a wrong MEDIC_SLACK_API_URL), 400, 403...: asking again gets the same answer.
            raise SlackError(
                f"Slack {method}: HTTP {status}; check MEDIC_SLACK_API_URL",
                error=f"http_{status}",
                status_code=status,
                retryable=False,
            )
        try:
            body = await response.json(content_type=None)
        except ValueError as exc:
            raise SlackError(
                f"Slack {method}: the answer is not JSON", error="bad_response", status_code=200
            ) from exc
        if not isinstance(body, dict):
            raise SlackError(
                f"Slack {method}: the answer is not a JSON object",
                error="bad_response",
                status_code=200,
            )
        if body.get("ok") is not True:
            error = str(body.get("error") or "unknown_error")[:100]
            raise SlackError(
                f"Slack {method} failed: {error}{_hint(error)}",
                error=error,
                status_code=200,
                retryable=error not in FATAL_ERRORS,
                retry_after=retry_after,
            )
        return body

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


def _seconds(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        return None
    return seconds if seconds >= 0 else None


def _hint(error: str) -> str:
    hints = {
        "not_in_channel": " (invite the Medic app to the channel, or grant it chat:write.public)",
        "channel_not_found": " (check the target's channel; private channels need an invitation)",
        "invalid_auth": " (check MEDIC_SLACK_BOT_TOKEN)",
        "not_authed": " (check MEDIC_SLACK_BOT_TOKEN)",
        "token_revoked": " (reinstall the Slack app and update MEDIC_SLACK_BOT_TOKEN)",
        "missing_scope": " (add the chat:write scope to the Slack app and reinstall it)",
    }
    return hints.get(error, "")


# -- rendering -------------------------------------------------------------------------------------


def _escape(text: str) -> str:
    """Slack mrkdwn control characters; everything else is shown as written."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _safe_url(value: Any) -> str | None:
    """An http(s) URL Slack will accept in a button or link, or None (a rejected URL would make
    Slack refuse the whole message)."""
    if not isinstance(value, str) or not value or len(value) > 3000:
        return None
    if any(c in value for c in " <>|\n\r\t"):
        return None
    parsed = urlparse(value)
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        return None
    return value


def _who(actor: Any) -> str:
    """An actor name as Slack mrkdwn: Slack users become mentions (``slack:U1`` -> ``<@U1>``)."""
    name = str(actor or "someone")
    if name.startswith("slack:") and re.fullmatch(r"[UW][A-Z0-9]+", name[6:]):
        return f"<@{name[6:]}>"
    return _escape(name)


def _when(iso: Any) -> str:
    """An instant as Slack's localised date (each reader sees their own time zone)."""
    if not isinstance(iso, str):
        return "—"
    try:
        instant = datetime.fromisoformat(iso.replace("Z", "+00:00"))
    except ValueError:
        return _escape(iso)
    return f"<!date^{int(instant.timestamp())}^{{date_short_pretty}} {{time}}|{_escape(iso)}>"


def _button(text: str, action_id: str, **extra: str) -> dict[str, Any]:
    return {
        "type": "button",
        "text": {"type": "plain_text", "text": text, "emoji": True},
        "action_id": action_id,
        **extra,
    }


def render_message(notification: Notification) -> dict[str, Any]:
    """The ``text`` and ``attachments`` of a ``chat.postMessage``/``chat.update`` body."""
    if notification.kind == "test":
        return _render_test(notification)
    alert = notification.alert
    service = notification.service or alert.get("service") or {}
    state = str(alert.get("state") or "open")
    priority = str(alert.get("priority") or "p3")
    name = str(service.get("name") or service.get("slug") or "a service")
    cause = str(alert.get("cause") or "")
    what = CAUSE_LABELS.get(cause, cause or "alerted")
    summary = str(alert.get("summary") or f"{name} {what}")
    alert_url = _safe_url(notification.links.get("alert"))
    runbook_url = _safe_url(notification.links.get("runbook") or service.get("runbook_url"))

    headline = {
        "open": f"{priority.upper()} alert",
        "acknowledged": f"Acknowledged {priority.upper()} alert",
        "resolved": "Resolved",
    }.get(state, f"{priority.upper()} alert")
    if notification.kind == "escalated" and state != "resolved":
        headline = f"Escalated {priority.upper()} alert"
    text = f"{headline}: *{_escape(name)}* {_escape(what)} — {_escape(_cut(summary, 300))}"
    mention = notification.config.get("mention")
    if mention and notification.kind in ("opened", "escalated", "reminder") and state == "open":
        text = f"{mention} {text}"

    service_field = f"*Service*\n{_escape(name)}"
    if alert_url:
        service_field = f"*Service*\n<{alert_url}|{_escape(name)}>"
    state_field = {
        "open": "*State*\nOpen",
        "acknowledged": f"*State*\nAcknowledged by {_who(alert.get('acknowledged_by'))}",
        "resolved": f"*State*\nResolved by {_who(alert.get('resolved_by'))}",
    }.get(state, f"*State*\n{_escape(state)}")
    blocks: list[dict[str, Any]] = [
        {
            "type": "header",
            "text": {
                "type": "plain_text",
                "text": _cut(f"{'✅ ' if state == 'resolved' else ''}{name} {what}", 150),
                "emoji": True,
            },
        },
        {
            "type": "section",
            "text": {"type": "mrkdwn", "text": _escape(_cut(summary, 2900))},
            "fields": [
                {"type": "mrkdwn", "text": service_field},
                {"type": "mrkdwn", "text": f"*Cause*\n{_escape(cause or '—')}"},
                {"type": "mrkdwn", "text": f"*Priority*\n{_escape(priority.upper())}"},
                {"type": "mrkdwn", "text": state_field},
                {"type": "mrkdwn", "text": f"*Opened*\n{_when(alert.get('opened_at'))}"},
            ],
        },
    ]
    context = _context_line(notification, state)
    if context:
        blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": context}]})
    buttons: list[dict[str, Any]] = []
    alert_id = alert.get("id")
    if alert_id is not None and state == "open":
        buttons.append(_button("Acknowledge", ACK_ACTION, value=str(alert_id), style="primary"))
    if alert_id is not None and state in ("open", "acknowledged"):
        buttons.append(_button("Resolve", RESOLVE_ACTION, value=str(alert_id)))
    if alert_url:
        buttons.append(_button("View in Medic", "medic_view_alert", url=alert_url))
    if runbook_url:
        buttons.append(_button("Runbook", "medic_runbook", url=runbook_url))
    if buttons:
        blocks.append({"type": "actions", "elements": buttons})
    colour = RESOLVED_COLOUR if state == "resolved" else PRIORITY_COLOURS.get(priority, "#98a2b3")
    fallback = f"{headline}: {name} {what} — {_cut(summary, 300)}"
    return {
        "text": text,
        "attachments": [{"color": colour, "fallback": fallback, "blocks": blocks}],
    }


def _context_line(notification: Notification, state: str) -> str:
    alert = notification.alert
    parts: list[str] = []
    if state == "resolved":
        resolution = alert.get("resolution")
        parts.append(f"Resolved {_when(alert.get('resolved_at'))}")
        if resolution:
            parts.append(_escape(_cut(str(resolution), 500)))
    elif state == "acknowledged":
        parts.append(f"Acknowledged {_when(alert.get('acknowledged_at'))}")
    if notification.kind == "reminder" and state != "resolved":
        parts.append("Reminder: this alert is still unresolved")
    if notification.kind == "escalated" and state != "resolved":
        parts.append("Escalated: nobody acknowledged it in time")
    return " · ".join(parts)


def _render_test(notification: Notification) -> dict[str, Any]:
    target = notification.target or "this target"
    text = f"Test notification from Medic for {_escape(target)}: no alert is open."
    blocks: list[dict[str, Any]] = [
        {
            "type": "header",
            "text": {"type": "plain_text", "text": "🧪 Test notification from Medic"},
        },
        {
            "type": "section",
            "text": {
                "type": "mrkdwn",
                "text": f"This is a *test* of the Slack target *{_escape(_cut(target, 200))}*. "
                "Alerts sent to it will look like this. Nothing is wrong and no alert is open.",
            },
        },
    ]
    return {
        "text": text,
        "attachments": [
            {"color": TEST_COLOUR, "fallback": "Test notification from Medic", "blocks": blocks}
        ],
    }


def _thread_reply(notification: Notification, channel: str, ts: str) -> dict[str, Any]:
    """A threaded reply (shown in the channel too) for a reminder or an escalation: editing the
    original message notifies nobody."""
    alert = notification.alert
    service = notification.service or alert.get("service") or {}
    name = str(service.get("name") or service.get("slug") or "a service")
    if notification.kind == "escalated":
        text = f"Escalated: *{_escape(name)}* — nobody acknowledged it in time."
    elif alert.get("state") == "acknowledged":
        text = f"Reminder: *{_escape(name)}* is acknowledged but still unresolved."
    else:
        text = f"Reminder: *{_escape(name)}* is still open and unacknowledged."
    mention = notification.config.get("mention")
    if mention:
        text = f"{mention} {text}"
    return {
        "channel": channel,
        "thread_ts": ts,
        "reply_broadcast": True,
        "text": text,
        "unfurl_links": False,
        "unfurl_media": False,
    }


# -- the notifier ----------------------------------------------------------------------------------


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
                    "chat.postMessage", json_body=_thread_reply(notification, channel, ts)
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


class SlackCheck:
    """Readiness: the bot token is accepted (``auth.test``). Not critical: Medic keeps working."""

    name = "slack"
    critical = False

    def __init__(self, base_url: str, token: str, timeout: float) -> None:
        self._base_url, self._token, self._timeout = base_url, token, timeout

    async def check(self) -> HealthResult:
        # A session of its own, closed at once: health checks have no shutdown hook.
        api = SlackWebApi(self._base_url, self._token, timeout=self._timeout)
        try:
            who = await api.call("auth.test")
        except DeliveryError as exc:
            return HealthResult("down", str(exc)[:300])
        finally:
            await api.close()
        return HealthResult("ok", f"team {who.get('team', '?')}, bot {who.get('user', '?')}")


# -- interactivity ---------------------------------------------------------------------------------


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

    def __init__(self, medic: Any) -> None:
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


# -- hooks -----------------------------------------------------------------------------------------


@hookimpl
def medic_notifiers(medic: Any) -> list[Notifier]:
    s = medic.settings
    api = SlackWebApi(s.slack_api_url, s.slack_bot_token, timeout=s.notify_timeout)
    return [SlackNotifier(api)]


@hookimpl
def medic_health_checks(medic: Any) -> list[HealthCheck]:
    s = medic.settings
    if not s.slack_bot_token:
        return []
    # Readiness gives each check two seconds; stay under it to report Slack's own error.
    return [SlackCheck(s.slack_api_url, s.slack_bot_token, min(s.notify_timeout, 1.5))]


@hookimpl
def medic_integrations(medic: Any) -> list[Integration]:
    return [SlackInteractivity(medic)]
