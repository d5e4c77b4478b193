"""The ``pagerduty`` notifier: alerts become PagerDuty incidents through the Events API v2.

One Medic alert is one PagerDuty alert, correlated by ``dedup_key`` (``Notification.dedup_key``,
or ``medic-alert-<id>``): opening, escalation, reminders and test notifications send ``trigger``
(PagerDuty folds repeated triggers for an open dedup key into the same alert), acknowledgement
sends ``acknowledge`` and resolution ``resolve``. A target's configuration holds the service's
32-character integration (routing) key — a secret, never shown back — and optional overrides of
the priority → severity map and of the ``component``/``group``/``class`` fields.

Replies: 202 is delivered; 400 is PagerDuty refusing the event (a bad key, an invalid field), which
retrying cannot fix; 429 (rate limit, about 120 events a minute per key) and 5xx are retried,
honouring ``Retry-After`` when PagerDuty sends one; network failures are retried too.
The endpoint (``MEDIC_PAGERDUTY_EVENTS_URL``) is set by the operator, not by users, so it is not
sent through the outbound guard. Operator docs: ``docs/notifiers/pagerduty.md``.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from typing import Any

import aiohttp

from medic_core.clock import Clock, SystemClock, isoformat
from medic_core.net.guard import retry_after_seconds
from medic_core.plugins import hookimpl
from medic_core.plugins.context import PluginContext
from medic_core.plugins.interfaces import DeliveryError, HealthResult, Notification, Notifier
from medic_core.settings import Settings

SEVERITIES = ("critical", "error", "warning", "info")
DEFAULT_SEVERITY = {"p1": "critical", "p2": "error", "p3": "warning", "p4": "info", "p5": "info"}
TRIGGER_KINDS = frozenset({"opened", "escalated", "reminder", "test"})
ACTIONS = {"acknowledged": "acknowledge", "resolved": "resolve"}
SUMMARY_MAX = 1024
DEDUP_KEY_MAX = 255
FIELD_MAX = 255
ROUTING_KEY_LENGTH = 32
ROUTING_KEY_RE = re.compile(r"\S{32}")


def _text(value: str, limit: int) -> str:
    return value if len(value) <= limit else value[: limit - 1] + "…"


class PagerDutyNotifier:
    name = "pagerduty"
    config_schema: dict[str, Any] = {
        "type": "object",
        "required": ["routing_key"],
        "additionalProperties": False,
        "properties": {
            "routing_key": {
                "type": "string",
                "description": "Integration key of an Events API v2 integration (32 characters).",
                "minLength": ROUTING_KEY_LENGTH,
                "maxLength": ROUTING_KEY_LENGTH,
                "pattern": r"^\S+$",
                "writeOnly": True,
            },
            "severity_map": {
                "type": "object",
                "description": "Overrides of the priority to severity map "
                "(default p1 critical, p2 error, p3 warning, p4 and p5 info).",
                "properties": {p: {"enum": list(SEVERITIES)} for p in DEFAULT_SEVERITY},
                "additionalProperties": False,
            },
            "component": {"type": "string", "minLength": 1, "maxLength": FIELD_MAX},
            "group": {"type": "string", "minLength": 1, "maxLength": FIELD_MAX},
            "class": {"type": "string", "minLength": 1, "maxLength": FIELD_MAX},
        },
    }

    def __init__(
        self,
        events_url: str,
        *,
        timeout: float = 10.0,
        public_url: str = "",
        clock: Clock | None = None,
    ) -> None:
        self.events_url = events_url
        self.public_url = public_url.rstrip("/")
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._clock = clock or SystemClock()
        self._session: aiohttp.ClientSession | None = None

    @classmethod
    def from_settings(cls, settings: Settings, clock: Clock | None = None) -> PagerDutyNotifier:
        return cls(
            settings.pagerduty_events_url,
            timeout=settings.notify_timeout,
            public_url=settings.resolved_public_url,
            clock=clock,
        )

    # -- the event -----------------------------------------------------------------------------

    def dedup_key(self, notification: Notification) -> str:
        """The key PagerDuty correlates on: the one it confirmed earlier for this alert (kept in
        ``state``), else the alert's dedup key, else ``medic-alert-<id>``."""
        key = (
            notification.state.get("dedup_key")
            or notification.dedup_key
            or f"medic-alert-{notification.alert['id']}"
        )
        if len(key) > DEDUP_KEY_MAX:
            key = "medic-" + hashlib.sha256(key.encode()).hexdigest()
        return key

    def severity(self, priority: str, config: dict[str, Any]) -> str:
        mapping = {**DEFAULT_SEVERITY, **config.get("severity_map", {})}
        return str(mapping.get(priority, "warning"))

    def event(self, notification: Notification) -> dict[str, Any]:
        """The Events API v2 body for ``notification``."""
        config = notification.config
        base = {
            "routing_key": config["routing_key"],
            "dedup_key": self.dedup_key(notification),
        }
        if notification.kind in ACTIONS:
            return {**base, "event_action": ACTIONS[notification.kind]}
        alert, service = notification.alert, notification.service
        summary = str(alert.get("summary") or f"{service.get('name')}: {alert.get('cause')}")
        if notification.kind == "test":
            summary = f"[test] {summary}"
        timestamp = alert.get("opened_at") if notification.kind == "opened" else None
        payload: dict[str, Any] = {
            "summary": _text(summary, SUMMARY_MAX),
            "source": service.get("slug") or "medic",
            "severity": self.severity(str(alert.get("priority")), config),
            "timestamp": timestamp or isoformat(self._clock.now()),
            "class": config.get("class") or alert.get("cause"),
            "custom_details": {
                "notification": notification.kind,
                "alert_id": alert.get("id"),
                "service": service.get("slug"),
                "service_name": service.get("name"),
                "cause": alert.get("cause"),
                "state": alert.get("state"),
                "priority": alert.get("priority"),
                "opened_at": alert.get("opened_at"),
                "details": alert.get("details") or {},
            },
        }
        component = config.get("component")
        group = config.get("group") or service.get("team")
        if component:
            payload["component"] = component
        if group:
            payload["group"] = group
        event: dict[str, Any] = {**base, "event_action": "trigger", "payload": payload}
        event["client"] = "Medic"
        if self.public_url:
            event["client_url"] = self.public_url
        links = []
        if notification.links.get("alert"):
            links.append({"href": notification.links["alert"], "text": "Alert in Medic"})
        runbook = notification.links.get("runbook") or service.get("runbook_url")
        if runbook:
            links.append({"href": runbook, "text": "Runbook"})
        if links:
            event["links"] = links
        return event

    # -- delivery ------------------------------------------------------------------------------

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(timeout=self._timeout)
        return self._session

    async def _post(self, event: dict[str, Any]) -> tuple[int, dict[str, Any], str | None]:
        """POST one event; return the status, the JSON reply (or {}) and Retry-After."""
        try:
            async with self._client().post(
                self.events_url, json=event, allow_redirects=False
            ) as response:
                try:
                    reply = await response.json(content_type=None)
                except (ValueError, aiohttp.ClientPayloadError):
                    reply = None
                return (
                    response.status,
                    reply if isinstance(reply, dict) else {},
                    response.headers.get("Retry-After"),
                )
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise DeliveryError(
                f"PagerDuty is unreachable at {self.events_url}: {type(exc).__name__}: {exc}"
            ) from exc

    async def send(self, notification: Notification) -> dict[str, Any] | None:
        event = self.event(notification)
        status, reply, retry_after = await self._post(event)
        if 200 <= status < 300:
            return {"dedup_key": str(reply.get("dedup_key") or event["dedup_key"])}
        detail = _reply_detail(reply)
        if status == 429 or status >= 500:
            raise DeliveryError(
                f"PagerDuty answered {status}{detail}",
                status_code=status,
                retryable=True,
                retry_after=retry_after_seconds(retry_after, self._clock.now()),
            )
        if status == 400:
            raise DeliveryError(
                f"PagerDuty refused the event{detail}", status_code=status, retryable=False
            )
        raise DeliveryError(
            f"PagerDuty answered {status}{detail}",
            status_code=status,
            retryable=status == 408,
        )

    async def check_target(self, config: dict[str, Any]) -> HealthResult:
        """Check the key's shape, then that PagerDuty answers and accepts it.

        Sends a ``resolve`` for a dedup key that never existed (``medic-check-<random>``):
        PagerDuty validates it like any event and drops it, as there is no alert to resolve, so
        no incident opens and nobody is notified.
        """
        key = config.get("routing_key")
        if not isinstance(key, str) or not ROUTING_KEY_RE.fullmatch(key):
            return HealthResult("down", "routing_key must be the 32-character integration key")
        probe = {
            "routing_key": key,
            "event_action": "resolve",
            "dedup_key": f"medic-check-{secrets.token_hex(8)}",
        }
        try:
            status, reply, _ = await self._post(probe)
        except DeliveryError as exc:
            return HealthResult("down", str(exc))
        if 200 <= status < 300:
            return HealthResult("ok", f"PagerDuty at {self.events_url} accepted the key")
        if status == 429:
            return HealthResult("degraded", "PagerDuty is reachable but rate-limits this key")
        return HealthResult("down", f"PagerDuty answered {status}{_reply_detail(reply)}")

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


def _reply_detail(reply: dict[str, Any]) -> str:
    parts = [str(reply["message"])] if reply.get("message") else []
    errors = reply.get("errors")
    if isinstance(errors, list) and errors:
        parts.append("; ".join(str(e) for e in errors))
    return f": {' — '.join(parts)}" if parts else ""


@hookimpl
def medic_notifiers(medic: PluginContext) -> list[Notifier]:
    settings = getattr(medic, "settings", None) or Settings()
    return [PagerDutyNotifier.from_settings(settings, getattr(medic, "clock", None))]
