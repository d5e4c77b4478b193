"""The ``MEDIC_NOTIFIERS`` broadcast: every alert change people were told of, handed to the
config-less notifiers named in that setting (default: the built-in ``log`` notifier).

It is the zero-configuration path (``make run`` logs alerts before anyone creates a target) and
it is in process and best effort: it listens to ``alert.*`` events after commit, calls each
notifier once, counts and logs failures, and never retries. Routed targets
(``router.py`` writes them to the outbox, ``delivery.py`` sends them) are the durable path.

Decision (issue 17): kept beside the outbox rather than folded into it. As deliveries, the
default ``log`` would cost one outbox row and one claim-send-record cycle per alert change for a
log line, so an outage's alert storm (thousands of alerts a pass) would load the delivery service
that today does nothing when no target is routed; and deliveries hang on a target row, which a
setting-named notifier does not have. What the notifier receives is the same ``Notification``.
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


class Broadcast:
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
