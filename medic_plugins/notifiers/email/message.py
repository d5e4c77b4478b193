"""The alert mail, rendered purely: subject, facts, plain text, HTML and headers. Everything in an
alert may be user-supplied text: the HTML escapes all of it, links only http(s) URLs, and headers
lose control characters."""

from __future__ import annotations

import html
import json
import re
from datetime import datetime
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid, parseaddr
from typing import Any

from medic_core.plugins.interfaces import (
    DeliveryError,
    Notification,
)

DEFAULT_SUBJECT_PREFIX = "[Medic]"

KIND_LABELS = {
    "opened": "OPEN",
    "acknowledged": "ACKNOWLEDGED",
    "resolved": "RESOLVED",
    "reminder": "REMINDER",
    "escalated": "ESCALATED",
    "test": "TEST",
    "playbook": "PLAYBOOK",
}

# Banner colours of the HTML part, by notification kind.
_COLOURS = {
    "opened": "#b3261e",
    "escalated": "#b3261e",
    "reminder": "#9a5b00",
    "acknowledged": "#9a5b00",
    "resolved": "#1e7a34",
    "test": "#3c4a5c",
}

_CONTROL = re.compile(r"[\x00-\x1f\x7f]+")
MESSAGE_ID = re.compile(r"^<[^<>\s]+@[^<>\s]+>$")


def _header_text(value: str, limit: int = 250) -> str:
    text = " ".join(_CONTROL.sub(" ", value).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    return json.dumps(value, default=str, ensure_ascii=False)


def _service_name(notification: Notification) -> str:
    service = notification.service or notification.alert.get("service") or {}
    return _text(service.get("name") or service.get("slug") or "unknown service")


def headline(notification: Notification) -> str:
    """``P1 OPEN: Nightly backup — missed``: the subject without its prefix."""
    alert = notification.alert
    label = KIND_LABELS.get(notification.kind, notification.kind.upper())
    priority = _text(alert.get("priority")).upper()
    cause = _text(alert.get("cause"))
    words = f"{priority} {label}".strip()
    line = f"{words}: {_service_name(notification)}"
    return f"{line} — {cause}" if cause else line


def subject(notification: Notification) -> str:
    prefix = notification.config.get("subject_prefix", DEFAULT_SUBJECT_PREFIX)
    return _header_text(f"{prefix} {headline(notification)}")


def _intro(notification: Notification) -> str:
    alert = notification.alert
    kind = notification.kind
    if kind == "test":
        target = f" {notification.target!r}" if notification.target else ""
        return (
            f"TEST — this is a test message from Medic for the notification target{target}. "
            "No alert is open and nothing needs to be done: receiving it shows that the target "
            "works."
        )
    if kind == "playbook":
        return _text(notification.message)
    if kind == "opened":
        return "Medic opened this alert."
    if kind == "acknowledged":
        who = _text(alert.get("acknowledged_by"))
        return f"{who} acknowledged this alert." if who else "This alert was acknowledged."
    if kind == "resolved":
        who = _text(alert.get("resolved_by"))
        return f"This alert was resolved by {who}." if who else "This alert was resolved."
    if kind == "reminder":
        return "Reminder: this alert is still not resolved."
    if kind == "escalated":
        return "This alert was escalated: nobody acknowledged it in time."
    return f"Alert notification: {kind}."


def _when(at: Any, by: Any) -> str:
    text = _text(at)
    return f"{text} by {_text(by)}" if by else text


def facts(notification: Notification) -> list[tuple[str, str]]:
    """The labelled values both parts show, in order."""
    alert = notification.alert
    service = notification.service or alert.get("service") or {}
    name, slug = _service_name(notification), _text(service.get("slug"))
    rows = [
        ("Service", f"{name} ({slug})" if slug and slug != name else name),
        ("Cause", _text(alert.get("cause"))),
        ("Priority", _text(alert.get("priority")).upper()),
        ("State", _text(alert.get("state"))),
        ("Summary", _text(alert.get("summary"))),
        ("Opened", _text(alert.get("opened_at"))),
    ]
    if alert.get("acknowledged_at"):
        rows.append(("Acknowledged", _when(alert["acknowledged_at"], alert.get("acknowledged_by"))))
    if alert.get("resolved_at"):
        rows.append(("Resolved", _when(alert["resolved_at"], alert.get("resolved_by"))))
    if alert.get("resolution"):
        rows.append(("Resolution", _text(alert["resolution"])))
    if alert.get("id") is not None and notification.kind not in ("test", "playbook"):
        rows.append(("Alert", f"#{_text(alert['id'])}"))
    return [(label, value) for label, value in rows if value]


def _details(notification: Notification) -> list[tuple[str, str]]:
    details = notification.alert.get("details") or {}
    if not isinstance(details, dict):
        return []
    rows = []
    for key in sorted(details, key=str)[:20]:
        value = _text(details[key])
        rows.append((str(key), value if len(value) <= 500 else value[:499] + "…"))
    return rows


def _links(notification: Notification) -> list[tuple[str, str]]:
    service = notification.service or notification.alert.get("service") or {}
    alert_url = notification.links.get("alert")
    runbook_url = notification.links.get("runbook") or service.get("runbook_url")
    links = []
    if alert_url:
        links.append(("Open in Medic", _text(alert_url)))
    if runbook_url:
        links.append(("Runbook", _text(runbook_url)))
    return links


def render_text(notification: Notification) -> str:
    rows = facts(notification)
    width = max(len(label) for label, _ in rows) + 2 if rows else 0
    lines = [headline(notification), "", _intro(notification), ""]
    lines += [f"{label + ':':<{width}}{value}" for label, value in rows]
    details = _details(notification)
    if details:
        lines += ["", "Details:"]
        lines += [f"  {key}: {value}" for key, value in details]
    links = _links(notification)
    if links:
        lines.append("")
        lines += [f"{label}: {url}" for label, url in links]
    lines += ["", "-- ", _footer(notification)]
    return "\n".join(lines) + "\n"


def _footer(notification: Notification) -> str:
    target = f" to target {notification.target!r}" if notification.target else ""
    return f"Sent by Medic{target} ({notification.kind} notification)."


def _href(url: str) -> str | None:
    """Only http(s) URLs become links: a runbook URL is user-supplied (``javascript:``...)."""
    if url.lower().startswith(("https://", "http://")) and not _CONTROL.search(url):
        return html.escape(url, quote=True)
    return None


def render_html(notification: Notification) -> str:
    e = html.escape
    colour = _COLOURS.get(notification.kind, "#3c4a5c")
    cell = "padding:4px 12px 4px 0;vertical-align:top;text-align:left"
    rows = "".join(
        f'<tr><th style="{cell};color:#555;font-weight:normal">{e(label)}</th>'
        f'<td style="{cell}">{e(value)}</td></tr>'
        for label, value in facts(notification)
    )
    parts = [
        "<!DOCTYPE html>",
        '<html><head><meta charset="utf-8">',
        f"<title>{e(subject(notification))}</title></head>",
        '<body style="font-family:Helvetica,Arial,sans-serif;font-size:14px;color:#1f1f1f">',
        f'<p style="margin:0 0 12px;padding:8px 12px;background:{colour};color:#fff;'
        f'font-weight:bold">{e(headline(notification))}</p>',
        f"<p>{e(_intro(notification))}</p>",
        f'<table role="presentation" style="border-collapse:collapse">{rows}</table>',
    ]
    details = _details(notification)
    if details:
        items = "".join(f"<li><code>{e(key)}</code>: {e(value)}</li>" for key, value in details)
        parts.append(f"<p>Details:</p><ul>{items}</ul>")
    links = []
    for label, url in _links(notification):
        href = _href(url)
        links.append(f'<a href="{href}">{e(label)}</a>' if href else f"{e(label)}: {e(url)}")
    if links:
        parts.append(f"<p>{' · '.join(links)}</p>")
    parts.append(f'<p style="color:#666;font-size:12px">{e(_footer(notification))}</p>')
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def _domain(sender: str) -> str:
    _, address = parseaddr(sender)
    domain = address.rpartition("@")[2]
    return domain if domain and not _CONTROL.search(domain) else "medic.invalid"


def render_message(notification: Notification, *, sender: str, now: datetime) -> EmailMessage:
    """The mail for ``notification``: headers, a plain-text part and an HTML alternative."""
    config = notification.config
    to = [str(a) for a in config.get("to") or []]
    cc = [str(a) for a in config.get("cc") or [] if a not in to]
    if not to:
        raise DeliveryError("email target has no 'to' addresses", retryable=False)
    alert_id = (
        notification.alert.get("id") if notification.kind not in ("test", "playbook") else None
    )
    message = EmailMessage()
    message["From"] = sender
    message["To"] = ", ".join(to)
    if cc:
        message["Cc"] = ", ".join(cc)
    message["Subject"] = subject(notification)
    message["Date"] = format_datetime(now)
    message["Message-ID"] = make_msgid(
        idstring=f"alert-{alert_id}" if isinstance(alert_id, int) else notification.kind,
        domain=_domain(sender),
    )
    root = notification.state.get("message_id")
    if isinstance(root, str) and MESSAGE_ID.match(root):
        message["In-Reply-To"] = root
        message["References"] = root
    message["Auto-Submitted"] = "auto-generated"  # RFC 3834: no vacation replies
    message["X-Medic-Notification"] = notification.kind
    if isinstance(alert_id, int):
        message["X-Medic-Alert-Id"] = str(alert_id)
    message.set_content(render_text(notification), cte="quoted-printable")
    message.add_alternative(render_html(notification), subtype="html")
    return message
