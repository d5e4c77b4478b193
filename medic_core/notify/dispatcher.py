"""Turns alert events into notifications for notifier plugins.

This is the core's minimal path: every alert transition that is not suppressed goes to the
notifiers named in ``MEDIC_NOTIFIERS`` (default: the built-in ``log`` notifier). Routing by team,
schedules, escalation and the durable outbox replace this in the alert-delivery work; the plugin
interface (``Notifier.send(Notification)``) stays the same.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

from medic_core.events import Event
from medic_core.observability.metrics import Metrics
from medic_core.plugins.interfaces import Notification, NotificationKind, Notifier

log = logging.getLogger(__name__)

_KINDS: dict[str, NotificationKind] = {
    "alert.opened": "opened",
    "alert.released": "opened",
    "alert.acknowledged": "acknowledged",
    "alert.resolved": "resolved",
}


class NotificationDispatcher:
    def __init__(
        self, notifiers: Mapping[str, Notifier], targets: Sequence[str], metrics: Metrics
    ) -> None:
        unknown = [t for t in targets if t not in notifiers]
        if unknown:
            raise ValueError(
                f"MEDIC_NOTIFIERS names unknown notifier(s) {', '.join(unknown)}; "
                f"loaded: {', '.join(sorted(notifiers)) or 'none'}"
            )
        self._notifiers = notifiers
        self._targets = list(targets)
        self._metrics = metrics

    async def handle(self, event: Event) -> None:
        kind = _KINDS.get(event.type)
        if kind is None:
            return
        alert: dict[str, Any] = event.data["alert"]
        # A suppressed alert is recorded, not notified; its release arrives as alert.released.
        # Acknowledge/resolve are only worth telling people who were told of the opening.
        if alert.get("suppressed") or alert.get("notified_at") is None:
            return
        notification = Notification(kind=kind, alert=alert, service=alert["service"])
        for name in self._targets:
            try:
                await self._notifiers[name].send(notification)
            except Exception:
                self._metrics.notifications.labels(name, "error").inc()
                log.exception("notifier %s failed", name, extra={"alert_id": alert.get("id")})
            else:
                self._metrics.notifications.labels(name, "sent").inc()
