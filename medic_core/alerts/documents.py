"""How an alert reads outside the database: the one document of an alert and of its service.

The same dictionaries are the API's responses, the audit entries' before/after, the payload of
``alert.*`` events and what notifier plugins receive (``Notification.alert``/``.service``), so a
field added here reaches all of them. A module of its own so that the alert book and the
delivery service (``notify``) share it without one importing the other's machinery.
"""

from __future__ import annotations

from typing import Any

from medic_core.clock import isoformat
from medic_core.store.models import Alert, Service


def service_brief(service: Service) -> dict[str, Any]:
    """The service as an alert names it (not the whole service document)."""
    return {
        "id": service.id,
        "slug": service.slug,
        "name": service.name,
        "priority": service.priority,
        "team_id": service.team_id,
        "tags": list(service.tags or []),
        "runbook_url": service.runbook_url,
    }


def alert_to_dict(alert: Alert, service: Service) -> dict[str, Any]:
    return {
        "id": alert.id,
        "service": service_brief(service),
        "cause": alert.cause,
        "state": alert.state,
        "priority": alert.priority,
        "summary": alert.summary,
        "details": alert.details or {},
        "opened_at": isoformat(alert.opened_at),
        "acknowledged_at": isoformat(alert.acknowledged_at),
        "acknowledged_by": alert.acknowledged_by,
        "resolved_at": isoformat(alert.resolved_at),
        "resolved_by": alert.resolved_by,
        "resolution": alert.resolution,
        "suppressed": alert.suppressed,
        "suppressed_reason": alert.suppressed_reason,
        "notify_at": isoformat(alert.notify_at),
        "notified_at": isoformat(alert.notified_at),
    }
