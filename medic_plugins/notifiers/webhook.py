"""The ``webhook`` notifier: POSTs each notification as signed JSON to a URL a user configured.

The wire format — body, headers and the ``X-Medic-Signature`` scheme — is specified in
``docs/notifiers/webhook.md``; receivers verify against that page, so it and ``render``/``sign``
below change together. The body is serialised once and the exact bytes sent are the bytes
signed: ``HMAC-SHA256(secret, f"{timestamp}.{body}")``, hex, as ``v1=<hex>``.

Because users choose the URL, every request goes through the outbound guard
(``medic_core.net.guard``): the URL is checked when the target is saved (``validate_config``) and
again, with the addresses it resolves to, when each request connects; redirects are not
followed. Replies: 2xx is delivered; 3xx (the receiver redirected), 400, 401, 403, 404, 410, 422
and other 4xx are failures retrying cannot fix; 408, 425, 429, 5xx and network failures are
retried, honouring ``Retry-After``.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import socket
import uuid
from typing import Any

import aiohttp
from aiohttp.abc import AbstractResolver
from jsonschema import Draft202012Validator
from yarl import URL

from medic_core import __version__
from medic_core.clock import Clock, SystemClock, isoformat
from medic_core.net.guard import (
    BlockedDestination,
    GuardedResolver,
    OutboundPolicy,
    guarded_session,
    parse_address,
    retry_after_seconds,
)
from medic_core.plugins import hookimpl
from medic_core.plugins.context import PluginContext
from medic_core.plugins.interfaces import DeliveryError, HealthResult, Notification, Notifier
from medic_core.settings import Settings

BODY_VERSION = 1
USER_AGENT = f"Medic/{__version__}"
SECRET_MIN = 16
#: Headers a target may not set: they describe the body, the connection or Medic's own signing.
FORBIDDEN_HEADERS = frozenset(
    {
        "host",
        "content-length",
        "content-type",
        "content-encoding",
        "transfer-encoding",
        "connection",
        "keep-alive",
        "upgrade",
        "te",
        "trailer",
        "user-agent",
    }
)
FORBIDDEN_PREFIX = "x-medic-"
RETRYABLE_4XX = frozenset({408, 425, 429})
EXCERPT_BYTES = 512
HEADER_NAME_PATTERN = r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$"


class WebhookNotifier:
    name = "webhook"
    config_schema: dict[str, Any] = {
        "type": "object",
        "required": ["url"],
        "additionalProperties": False,
        "properties": {
            "url": {
                "type": "string",
                "description": "http(s) URL the notification is POSTed to. Redirects are not "
                "followed; private, loopback and link-local addresses are refused unless the "
                "operator allowed them (MEDIC_OUTBOUND_ALLOW_NETWORKS).",
                "minLength": 1,
                "maxLength": 2000,
                "pattern": "^[Hh][Tt][Tt][Pp][Ss]?://",
            },
            "secret": {
                "type": "string",
                "description": "Shared secret for X-Medic-Signature (at least 16 characters).",
                "minLength": SECRET_MIN,
                "maxLength": 512,
                "writeOnly": True,
            },
            "headers": {
                "type": "object",
                "description": "Extra request headers, e.g. Authorization. Treated as secret. "
                "May not set Host, Content-Type, Content-Length, User-Agent, hop-by-hop "
                "headers or X-Medic-*.",
                "maxProperties": 20,
                "propertyNames": {"pattern": HEADER_NAME_PATTERN, "maxLength": 100},
                "additionalProperties": {"type": "string", "maxLength": 4096},
                "writeOnly": True,
            },
        },
    }

    def __init__(
        self,
        policy: OutboundPolicy,
        *,
        timeout: float = 10.0,
        clock: Clock | None = None,
        resolver: AbstractResolver | None = None,
    ) -> None:
        self.policy = policy
        self._timeout = timeout
        self._clock = clock or SystemClock()
        self._resolver = resolver
        self._session: aiohttp.ClientSession | None = None
        self._validator = Draft202012Validator(self.config_schema)

    @classmethod
    def from_settings(cls, settings: Settings, clock: Clock | None = None) -> WebhookNotifier:
        return cls(
            OutboundPolicy.from_settings(settings), timeout=settings.notify_timeout, clock=clock
        )

    # -- configuration ---------------------------------------------------------------------

    def validate_config(self, config: dict[str, Any]) -> URL:
        """Check a target's configuration beyond what ``config_schema`` can say.

        Raises ``ValueError`` with a message for the person saving the target: schema errors,
        a URL the outbound policy refuses (scheme, credentials, host list, literal addresses),
        header names that would override Medic's own headers, header values with line breaks.
        Returns the parsed URL.
        """
        errors = sorted(self._validator.iter_errors(config), key=lambda e: list(e.path))
        if errors:
            error = errors[0]
            where = ".".join(str(p) for p in error.path) or "config"
            raise ValueError(f"{where}: {error.message}")
        try:
            url = self.policy.check_url(config["url"])
        except BlockedDestination as exc:
            raise ValueError(f"url: {exc.reason}") from None
        for header, value in config.get("headers", {}).items():
            lowered = header.lower()
            if lowered in FORBIDDEN_HEADERS or lowered.startswith(FORBIDDEN_PREFIX):
                raise ValueError(
                    f"headers: {header!r} cannot be set; Medic sets it "
                    "(Host, Content-Type, Content-Length, User-Agent, hop-by-hop and X-Medic-* "
                    "headers are reserved)"
                )
            if any(c in value for c in "\r\n\0"):
                raise ValueError(f"headers: the value of {header!r} contains a line break")
        return url

    # -- the message -----------------------------------------------------------------------

    @staticmethod
    def event_name(notification: Notification) -> str:
        return f"alert.{notification.kind}"

    @staticmethod
    def delivery_id(notification: Notification) -> str:
        """The idempotency key: Medic's delivery id, or a fresh UUID when there is none."""
        if notification.delivery_id is not None:
            return str(notification.delivery_id)
        return uuid.uuid4().hex

    def render(self, notification: Notification, delivery_id: str, sent_at: str) -> bytes:
        """The exact body bytes sent (and signed)."""
        body = {
            "version": BODY_VERSION,
            "event": self.event_name(notification),
            "delivery_id": delivery_id,
            "sent_at": sent_at,
            "target": notification.target,
            "dedup_key": notification.dedup_key or f"medic-alert-{notification.alert.get('id')}",
            "alert": notification.alert,
            "service": notification.service,
            "links": dict(notification.links),
        }
        return json.dumps(body, separators=(",", ":"), ensure_ascii=False, default=str).encode()

    @staticmethod
    def sign(secret: str, timestamp: str, body: bytes) -> str:
        """``X-Medic-Signature``: ``v1=`` + hex HMAC-SHA256 of ``<timestamp>.<body>``."""
        mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
        return f"v1={mac.hexdigest()}"

    # -- delivery --------------------------------------------------------------------------

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = guarded_session(self.policy, self._timeout, resolver=self._resolver)
        return self._session

    async def send(self, notification: Notification) -> dict[str, Any] | None:
        config = notification.config
        try:
            url = self.validate_config(config)
        except ValueError as exc:
            raise DeliveryError(f"webhook target refused: {exc}", retryable=False) from None
        now = self._clock.now()
        delivery = self.delivery_id(notification)
        event = self.event_name(notification)
        body = self.render(notification, delivery, isoformat(now) or "")
        headers = {
            **config.get("headers", {}),
            "Content-Type": "application/json",
            "User-Agent": USER_AGENT,
            "X-Medic-Event": event,
            "X-Medic-Delivery": delivery,
        }
        if config.get("secret"):
            timestamp = str(int(now.timestamp()))
            headers["X-Medic-Timestamp"] = timestamp
            headers["X-Medic-Signature"] = self.sign(config["secret"], timestamp, body)
        try:
            async with self._client().post(
                url, data=body, headers=headers, allow_redirects=False
            ) as response:
                status = response.status
                location = response.headers.get("Location", "")
                retry_after = response.headers.get("Retry-After")
                excerpt = await _excerpt(response)
        except BlockedDestination as exc:
            raise DeliveryError(
                f"webhook destination refused: {exc.reason}", retryable=False
            ) from None
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise DeliveryError(
                f"webhook {url.host} unreachable: {type(exc).__name__}: {exc}"
            ) from exc
        if 200 <= status < 300:
            return None
        if 300 <= status < 400:
            raise DeliveryError(
                f"the receiver redirected ({status} to {location[:200] or 'nowhere'}); Medic "
                "does not follow redirects: configure the final URL",
                status_code=status,
                retryable=False,
            )
        detail = f": {excerpt}" if excerpt else ""
        retryable = status >= 500 or status in RETRYABLE_4XX or status < 200
        raise DeliveryError(
            f"webhook receiver answered {status}{detail}",
            status_code=status,
            retryable=retryable,
            retry_after=retry_after_seconds(retry_after, now) if retryable else None,
        )

    async def check_target(self, config: dict[str, Any]) -> HealthResult:
        """Validate the configuration and resolve the host through the guard; sends nothing."""
        try:
            url = self.validate_config(config)
        except ValueError as exc:
            return HealthResult("down", str(exc))
        host = url.raw_host or ""
        try:
            parse_address(host)  # a literal address was already checked by validate_config
        except ValueError:
            pass
        else:
            return HealthResult("ok", f"{host} is an allowed address (no request sent)")
        resolver = GuardedResolver(self.policy, self._resolver)
        try:
            results = await resolver.resolve(host, url.port or 0, family=socket.AF_UNSPEC)
        except BlockedDestination as exc:
            return HealthResult("down", exc.reason)
        except OSError as exc:
            return HealthResult("down", f"cannot resolve {host}: {exc}")
        finally:
            await resolver.close()
        addresses = ", ".join(dict.fromkeys(r["host"] for r in results))
        return HealthResult("ok", f"{host} resolves to allowed {addresses} (no request sent)")

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


async def _excerpt(response: aiohttp.ClientResponse) -> str:
    try:
        raw = await response.content.read(EXCERPT_BYTES)
    except (aiohttp.ClientError, TimeoutError):
        return ""
    return re.sub(r"\s+", " ", raw.decode("utf-8", "replace")).strip()[:200]


@hookimpl
def medic_notifiers(medic: PluginContext) -> list[Notifier]:
    settings = getattr(medic, "settings", None) or Settings()
    return [WebhookNotifier.from_settings(settings, getattr(medic, "clock", None))]
