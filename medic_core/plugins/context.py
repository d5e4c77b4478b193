"""The plugin context: what every hook that takes ``medic`` receives.

``PluginContext`` is the whole of what a plugin may use of the running application; Medic's own
plugins (``medic_plugins``) use nothing else, so a third-party plugin can do everything a
built-in does. It is a ``Protocol``: the composition root (``medic_core.app``) hands hooks an
object holding exactly these members, and a test or a plugin's own tests may pass any object
with the members its hooks read (``types.SimpleNamespace(settings=...)``).

The infrastructure:

- ``settings``: every ``MEDIC_*`` setting, read-only;
- ``clock``: ``clock.now()``, the current instant (aware UTC); use it rather than
  ``datetime.now()``, so tests can pass a ``FakeClock``;
- ``db``: the database handle (``async with db.transaction() as session``: an SQLAlchemy
  ``AsyncSession``; ``db.dialect``). Medic's tables are not a plugin API: read them if you must,
  never write them — change things through the actions below;
- ``bus``: the event bus (to listen, implement the ``medic_event`` hook);
- ``metrics``: ``metrics.registry`` is the ``prometheus_client`` registry ``/metrics`` serves.

The domain actions, with the rules, audit records and events of the REST API behind them:

- ``alerts``: read, acknowledge or resolve an alert (``AlertActions``);
- ``services``: read a service (``ServiceReader``);
- ``agents``: choose agents, check a request against their advertised allowlists, run an
  allow-listed script on one and follow it (``AgentActions``);
- ``messages``: send a message through a notification target (``TargetMessages``).

The reads return the documents the REST API returns (the ``condition`` step type polls a
service's ``state`` and ``last_heartbeat_at`` and an alert's ``state`` through them).

Starting a playbook from a plugin is not offered yet: it will be a member here
(``playbooks: PlaybookActions`` with ``start(...)``) when triggers land, not something a plugin
reaches for in Medic's insides.

Nothing here is imported at run time (the types are for type checkers only), so importing this
module pulls in nothing of the application.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from medic_core.audit import Actor
    from medic_core.clock import Clock
    from medic_core.events import EventBus
    from medic_core.observability.metrics import Metrics
    from medic_core.settings import Settings
    from medic_core.store import Database


class AlertActions(Protocol):
    """What a plugin may do to an alert: exactly what ``POST /api/v1/alerts/{id}/ack`` and
    ``/resolve`` do (the same rules, audit record, event and notifications).

    ``actor`` says who acted, as the audit log shows it: name it after your plugin and the outside
    user (``Actor("slack:U0123", request_id)``, with ``request_id`` from ``medic_core.requests``
    in an integration handler). Each returns the alert document as the REST API shows it; each
    raises ``medic_core.errors.NotFound`` for an unknown alert and ``Conflict`` when the alert's
    state does not allow the action (already acknowledged, already resolved).
    """

    async def get(self, alert_id: int) -> dict[str, Any]:
        """The alert document ``GET /api/v1/alerts/{id}`` returns (``state``: open,
        acknowledged or resolved); ``NotFound`` for an unknown alert."""
        ...

    async def acknowledge(self, alert_id: int, *, actor: Actor) -> dict[str, Any]: ...

    async def resolve(
        self, alert_id: int, *, actor: Actor, note: str | None = None
    ) -> dict[str, Any]: ...


class ServiceReader(Protocol):
    """Reading a service: ``get`` returns the document ``GET /api/v1/services/{slug}`` returns,
    and raises ``medic_core.errors.NotFound`` when there is no such service."""

    async def get(self, slug: str) -> dict[str, Any]: ...


class Refusal(Protocol):
    """Why an agent would refuse a request: a stable ``reason`` code (docs/allowlist.md) and a
    ``detail`` for people, free of the request's values."""

    @property
    def reason(self) -> str: ...

    @property
    def detail(self) -> str: ...


class AgentActions(Protocol):
    """What a plugin may do with agents: exactly what the agent-executions API does.

    ``find`` returns the known agents among ``ids`` (in that order), or those carrying every
    label of ``labels``, as ``GET /api/v1/agents/{id}`` shows them (at most ``limit``, 100).
    ``check`` says why the agent would refuse a request now (its advertised allowlist, checked
    by the Rust verifier; its kill switch; its revocation) as a ``Refusal`` (``reason``,
    ``detail``), or ``None``; it stores nothing. ``execute`` is ``POST
    /api/v1/agents/{id}/executions`` (the same check, audit record and events; raises
    ``ValidationError``, ``NotFound``, ``Conflict``, ``ExecutionRefused`` (422) as the API
    answers); ``execution_id`` is an idempotency key: when it exists, that execution is
    returned (``delivery: existing``) and nothing runs again. ``execution`` is ``GET
    /api/v1/executions/{id}`` (with its output); ``cancel`` is ``POST .../cancel``.
    """

    async def find(
        self,
        *,
        ids: Sequence[str] | None = None,
        labels: Mapping[str, str] | None = None,
        limit: int = 100,
    ) -> list[dict[str, Any]]: ...

    async def check(
        self,
        agent_id: str,
        script: str,
        args: Sequence[str],
        env: Mapping[str, str],
        timeout_seconds: int | None = None,
    ) -> Refusal | None: ...

    async def execute(
        self,
        agent_id: str,
        script: str,
        args: Sequence[str],
        env: Mapping[str, str],
        timeout_seconds: int | None,
        *,
        actor: Actor,
        execution_id: str | None = None,
    ) -> dict[str, Any]: ...

    async def execution(self, execution_id: str) -> dict[str, Any]: ...

    async def cancel(self, execution_id: str, *, actor: Actor) -> dict[str, Any]: ...


class TargetMessages(Protocol):
    """Sending a message (a playbook's ``notify`` step) through a notification target, now,
    by its notifier (notification kind ``playbook``). ``send`` returns ``ok``, ``retryable``,
    ``error`` and ``response_code``; raises ``NotFound`` for an unknown target and
    ``Conflict`` for a disabled one."""

    async def send(
        self, target: str, message: str, *, playbook: str, execution_id: int, step: str
    ) -> dict[str, Any]: ...


class PluginContext(Protocol):
    """What hooks receive as ``medic`` (see the module's documentation). Read-only members."""

    @property
    def settings(self) -> Settings: ...

    @property
    def clock(self) -> Clock: ...

    @property
    def db(self) -> Database: ...

    @property
    def bus(self) -> EventBus: ...

    @property
    def metrics(self) -> Metrics: ...

    @property
    def alerts(self) -> AlertActions: ...

    @property
    def services(self) -> ServiceReader: ...

    @property
    def agents(self) -> AgentActions: ...

    @property
    def messages(self) -> TargetMessages: ...

    # With triggers: ``playbooks: PlaybookActions`` (``start(...)``) will be declared here.
