"""What a Slack message about an alert looks like: ``render_message`` and ``thread_reply``.

The message is a short headline (``text``: the notification text and the fallback, carrying the
target's ``mention``) and one attachment coloured by priority (green once resolved) holding Block
Kit blocks: a header, the summary with service, cause, priority, state and opening time, and
buttons — links to the alert and the runbook, and **Acknowledge** / **Resolve** while they still
apply (their ``action_id`` values, ``ACK_ACTION`` and ``RESOLVE_ACTION``, are what
``interactivity`` acts on). Everything shown is escaped for mrkdwn, cut to Slack's limits, and
URLs Slack would reject are left out, so one odd value never makes Slack refuse the whole message.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any
from urllib.parse import urlparse

from medic_core.plugins.interfaces import Notification

ACK_ACTION = "medic_ack"
RESOLVE_ACTION = "medic_resolve"

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
    if notification.kind == "playbook":
        return _render_playbook(notification)
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


def _render_playbook(notification: Notification) -> dict[str, Any]:
    """A playbook's ``notify`` message: its text, plainly, with no alert buttons."""
    source = str(notification.service.get("name") or "A playbook")
    message = _escape(_cut(notification.message, 2900))
    blocks: list[dict[str, Any]] = [
        {"type": "context", "elements": [{"type": "mrkdwn", "text": _escape(_cut(source, 200))}]},
        {"type": "section", "text": {"type": "mrkdwn", "text": message or "(empty message)"}},
    ]
    return {
        "text": f"{_escape(_cut(source, 200))}: {message}",
        "attachments": [{"color": TEST_COLOUR, "fallback": source, "blocks": blocks}],
    }


def thread_reply(notification: Notification, channel: str, ts: str) -> dict[str, Any]:
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
