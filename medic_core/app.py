"""The composition root: builds every component from the settings, in dependency order.

Components never import this module; they receive what they need through their constructors.
Plugins receive ``Medic.plugin_context`` (a ``PluginHost``), not the application: exactly the
members of ``medic_core.plugins.context.PluginContext``, so no plugin can come to depend on
Medic's insides.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from medic_core.agent.actions import HubActions
from medic_core.agent.hub import AgentHub
from medic_core.alerts import AlertBook
from medic_core.audit import SYSTEM
from medic_core.audit.reader import AuditLog
from medic_core.auth import ApiKeys
from medic_core.auth.failures import AuthFailureBudget
from medic_core.auth.gate import AuthGate
from medic_core.bounded import within
from medic_core.clock import Clock, SystemClock
from medic_core.errors import Conflict
from medic_core.events import Event, EventBus
from medic_core.heartbeats import HeartbeatWriter
from medic_core.heartbeats.history import History
from medic_core.maintenance.windows import MaintenanceWindows
from medic_core.monitor import Monitor
from medic_core.net.guard import OutboundPolicy
from medic_core.net.inbound import TrustedProxies
from medic_core.notify.broadcast import Broadcast
from medic_core.notify.delivery import DeliveryService
from medic_core.notify.escalations import EscalationPolicies
from medic_core.notify.router import Router
from medic_core.notify.schedules import Schedules
from medic_core.notify.targets import Targets
from medic_core.observability.metrics import Metrics
from medic_core.playbooks import Playbooks, StepTypes, Validator
from medic_core.playbooks.engine import PlaybookEngine
from medic_core.playbooks.executions import Executions
from medic_core.playbooks.triggers import AlertTriggers
from medic_core.playbooks.webhooks import PlaybookWebhooks
from medic_core.plugins.context import (
    AgentActions,
    AlertActions,
    PluginContext,
    ServiceReader,
    TargetMessages,
)
from medic_core.plugins.interfaces import HealthCheck, HealthResult
from medic_core.plugins.manager import PluginManager
from medic_core.readiness import DatabaseCheck
from medic_core.secrets import Box, Secrets
from medic_core.server.grpc.endpoint import AgentEndpoint, ServerTls
from medic_core.server.http.listener import HttpLimits
from medic_core.services.registry import ServiceRegistry
from medic_core.settings import Settings
from medic_core.store import Database
from medic_core.store.breaker import DatabaseBreaker
from medic_core.store.migrate import upgrade
from medic_core.teams.registry import Teams

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class PluginHost:
    """What hooks receive as ``medic``: the ``PluginContext`` members and nothing else."""

    settings: Settings
    clock: Clock
    db: Database
    bus: EventBus
    metrics: Metrics
    alerts: AlertActions
    services: ServiceReader
    agents: AgentActions
    messages: TargetMessages


class _Messages:
    """``PluginHost.messages``: bound to the delivery service once it exists (it needs the
    notifiers, which the plugins make from the plugin context)."""

    def __init__(self) -> None:
        self.delivery: DeliveryService | None = None

    async def send(
        self, target: str, message: str, *, playbook: str, execution_id: int, step: str
    ) -> dict[str, Any]:
        assert self.delivery is not None, "the delivery service is made in Medic.__init__"
        return await self.delivery.send_message(
            target, message, playbook=playbook, execution_id=execution_id, step=step
        )


class Medic:
    def __init__(
        self,
        settings: Settings,
        *,
        clock: Clock | None = None,
        plugins: Iterable[tuple[str, object]] = (),
        entry_points: bool = True,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings
        # Fail at start, not at the first webhook, on a malformed outbound allow-list.
        self.outbound = OutboundPolicy.from_settings(settings)
        self.clock: Clock = clock or SystemClock()
        self.metrics = Metrics()
        self.db = Database(
            settings.resolved_database_url,
            pool_size=settings.db_pool_size,
            connect_timeout=settings.db_connect_timeout,
            sqlite_synchronous=settings.sqlite_synchronous,
        )
        # Shared by everything that answers requests from the database: the heartbeat writer,
        # key lookups, readiness. One outage, one breaker, one set of log lines.
        self.db_breaker = DatabaseBreaker(
            failures=settings.db_breaker_failures,
            probe_timeout=settings.db_request_timeout,
            log_every=settings.db_outage_log_every,
            metrics=self.metrics,
            monotonic=monotonic,
        )
        self.bus = EventBus(self.metrics)
        self.plugins = PluginManager(
            self.metrics,
            entry_points=entry_points,
            plugins=plugins,
            disabled=settings.disabled_plugin_names,
        )
        self.keys = ApiKeys(
            self.db,
            self.clock,
            cache_ttl=settings.key_cache_ttl,
            negative_ttl=settings.key_negative_cache_ttl,
            negative_size=settings.key_negative_cache_size,
            metrics=self.metrics,
            breaker=self.db_breaker,
            timeout=settings.db_request_timeout,
        )
        # Before any key is looked up (HTTP and gRPC): who the client is, how many failed
        # authentications it has left, and what the HTTP port lets a connection hold.
        self.trusted_proxies = TrustedProxies.from_setting(settings.trusted_proxies)
        self.auth_failures = AuthFailureBudget(
            settings.auth_failure_rate,
            settings.auth_failure_burst,
            max_sources=settings.auth_failure_sources,
            delay=settings.auth_failure_delay,
        )
        self.auth_gate = AuthGate(self.keys, self.auth_failures, self.metrics)
        self.http_limits = HttpLimits.from_settings(settings)
        self.router = Router(self.db)
        # The router is the alert book's outbox: each transition queues its deliveries in
        # its own transaction (alerts declare the interface, notify implements it).
        self.alerts = AlertBook(self.db, self.clock, self.bus, self.metrics, outbox=self.router)
        self.monitor = Monitor(
            self.db,
            self.clock,
            self.bus,
            self.metrics,
            self.alerts,
            batch_size=settings.monitor_batch,
            max_sleep=settings.monitor_max_sleep,
        )
        self.writer = HeartbeatWriter(
            self.db,
            self.clock,
            self.bus,
            self.metrics,
            self.alerts,
            queue_size=settings.writer_queue,
            max_batch=settings.writer_batch,
            on_deadline=self.monitor.notice,
            breaker=self.db_breaker,
            timeout=settings.db_request_timeout,
        )
        self.services = ServiceRegistry(
            self.db, self.clock, self.bus, self.alerts, on_deadline=self.monitor.notice
        )
        self.teams = Teams(self.db, self.clock, self.bus)
        self.maintenance = MaintenanceWindows(
            self.db, self.clock, self.bus, on_change=self.monitor.notice
        )
        self.agents = AgentHub(
            self.db,
            self.clock,
            self.bus,
            self.metrics,
            self.alerts,
            heartbeat_interval=settings.agent_heartbeat_interval,
            missed_heartbeats=settings.agent_missed_heartbeats,
            alert_after=settings.agent_offline_alert_after,
            batch_size=settings.monitor_batch,
            max_sleep=settings.monitor_max_sleep,
            dispatch_interval=settings.agent_dispatch_interval,
            busy_retries=settings.agent_busy_retries,
            max_output_bytes=settings.agent_max_output_bytes,
            hello_queue=settings.agent_hello_queue,
            hello_batch=settings.agent_hello_batch,
        )
        # Fail at start, not at the first agent, on unreadable TLS files.
        self.agent_endpoint: AgentEndpoint | None = None
        if settings.grpc_port > 0:
            self.agent_endpoint = AgentEndpoint(
                self.agents,
                self.auth_gate,
                self.trusted_proxies,
                host=settings.host,
                port=settings.grpc_port,
                tls=ServerTls.from_settings(settings),
                max_pending_calls=settings.agent_hello_queue,
            )
        self.history = History(self.db)
        self.audit = AuditLog(self.db)
        self._messages = _Messages()
        self.plugin_context: PluginContext = PluginHost(
            settings=settings,
            clock=self.clock,
            db=self.db,
            bus=self.bus,
            metrics=self.metrics,
            alerts=self.alerts,
            services=self.services,
            agents=HubActions(self.db, self.agents.executions),
            messages=self._messages,
        )
        self.notifiers = self.plugins.notifiers(self.plugin_context)
        # A step-type clash or a broken params_schema stops the start here (StepTypeError):
        # playbooks already saved may use either, so no load order may decide.
        self.step_types = StepTypes(self.plugins.step_types(self.plugin_context))
        self.playbooks = Playbooks(
            self.db,
            self.clock,
            self.bus,
            Validator(
                self.step_types,
                max_bytes=settings.playbook_max_bytes,
                max_steps=settings.playbook_max_steps,
                metrics=self.metrics,
            ),
            plugin_context=self.plugin_context,
        )
        # A malformed MEDIC_SECRET_KEY stops the start here (SecretKeyError, never showing the
        # key); none at all leaves secrets off and everything else working.
        box = Box.from_setting(settings.secret_key)
        self.secrets = Secrets(
            self.db,
            self.clock,
            self.bus,
            self.metrics,
            box,
            max_bytes=settings.secret_max_bytes,
            max_count=settings.secrets_max,
        )
        # Runs are advanced only here, in the background, never inside a request.
        self.engine = PlaybookEngine(
            self.db,
            self.clock,
            self.bus,
            self.metrics,
            self.step_types,
            settings,
            plugin_context=self.plugin_context,
            max_sleep=settings.monitor_max_sleep,
        )
        self.runs = Executions(
            self.db, self.clock, self.bus, self.playbooks, on_change=self.engine.notice
        )
        self.bus.subscribe("playbook-engine", self.engine.on_event)
        # Alert triggers scan the database (durable); alert events only wake them early.
        self.triggers = AlertTriggers(
            self.db,
            self.clock,
            self.bus,
            self.metrics,
            self.step_types,
            self.runs,
            runs_per_service_hour=settings.playbook_runs_per_service_hour,
            max_sleep=settings.monitor_max_sleep,
        )
        self.bus.subscribe("playbook-triggers", self.triggers.on_event)
        self.webhooks = PlaybookWebhooks(
            self.db,
            self.clock,
            self.metrics,
            box,
            self.playbooks,
            self.runs,
            window=settings.playbook_webhook_window,
            max_bytes=settings.playbook_webhook_max_bytes,
        )
        self.health_checks: dict[str, HealthCheck] = {
            "database": DatabaseCheck(self.db, self.db_breaker, settings.db_probe_timeout)
        }
        for name, check in self.plugins.health_checks(self.plugin_context).items():
            if name in self.health_checks:
                log.error("plugin health check %r ignored: the name is Medic's own check", name)
            else:
                self.health_checks[name] = check
        self.schedules = Schedules(self.db, self.clock)
        self.escalations = EscalationPolicies(self.db, self.clock)
        self.targets = Targets(self.db, self.clock, self.notifiers)
        # MEDIC_NOTIFIERS: in process, best effort, beside the outbox (notify/broadcast.py).
        self.broadcast = Broadcast(self.notifiers, settings.notifier_names, self.metrics)
        self.delivery = DeliveryService(
            self.db, self.clock, self.metrics, self.notifiers, self.router, settings
        )
        self._messages.delivery = self.delivery
        self.bus.subscribe("notifications", self.broadcast.handle)
        self.bus.subscribe("deliveries", self.delivery.on_event)
        self.bus.subscribe("plugins", self._plugin_event)
        self._background: list[asyncio.Task[None]] = []
        self.started = False

    async def _plugin_event(self, event: Event) -> None:
        await self.plugins.acall("medic_event", event=event)

    async def prepare(self) -> str | None:
        """Migrate (if enabled) and make sure an admin key exists.

        Returns the generated admin token when one was just created, so the caller can show it
        once; it is never logged.
        """
        if self.settings.auto_migrate:
            await upgrade(self.db)
        return await self.ensure_admin_key()

    async def ensure_admin_key(self) -> str | None:
        if await self.keys.count() > 0:
            return None
        supplied = self.settings.admin_key or None
        try:
            _, token = await self.keys.create(
                name="admin (bootstrap)", scopes=["admin"], actor=SYSTEM, token=supplied
            )
        except Conflict:
            return None  # another replica bootstrapped the same supplied key first
        if supplied:
            log.info("admin API key taken from MEDIC_ADMIN_KEY")
            return None
        return token

    async def start(self, *, monitor: bool = True) -> None:
        """Start the background components (``monitor=False``: tests step the monitor, the
        delivery service and the playbook engine by hand)."""
        await self.bus.start()
        await self.writer.start()
        if monitor:
            await self.monitor.start()
            await self.delivery.start()
            await self.engine.start()
            await self.triggers.start()
        # The dispatch pass runs wherever agents connect, background services or not.
        await self.agents.start(watch=monitor, dispatch=self.agent_endpoint is not None)
        if self.agent_endpoint is not None:
            await self.agent_endpoint.start()
        self._background = [
            asyncio.create_task(self._every(30.0, self.keys.flush_last_used), name="key-usage"),
            asyncio.create_task(self._every(15.0, self._refresh_alert_gauge), name="alert-gauge"),
            asyncio.create_task(
                self._every(60.0, self.delivery.refresh_target_health, first=1.0),
                name="target-health",
            ),
        ]
        await self.plugins.acall("medic_startup", medic=self.plugin_context)
        self.started = True

    async def stop(self) -> None:
        if self.started:
            # Producers first, then the events they published, then the plugins' shutdown
            # (so shutdown hooks see every event), then the bus. Agent streams end first of
            # all (agents reconnect to another replica), with their offline marks written.
            if self.agent_endpoint is not None:
                await self.agent_endpoint.stop()
            await self.agents.stop()
            await self.writer.stop()
            await self.monitor.stop()
            await self.delivery.stop()
            await self.triggers.stop()
            await self.engine.stop()
            for task in self._background:
                task.cancel()
            await asyncio.gather(*self._background, return_exceptions=True)
            await self.keys.flush_last_used()
            try:
                await self.bus.drain()
            except TimeoutError:
                log.warning("shutting down with events not yet handled by every subscriber")
            await self.plugins.acall("medic_shutdown", medic=self.plugin_context)
            await self.bus.stop()
            self.started = False
        await self._close_notifiers()
        await self.engine.close()
        await self.db.close()

    async def _close_notifiers(self) -> None:
        for name, notifier in self.notifiers.items():
            close = getattr(notifier, "close", None)
            if close is None:
                continue
            try:
                await close()
            except Exception as exc:
                log.warning("notifier %s failed to close: %s", name, exc)

    async def _every(self, seconds: float, step: Any, *, first: float | None = None) -> None:
        delay = seconds if first is None else first
        while True:
            await asyncio.sleep(delay)
            delay = seconds
            try:
                await step()
            except Exception as exc:
                log.warning("background step %s failed: %s", getattr(step, "__name__", step), exc)

    async def _refresh_alert_gauge(self) -> None:
        counts = await self.alerts.count_unresolved()
        for cause in ("missed", "failed", "overrun", "agent_offline"):
            self.metrics.alerts_unresolved.labels(cause).set(counts.get(cause, 0))

    async def readiness(self) -> dict[str, HealthResult]:
        async def run(check: HealthCheck) -> HealthResult:
            try:
                # within(), not asyncio.timeout: a check stuck on a frozen server must not hold
                # the probe while it unwinds.
                return await within(2.0, check.check(), what=f"the {check.name} check")
            except Exception as exc:
                return HealthResult("down", f"{type(exc).__name__}: {exc}"[:300])

        names = list(self.health_checks)
        results = await asyncio.gather(*(run(self.health_checks[n]) for n in names))
        return dict(zip(names, results, strict=True))
