"""The ``email`` notifier (what a target's configuration may say, sending one alert mail) and the
``smtp`` readiness check."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import jsonschema

from medic_core.clock import Clock, SystemClock
from medic_core.plugins.interfaces import (
    DeliveryError,
    HealthResult,
    Notification,
)
from medic_plugins.notifiers.email.message import DEFAULT_SUBJECT_PREFIX, MESSAGE_ID, render_message
from medic_plugins.notifiers.email.relay import NOT_CONFIGURED, SmtpOptions, SmtpRelay, log

MAX_RECIPIENTS = 50

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
        if isinstance(root, str) and MESSAGE_ID.match(root):
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
