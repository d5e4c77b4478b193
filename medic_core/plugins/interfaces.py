"""What plugins provide, as Protocols and plain data.

These types import nothing of the application beyond the event shape, so a plugin package
depends on this module and ``hookspecs`` only.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable

NotificationKind = Literal["opened", "acknowledged", "resolved", "reminder", "escalated", "test"]


@dataclass(frozen=True, slots=True)
class Notification:
    """One message for one target about one alert.

    ``alert`` and ``service`` are the same JSON documents the REST API returns, so a notifier
    renders exactly what an operator sees in the API and UI. ``config`` is the target's
    configuration, already validated against the notifier's ``config_schema``.
    """

    kind: NotificationKind
    alert: dict[str, Any]
    service: dict[str, Any]
    config: dict[str, Any] = field(default_factory=dict)


@runtime_checkable
class Notifier(Protocol):
    """Delivers notifications somewhere (Slack, PagerDuty, a log...).

    ``name`` is unique among notifiers and is what targets refer to. ``config_schema`` is a JSON
    Schema for a target's configuration. ``send`` raises on failure; Medic records the error.
    """

    name: str
    config_schema: dict[str, Any]

    async def send(self, notification: Notification) -> None: ...


HealthStatus = Literal["ok", "degraded", "down"]


@dataclass(frozen=True, slots=True)
class HealthResult:
    status: HealthStatus
    detail: str = ""


@runtime_checkable
class HealthCheck(Protocol):
    """A named readiness probe shown in ``/health/ready`` (and ``medic doctor``).

    ``critical`` checks make the server not ready when they are down; others only report.
    """

    name: str
    critical: bool

    async def check(self) -> HealthResult: ...


@runtime_checkable
class StepType(Protocol):
    """A playbook step type. ``params_schema`` extends the playbook JSON Schema."""

    name: str
    params_schema: dict[str, Any]

    async def run(self, params: dict[str, Any], context: dict[str, Any]) -> dict[str, Any]: ...


RouteHandler = Callable[[Any], Awaitable[Any]]


@runtime_checkable
class Integration(Protocol):
    """Connects Medic to an outside system and may add HTTP routes under ``/integrations/<name>``.

    ``routes`` returns ``(method, path, handler)`` tuples; handlers receive an aiohttp request and
    authenticate it themselves (inbound webhooks carry their own signatures).
    """

    name: str

    def routes(self) -> list[tuple[str, str, RouteHandler]]: ...
