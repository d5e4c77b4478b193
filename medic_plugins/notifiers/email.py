"""The ``email`` notifier: alert mails over SMTP with STARTTLS, as plain text and HTML.

Design:

* ``SmtpOptions`` is the slice of the settings this plugin reads (``MEDIC_SMTP_*`` and
  ``MEDIC_NOTIFY_TIMEOUT``). ``SmtpRelay`` opens one SMTP session per delivery: connect, EHLO,
  STARTTLS, login when a user name is set. Without STARTTLS on offer it stops before sending a
  credential or a byte of the alert (a server that does not offer it may be a downgrade attack).
  There is no connection pool: alert mail is rare, and a fresh session never trips over a
  connection the server dropped while idle.
* The server's certificate and host name are verified against the system's trust store, or only
  against the CAs in ``MEDIC_SMTP_CA_FILE``. The TLS context is built once, off the event loop.
* Rendering is pure: ``render_message`` turns a ``Notification`` into an ``EmailMessage`` with a
  plain-text part and an HTML alternative. Everything in an alert may be user-supplied text, so
  the HTML escapes all of it, links only http(s) URLs and loads nothing from outside, and headers
  lose control characters (no header injection).
* Threading: ``send`` returns ``{"message_id": ...}`` — the ``Message-ID`` of the first mail
  about the alert. Medic hands it back in ``Notification.state``; later mails (acknowledged,
  resolved...) carry it in ``In-Reply-To`` and ``References``, so mail clients show them under
  the opening mail.
* Failures are ``DeliveryError``: permanent SMTP replies (5xx), an untrusted certificate, a
  server without STARTTLS and missing configuration are not retryable; transient replies (4xx),
  timeouts and connection errors are. Once the server has accepted the message the mail counts
  as sent: a failing QUIT is ignored, so a retry never delivers it twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import html
import json
import logging
import re
import socket
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import datetime
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid, parseaddr
from typing import Any

import aiosmtplib
import jsonschema

from medic_core.clock import Clock, SystemClock
from medic_core.plugins import hookimpl
from medic_core.plugins.context import PluginContext
from medic_core.plugins.interfaces import (
    DeliveryError,
    HealthCheck,
    HealthResult,
    Notification,
    Notifier,
)

log = logging.getLogger("medic.notify.email")

DEFAULT_SUBJECT_PREFIX = "[Medic]"
MAX_RECIPIENTS = 50
NOT_CONFIGURED = "email is not configured: set MEDIC_SMTP_HOST and MEDIC_SMTP_FROM"

# A bare address (local@domain): no display names, no whitespace or characters that would let a
# target's configuration add recipients or headers.
_ADDRESS: dict[str, Any] = {
    "type": "string",
    "format": "email",
    "maxLength": 254,
    "pattern": r"^[^\s@<>()\[\],;:\\\"]+@[^\s@<>()\[\],;:\\\"]+$",
}

CONFIG_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "to": {
            "type": "array",
            "description": "Addresses the alert mails go to.",
            "items": _ADDRESS,
            "minItems": 1,
            "maxItems": MAX_RECIPIENTS,
            "uniqueItems": True,
        },
        "cc": {
            "type": "array",
            "description": "Addresses that receive a copy.",
            "items": _ADDRESS,
            "maxItems": MAX_RECIPIENTS,
            "uniqueItems": True,
        },
        "subject_prefix": {
            "type": "string",
            "description": "Put in front of every subject.",
            "maxLength": 50,
            "pattern": r"^[^\x00-\x1f\x7f]*$",
            "default": DEFAULT_SUBJECT_PREFIX,
        },
    },
    "required": ["to"],
    "additionalProperties": False,
}

KIND_LABELS = {
    "opened": "OPEN",
    "acknowledged": "ACKNOWLEDGED",
    "resolved": "RESOLVED",
    "reminder": "REMINDER",
    "escalated": "ESCALATED",
    "test": "TEST",
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
_MESSAGE_ID = re.compile(r"^<[^<>\s]+@[^<>\s]+>$")


# -- settings and the SMTP session ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SmtpOptions:
    """What the email plugin reads from the settings."""

    host: str = ""
    port: int = 587
    starttls: bool = True
    username: str = ""
    password: str = field(default="", repr=False)
    ca_file: str = ""
    sender: str = ""
    timeout: float = 10.0

    @classmethod
    def from_settings(cls, settings: Any) -> SmtpOptions:
        if settings is None:
            return cls()
        return cls(
            host=settings.smtp_host,
            port=settings.smtp_port,
            starttls=settings.smtp_starttls,
            username=settings.smtp_username,
            password=settings.smtp_password,
            ca_file=settings.smtp_ca_file,
            sender=settings.smtp_from,
            timeout=settings.notify_timeout,
        )

    @property
    def server(self) -> str:
        return f"{self.host}:{self.port}"


def client_tls_context(ca_file: str = "") -> ssl.SSLContext:
    """Verifying client context: the system's trust store, or only the CAs in ``ca_file``."""
    context = ssl.create_default_context(cafile=ca_file or None)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


class SmtpRelay:
    """The configured SMTP server: opens verified, authenticated sessions to it."""

    def __init__(self, options: SmtpOptions) -> None:
        self.options = options
        self._tls: ssl.SSLContext | None = None
        self._local_hostname: str | None = None
        self._probing: asyncio.Future[HealthResult] | None = None

    @property
    def configured(self) -> bool:
        return bool(self.options.host and self.options.sender)

    async def _tls_context(self) -> ssl.SSLContext:
        if self._tls is None:
            try:
                self._tls = await asyncio.to_thread(client_tls_context, self.options.ca_file)
            except OSError as exc:  # ssl.SSLError is an OSError
                raise DeliveryError(
                    f"cannot load MEDIC_SMTP_CA_FILE {self.options.ca_file!r}: {exc}",
                    retryable=False,
                ) from exc
        return self._tls

    @contextlib.asynccontextmanager
    async def session(self, timeout: float) -> AsyncIterator[aiosmtplib.SMTP]:
        """A connected client: TLS (when asked for) and logged in (when a user is set).

        On exit the connection is dropped at once, whatever happened: SMTP's QUIT (sent by the
        caller) ends a session, so there is nothing to wait for in TLS's closing handshake.
        """
        options = self.options
        tls = await self._tls_context() if options.starttls else None
        if self._local_hostname is None:
            self._local_hostname = await asyncio.to_thread(socket.getfqdn)
        client = aiosmtplib.SMTP(
            hostname=options.host,
            port=options.port,
            timeout=timeout,
            use_tls=False,
            start_tls=False,  # upgraded below, where a missing STARTTLS is an error
            tls_context=tls,
            local_hostname=self._local_hostname,
        )
        transport: asyncio.BaseTransport | None = None
        try:
            await client.connect()
            transport = client.transport
            if options.starttls:
                await client.ehlo()
                if not client.supports_extension("starttls"):
                    raise DeliveryError(
                        f"SMTP server {options.server} does not offer STARTTLS; refusing to "
                        "send credentials or alerts in clear (MEDIC_SMTP_STARTTLS is on)",
                        retryable=False,
                    )
                await client.starttls()
                transport = client.transport
            if options.username:
                await client.login(options.username, options.password)
            yield client
        finally:
            client.close()
            if isinstance(transport, asyncio.WriteTransport):
                transport.abort()

    async def deliver(self, message: EmailMessage) -> dict[str, aiosmtplib.SMTPResponse]:
        """Send ``message``; return the recipients the server refused (when it took others)."""
        if not self.configured:
            raise DeliveryError(NOT_CONFIGURED, retryable=False)
        timeout = self.options.timeout
        sent: tuple[dict[str, aiosmtplib.SMTPResponse], str] | None = None
        try:
            async with asyncio.timeout(timeout), self.session(timeout) as client:
                sent = await client.send_message(message)
                await client.quit()
        except Exception as exc:
            if sent is None:
                if isinstance(exc, DeliveryError):
                    raise
                raise delivery_error(exc, self.options) from exc
            # The server took the message: a failed QUIT does not undo that, and a retry would
            # deliver it twice.
        assert sent is not None
        return sent[0]

    async def probe(self, timeout: float) -> HealthResult:
        """Connect, EHLO, STARTTLS, login, NOOP and QUIT; send nothing.

        Every email target uses the same server, so callers that ask while a test is running
        (Medic checks all targets at once) share it instead of logging in once per target.
        """
        if not self.configured:
            return HealthResult("down", NOT_CONFIGURED)
        if self._probing is None or self._probing.done():
            self._probing = asyncio.ensure_future(self._probe(timeout))
        return await asyncio.shield(self._probing)

    async def _probe(self, timeout: float) -> HealthResult:
        try:
            async with asyncio.timeout(timeout), self.session(timeout) as client:
                await client.noop()
                await client.quit()
        except Exception as exc:
            return HealthResult("down", str(delivery_error(exc, self.options, timeout=timeout)))
        options = self.options
        parts = [options.server, "STARTTLS" if options.starttls else "no TLS"]
        if options.username:
            parts.append(f"logged in as {options.username}")
        return HealthResult("ok", ", ".join(parts))


# -- failures ------------------------------------------------------------------------------------


def _find(exc: BaseException, kind: type[BaseException]) -> BaseException | None:
    seen: BaseException | None = exc
    for _ in range(10):
        if seen is None:
            return None
        if isinstance(seen, kind):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


def _by_code(code: int | None, message: str) -> DeliveryError:
    # 5xx: permanent (550 mailbox unavailable, 553 bad address, 554, 535 bad credentials...);
    # 4xx: transient (421 service unavailable, 450/451/452 try again later).
    permanent = code is not None and 500 <= code < 600
    return DeliveryError(message, status_code=code, retryable=not permanent)


def delivery_error(
    exc: BaseException, options: SmtpOptions, *, timeout: float | None = None
) -> DeliveryError:
    """Map what aiosmtplib (or the network) raised to a ``DeliveryError``."""
    server = options.server
    if isinstance(exc, DeliveryError):
        return exc
    if isinstance(exc, aiosmtplib.SMTPRecipientsRefused):
        codes = [r.code for r in exc.recipients]
        transient = [c for c in codes if 400 <= c < 500]
        code = transient[0] if transient else (codes[0] if codes else None)
        refused = "; ".join(f"{r.recipient}: {r.code} {r.message}" for r in exc.recipients)
        return _by_code(code, f"SMTP server {server} refused every recipient: {refused}")
    if isinstance(exc, aiosmtplib.SMTPAuthenticationError):
        return _by_code(
            exc.code,
            f"SMTP server {server} refused the login of {options.username!r}: "
            f"{exc.code} {exc.message} (check MEDIC_SMTP_USERNAME / MEDIC_SMTP_PASSWORD)",
        )
    if isinstance(exc, aiosmtplib.SMTPResponseException):
        return _by_code(exc.code, f"SMTP server {server} replied {exc.code} {exc.message}")
    verify = _find(exc, ssl.SSLCertVerificationError)
    if isinstance(verify, ssl.SSLCertVerificationError):
        return DeliveryError(
            f"certificate of SMTP server {server} is not trusted: {verify.verify_message} "
            "(MEDIC_SMTP_CA_FILE names the CAs to trust; empty: the system's)",
            retryable=False,
        )
    if isinstance(exc, TimeoutError):  # aiosmtplib's timeouts are TimeoutErrors too
        seconds = options.timeout if timeout is None else timeout
        return DeliveryError(f"SMTP server {server} did not answer within {seconds:g}s")
    if isinstance(exc, OSError):  # refused or dropped connections, TLS errors
        return DeliveryError(f"cannot talk to SMTP server {server}: {exc}")
    if isinstance(exc, aiosmtplib.SMTPException):
        # The server lacks something this mail needs (AUTH, SMTPUTF8...): retrying won't help.
        return DeliveryError(f"SMTP server {server}: {exc}", retryable=False)
    if isinstance(exc, ValueError):  # an address aiosmtplib cannot send to
        return DeliveryError(f"cannot send to SMTP server {server}: {exc}", retryable=False)
    return DeliveryError(f"SMTP delivery to {server} failed: {type(exc).__name__}: {exc}")


# -- rendering -----------------------------------------------------------------------------------


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
    if alert.get("id") is not None and notification.kind != "test":
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
    alert_id = notification.alert.get("id") if notification.kind != "test" else None
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
    if isinstance(root, str) and _MESSAGE_ID.match(root):
        message["In-Reply-To"] = root
        message["References"] = root
    message["Auto-Submitted"] = "auto-generated"  # RFC 3834: no vacation replies
    message["X-Medic-Notification"] = notification.kind
    if isinstance(alert_id, int):
        message["X-Medic-Alert-Id"] = str(alert_id)
    message.set_content(render_text(notification), cte="quoted-printable")
    message.add_alternative(render_html(notification), subtype="html")
    return message


# -- the plugin ----------------------------------------------------------------------------------


class EmailNotifier:
    name = "email"
    config_schema: dict[str, Any] = CONFIG_SCHEMA

    def __init__(self, options: SmtpOptions, clock: Clock | None = None) -> None:
        self.relay = SmtpRelay(options)
        self._clock = clock or SystemClock()

    async def send(self, notification: Notification) -> dict[str, Any] | None:
        if not self.relay.configured:
            raise DeliveryError(NOT_CONFIGURED, retryable=False)
        try:
            message = render_message(
                notification, sender=self.relay.options.sender, now=self._clock.now()
            )
        except ValueError as exc:  # e.g. a line break in MEDIC_SMTP_FROM or an address
            raise DeliveryError(f"cannot build the alert mail: {exc}", retryable=False) from exc
        refused = await self.relay.deliver(message)
        if refused:
            log.warning(
                "SMTP server refused some recipients of alert %s: %s",
                notification.alert.get("id"),
                ", ".join(f"{to} ({r.code} {r.message})" for to, r in refused.items()),
                extra={"alert_id": notification.alert.get("id"), "target": notification.target},
            )
        root = notification.state.get("message_id")
        if isinstance(root, str) and _MESSAGE_ID.match(root):
            return {"message_id": root}
        return {"message_id": message["Message-ID"]}

    async def check_target(self, config: dict[str, Any]) -> HealthResult:
        """Check the target's configuration and the SMTP session; send nothing."""
        error = jsonschema.exceptions.best_match(
            jsonschema.Draft202012Validator(CONFIG_SCHEMA).iter_errors(config)
        )
        if error is not None:
            return HealthResult("down", f"invalid email target: {error.message}")
        return await self.relay.probe(self.relay.options.timeout)


class SmtpHealthCheck:
    """``smtp`` in ``/health/ready``: can Medic open an SMTP session? (Not critical.)

    The result is kept for ``cache_for`` seconds, so frequent readiness probes do not log in to
    the mail server every time.
    """

    name = "smtp"
    critical = False

    def __init__(
        self,
        options: SmtpOptions,
        clock: Clock | None = None,
        *,
        timeout: float = 1.5,
        cache_for: float = 60.0,
    ) -> None:
        self.relay = SmtpRelay(options)
        self._clock = clock or SystemClock()
        self._timeout = min(timeout, options.timeout)
        self._cache_for = cache_for
        self._last: tuple[datetime, HealthResult] | None = None

    async def check(self) -> HealthResult:
        now = self._clock.now()
        if self._last is not None and (now - self._last[0]).total_seconds() < self._cache_for:
            return self._last[1]
        result = await self.relay.probe(self._timeout)
        self._last = (now, result)
        return result


@hookimpl
def medic_notifiers(medic: PluginContext) -> list[Notifier]:
    options = SmtpOptions.from_settings(getattr(medic, "settings", None))
    return [EmailNotifier(options, getattr(medic, "clock", None))]


@hookimpl
def medic_health_checks(medic: PluginContext) -> list[HealthCheck]:
    options = SmtpOptions.from_settings(getattr(medic, "settings", None))
    if not options.host:
        return []
    return [SmtpHealthCheck(options, getattr(medic, "clock", None))]
