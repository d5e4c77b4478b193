"""What plugins provide, as Protocols and plain data.

These types import nothing of the application beyond the event shape, so a plugin package
depends on this module and ``hookspecs`` only.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal, Protocol, runtime_checkable

NotificationKind = Literal[
    "opened", "acknowledged", "resolved", "reminder", "escalated", "test", "playbook"
]


class DeliveryError(Exception):
    """Raised by ``Notifier.send`` when a notification was not delivered.

    ``retryable=False`` means trying again cannot help (the receiver rejected the request as
    invalid, the configuration is wrong): Medic gives up at once instead of retrying.
    ``status_code`` is the receiver's HTTP (or SMTP) reply code when there was one and
    ``retry_after`` the seconds the receiver asked us to wait (HTTP 429/503 ``Retry-After``).
    Any other exception is treated as retryable.
    """

    def __init__(
        self,
        message: str,
        *,
        status_code: int | None = None,
        retryable: bool = True,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.retryable = retryable
        self.retry_after = retry_after


@dataclass(frozen=True, slots=True)
class Notification:
    """One message for one target about one alert.

    ``alert`` and ``service`` are the same JSON documents the REST API returns, so a notifier
    renders exactly what an operator sees in the API and UI. ``config`` is the target's
    configuration, already validated against the notifier's ``config_schema``.

    ``target`` is the target's name; ``dedup_key`` is stable for the alert (the same on its
    opening, reminders, acknowledgement and resolution; PagerDuty's ``dedup_key``).
    ``state`` is what this notifier's ``send`` returned for earlier notifications of the same
    alert to the same target (merged, later wins) — e.g. the Slack message ``ts`` to update.
    ``links`` holds absolute URLs: ``alert`` (the alert in Medic) and ``runbook`` when the
    service has one. ``delivery_id`` identifies this delivery across retries (an idempotency key
    for receivers).

    Kind ``playbook`` is a playbook's ``notify`` step: ``message`` is its text (also the
    alert document's ``summary``); the alert and service documents are placeholders (id 0,
    service ``playbook-<slug>``), as for ``test``. A notifier should show ``message`` plainly,
    with no alert actions.
    """

    kind: NotificationKind
    alert: dict[str, Any]
    service: dict[str, Any]
    config: dict[str, Any] = field(default_factory=dict)
    target: str = ""
    dedup_key: str = ""
    state: dict[str, Any] = field(default_factory=dict)
    links: dict[str, str] = field(default_factory=dict)
    delivery_id: int | None = None
    message: str = ""


@runtime_checkable
class Notifier(Protocol):
    """Delivers notifications somewhere (Slack, PagerDuty, a log...).

    ``name`` is unique among notifiers and is what targets refer to. ``config_schema`` is a JSON
    Schema for a target's configuration; properties marked ``"writeOnly": true`` (secrets) are
    never shown back by the API. ``send`` returns a small JSON-able dict to remember for later
    notifications of the same alert to the same target (see ``Notification.state``) or None, and
    raises on failure (``DeliveryError`` to say whether retrying can help).

    Optional methods: ``validate_config(config)`` checks what a JSON Schema cannot (raise
    ``ValueError`` with a message for the operator; called when a target is saved, after the
    schema); ``async check_target(config) -> HealthResult`` tests a target's configuration
    without notifying anyone (``medic doctor``); ``async close()`` is called on shutdown.
    """

    name: str
    config_schema: dict[str, Any]

    async def send(self, notification: Notification) -> dict[str, Any] | None: ...


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


@dataclass(frozen=True, slots=True)
class Done:
    """The step succeeded; ``output`` (JSON, bounded by ``MEDIC_PLAYBOOK_STEP_OUTPUT_BYTES``) is
    what later steps read as ``steps.<name>.output``."""

    output: Any = None


@dataclass(frozen=True, slots=True)
class Failed:
    """The step failed: ``error`` says why, for people; the step's ``retry`` and ``on_failure``
    decide what comes next."""

    error: str
    output: Any = None


@dataclass(frozen=True, slots=True)
class Later:
    """Not finished: persist ``state`` and call ``advance`` again at ``at`` (aware UTC), with
    ``run.state`` set to it -- also after a restart of Medic, on any replica."""

    at: datetime
    state: dict[str, Any] = field(default_factory=dict)


Outcome = Done | Failed | Later


@dataclass(frozen=True, slots=True)
class Remark:
    """What a step type's ``review`` found in a step when its playbook is saved.

    ``field`` is where, under the step's ``params`` (``args[0]``; empty: the params as a whole);
    ``refuse`` makes it an error (the save is refused, 422, naming the step), else it is a
    warning the answer carries (``warnings``) and the playbook is saved.
    """

    message: str
    field: str = ""
    refuse: bool = True


@dataclass(frozen=True, slots=True)
class StepRun:
    """What ``StepType.advance`` is told about the step run it advances.

    ``state`` is what the previous ``Later`` asked to keep (``{}`` on the first call of an
    attempt); ``attempt`` counts from 1 (a retry, or a re-run after a crash of an idempotent
    step, is a new attempt with an empty ``state``); ``clock`` is Medic's clock (use it, never
    ``datetime.now()``); ``medic`` is the plugin context. ``service`` (a slug) and
    ``alert_id`` say what the execution is about (None for a manual run that named neither);
    ``deadline`` is the instant the step's ``timeout`` ends its attempt (None: no timeout): at
    that instant the engine fails the step without calling ``advance`` again, so a step with
    something to undo (a ``script`` step cancelling its agent executions) asks to be called a
    little before it; ``playbook`` is the playbook's slug.
    """

    execution_id: int
    step: str
    attempt: int
    state: dict[str, Any]
    clock: Any
    medic: Any = None
    service: str | None = None
    alert_id: int | None = None
    deadline: datetime | None = None
    playbook: str = ""


@runtime_checkable
class StepType(Protocol):
    """A playbook step type: what a step of this ``type`` is and which ``params`` it takes.

    ``name`` is unique among the loaded step types (two plugins offering the same name stop
    Medic at start-up, naming both); it is what a step's ``type`` says. ``description`` is one
    sentence for people (``GET /api/v1/step-types``, the UI builder). ``params_schema`` is a
    JSON Schema (Draft 2020-12) for a step's ``params``: Medic composes it into the playbook
    schema, so a playbook using this type is validated against it when it is saved (an invalid
    schema stops Medic at start-up). String values in ``params`` may be templates; they are
    compiled when the playbook is saved.

    Running (optional members; docs/plugins.md): ``async def advance(self, params, run) ->
    Outcome`` is called with the step's rendered ``params`` and a ``StepRun``; it returns
    ``Done``, ``Failed`` or ``Later`` and must not block. ``idempotent_by_default`` says whether
    a step whose outcome is unknown after a crash (Medic died while ``advance`` ran) may simply
    run again (a step's own ``idempotent: true|false`` overrides it; default False). A step type
    without ``advance`` can be saved in a playbook but cannot run: starting such a playbook is
    refused (409) naming the steps.

    Saving (optional): ``async def review(self, params, medic) -> list[Remark]`` is called for
    each step of the type when a playbook is saved or validated through the API, after the
    schema and the rules passed, with the step's ``params`` as written (templates not rendered)
    and the plugin context; a ``Remark`` with ``refuse`` refuses the save (422), others are
    warnings. It checks what only the running Medic knows (``script``: the agents' advertised
    allowlists); the offline ``medic playbook validate`` does not call it.
    """

    name: str
    description: str
    params_schema: dict[str, Any]


RouteHandler = Callable[[Any], Awaitable[Any]]


@runtime_checkable
class Integration(Protocol):
    """Connects Medic to an outside system and may add HTTP routes under ``/integrations/<name>``.

    ``routes`` returns ``(method, path, handler)`` tuples; handlers receive an aiohttp request and
    authenticate it themselves (inbound webhooks carry their own signatures).
    """

    name: str

    def routes(self) -> list[tuple[str, str, RouteHandler]]: ...
