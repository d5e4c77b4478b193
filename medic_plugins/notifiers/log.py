"""The ``log`` notifier: writes each notification as a structured log line.

It proves the notification path end to end with nothing to configure, and is the smallest
example of a notifier plugin.
"""

from __future__ import annotations

import logging
from typing import Any

from medic_core.plugins import hookimpl
from medic_core.plugins.interfaces import Notification, Notifier

log = logging.getLogger("medic.notify.log")


class LogNotifier:
    name = "log"
    config_schema: dict[str, Any] = {
        "type": "object",
        "properties": {"level": {"enum": ["INFO", "WARNING", "ERROR"]}},
        "additionalProperties": False,
    }

    async def send(self, notification: Notification) -> None:
        alert = notification.alert
        level = notification.config.get("level", "WARNING")
        log.log(
            logging.getLevelName(level),
            "alert %s: %s",
            notification.kind,
            alert["summary"],
            extra={
                "notification": notification.kind,
                "alert_id": alert["id"],
                "service": notification.service["slug"],
                "cause": alert["cause"],
                "priority": alert["priority"],
                "alert_state": alert["state"],
            },
        )


@hookimpl
def medic_notifiers() -> list[Notifier]:
    return [LogNotifier()]
