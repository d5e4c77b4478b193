"""Prometheus metrics, held by one ``Metrics`` object per application.

Each instance owns its registry (no global state), so tests build isolated applications and
read exactly the numbers their own actions produced.
"""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
# A Hello waits for a group commit that may queue behind a reconnecting fleet: longer buckets.
_HELLO_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
_BATCH_BUCKETS = (1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 2500)


class Metrics:
    def __init__(self) -> None:
        self._http_children: dict[tuple[str, str, int], tuple[Any, Any]] = {}
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.http_requests = Counter(
            "medic_http_requests",
            "HTTP requests served.",
            ["route", "method", "status"],
            registry=r,
        )
        self.http_latency = Histogram(
            "medic_http_request_duration_seconds",
            "Time to answer an HTTP request.",
            ["route", "method"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.ingest_latency = Histogram(
            "medic_ingest_latency_seconds",
            "From a heartbeat entering the writer queue to its transaction committing.",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.heartbeats = Counter(
            "medic_heartbeats", "Heartbeats stored, by status.", ["status"], registry=r
        )
        self.heartbeats_rejected = Counter(
            "medic_heartbeats_rejected",
            "Heartbeats refused before storage, by reason: queue_full, or db_<cause> "
            "(db_unreachable, db_full, db_read_only, db_slow).",
            ["reason"],
            registry=r,
        )
        self.database_failures = Counter(
            "medic_database_failures",
            "Requests the database failed (medic_core/store/breaker.py), by cause: unreachable, "
            "full, read_only, slow.",
            ["cause"],
            registry=r,
        )
        self.database_refusals = Counter(
            "medic_database_refusals",
            "Requests refused at once by the open database circuit breaker, by cause.",
            ["cause"],
            registry=r,
        )
        self.database_failing = Gauge(
            "medic_database_failing",
            "1 while the database circuit breaker is open or probing (readiness fails), else 0.",
            registry=r,
        )
        self.writer_batch_size = Histogram(
            "medic_writer_batch_size",
            "Heartbeats committed per group-commit transaction.",
            buckets=_BATCH_BUCKETS,
            registry=r,
        )
        self.writer_queue_depth = Gauge(
            "medic_writer_queue_depth", "Heartbeats waiting for the writer.", registry=r
        )
        self.alerts = Counter(
            "medic_alerts",
            "Alert transitions, by cause and the state entered.",
            ["cause", "state"],
            registry=r,
        )
        self.alerts_unresolved = Gauge(
            "medic_alerts_unresolved", "Unresolved alerts, by cause.", ["cause"], registry=r
        )
        self.monitor_lag = Gauge(
            "medic_monitor_lag_seconds",
            "Now minus the oldest deadline that has passed and is not yet handled (0 when none).",
            registry=r,
        )
        self.monitor_claimed = Counter(
            "medic_monitor_claimed", "Overdue items claimed by the monitor.", ["kind"], registry=r
        )
        self.plugin_errors = Counter(
            "medic_plugin_errors",
            "Exceptions raised by plugin hook implementations (isolated, logged).",
            ["plugin", "hook"],
            registry=r,
        )
        self.event_handler_errors = Counter(
            "medic_event_handler_errors",
            "Exceptions raised by event bus subscribers.",
            ["subscriber"],
            registry=r,
        )
        self.events_dropped = Counter(
            "medic_events_dropped",
            "Events dropped because a subscriber's queue was full.",
            ["subscriber"],
            registry=r,
        )
        self.breaker_opened = Counter(
            "medic_delivery_breaker_opened",
            "Times a target's circuit breaker opened (its deliveries held for the cool-down).",
            ["target"],
            registry=r,
        )
        self.deliveries_in_flight = Gauge(
            "medic_deliveries_in_flight",
            "Outbox notifications being sent by this process (at most MEDIC_DELIVERY_CONCURRENCY).",
            registry=r,
        )
        self.notifications = Counter(
            "medic_notifications",
            "Notifications handed to notifier plugins, by notifier and outcome.",
            ["notifier", "outcome"],
            registry=r,
        )

        self.api_key_lookups = Counter(
            "medic_api_key_lookups",
            "API key lookups, by how they were answered: hit (verified-key cache), negative_hit "
            "(unknown-id cache), query (a database query started), joined (waited for one).",
            ["result"],
            registry=r,
        )
        self.auth_failures = Counter(
            "medic_auth_failures",
            "Failed authentications (no, malformed, unknown, revoked or expired key), charged to "
            "the client source's budget, by transport (http, grpc).",
            ["transport"],
            registry=r,
        )
        self.preauth_refusals = Counter(
            "medic_preauth_refusals",
            "Requests refused before any key was looked up, by transport and reason: "
            "source_budget (the source used up its failed authentications), url_too_long, "
            "header_too_large, malformed (the request head could not be parsed).",
            ["transport", "reason"],
            registry=r,
        )
        self.http_connections_open = Gauge(
            "medic_http_connections_open", "Open HTTP connections.", registry=r
        )
        self.http_connections_closed = Counter(
            "medic_http_connections_closed",
            "HTTP connections Medic closed on purpose, by reason: header_timeout, idle_timeout, "
            "body_timeout, max_connections, max_connections_per_source.",
            ["reason"],
            registry=r,
        )
        self.playbooks_refused = Counter(
            "medic_playbooks_refused",
            "Playbook definitions refused (saved or only validated), by reason: too_large "
            "(MEDIC_PLAYBOOK_MAX_BYTES), too_many_steps (MEDIC_PLAYBOOK_MAX_STEPS), unreadable "
            "(not YAML or JSON, YAML aliases, too deeply nested), invalid (breaks the schema "
            "or a rule), refused_by_step_type (a step type's review refused a step, e.g. a "
            "script no chosen agent's allowlist allows).",
            ["reason"],
            registry=r,
        )
        self.playbook_executions = Counter(
            "medic_playbook_executions",
            "Playbook executions that ended, by playbook and result (succeeded, failed, "
            "cancelled, timed_out).",
            ["playbook", "result"],
            registry=r,
        )
        self.playbook_triggers = Counter(
            "medic_playbook_triggers",
            "Playbook triggers that fired, by kind (alert, webhook) and outcome: started, "
            "skipped_active (a run of the playbook for the service is active), skipped_rate "
            "(MEDIC_PLAYBOOK_RUNS_PER_SERVICE_HOUR), skipped_not_runnable, skipped_invalid "
            "(a required variable without default), cancelled_on_resolve.",
            ["kind", "outcome"],
            registry=r,
        )
        self.playbook_webhooks_refused = Counter(
            "medic_playbook_webhooks_refused",
            "Inbound playbook webhook requests refused, by reason: unsigned (no or malformed "
            "timestamp/signature headers), stale (timestamp outside "
            "MEDIC_PLAYBOOK_WEBHOOK_WINDOW), not_enabled (no such playbook, no webhook trigger "
            "or no secret), bad_signature, replayed, too_large (MEDIC_PLAYBOOK_WEBHOOK_MAX_BYTES).",
            ["reason"],
            registry=r,
        )
        self.playbook_step_seconds = Histogram(
            "medic_playbook_step_seconds",
            "Seconds one call of a step type's advance took, by step type.",
            ["type"],
            buckets=(0.005, 0.025, 0.1, 0.5, 1, 2.5, 10, 30, 120),
            registry=r,
        )
        self.playbook_engine_lag = Histogram(
            "medic_playbook_engine_lag_seconds",
            "How late the playbook engine claimed an execution: now - its next_at.",
            buckets=(0.01, 0.05, 0.1, 0.5, 1, 5, 15, 60, 300),
            registry=r,
        )
        self.playbook_drives_active = Gauge(
            "medic_playbook_drives_active",
            "Playbook executions this process is advancing now (at most "
            "MEDIC_PLAYBOOK_MAX_ACTIVE_DRIVES).",
            registry=r,
        )
        self.secrets_refused = Counter(
            "medic_secrets_refused",
            "Secret names and values refused (set, delete, resolve), by reason: too_large "
            "(MEDIC_SECRET_MAX_BYTES), bad_name (not a name like an environment variable's), "
            "too_many (MEDIC_SECRETS_MAX), too_short (shorter than 4 characters, or only '*': "
            "it could not be redacted), "
            "no_key (MEDIC_SECRET_KEY is not set).",
            ["reason"],
            registry=r,
        )
        self.secret_decrypt_failures = Counter(
            "medic_secret_decrypt_failures",
            "Stored secrets no key of MEDIC_SECRET_KEY could decrypt (when resolved or rotated).",
            registry=r,
        )
        self._agent_metrics(r)

    def _agent_metrics(self, r: CollectorRegistry) -> None:
        """The agent hub's metrics (``medic_core/agent/``; docs/agent-protocol.md lists them)."""
        self.agents_connected = Gauge(
            "medic_agents_connected",
            "Agent streams open on this process (after their Hello).",
            registry=r,
        )
        self.agent_transitions = Counter(
            "medic_agent_transitions",
            "Agents going online or offline, by the status entered and why.",
            ["status", "reason"],
            registry=r,
        )
        self.agent_protocol_refusals = Counter(
            "medic_agent_protocol_refusals",
            "Messages from agents refused (not stored), by reason; docs/agent-protocol.md "
            "says which reasons end the stream.",
            ["reason"],
            registry=r,
        )
        self.agent_hello_refusals = Counter(
            "medic_agent_hello_refusals",
            "Hellos refused because the stream's API key may not speak for the agent id, by "
            "reason (other_key: the id belongs to another key; revoked: an admin revoked it).",
            ["reason"],
            registry=r,
        )
        self.agent_hello_queue_depth = Gauge(
            "medic_agent_hello_queue_depth",
            "Agent Hellos waiting to be stored.",
            registry=r,
        )
        self.agent_hello_batch_size = Histogram(
            "medic_agent_hello_batch_size",
            "Agent Hellos committed per group-commit transaction.",
            buckets=_BATCH_BUCKETS,
            registry=r,
        )
        self.agent_hello_latency = Histogram(
            "medic_agent_hello_latency_seconds",
            "From an agent Hello entering the queue to its transaction committing.",
            buckets=_HELLO_LATENCY_BUCKETS,
            registry=r,
        )
        self.agent_hellos_rejected = Counter(
            "medic_agent_hellos_rejected",
            "Agent Hellos not stored, by reason (queue_full: MEDIC_AGENT_HELLO_QUEUE are "
            "waiting; db_unavailable: the database cannot be reached); the stream ends "
            "UNAVAILABLE and the agent reconnects with back-off.",
            ["reason"],
            registry=r,
        )
        self.agent_executions = Counter(
            "medic_agent_executions",
            "Executions that reached a final state, by result (the state, lost or agent_revoked).",
            ["result"],
            registry=r,
        )
        self.agent_execution_refusals = Counter(
            "medic_agent_execution_refusals",
            "Execution requests refused, by the server's check or the agent, by reason code.",
            ["reason"],
            registry=r,
        )
        self.agent_execution_requeues = Counter(
            "medic_agent_execution_requeues",
            "Executions an agent refused too_many_running (its limit of concurrent executions "
            "was reached) that went back to the queue, to be sent again after a back-off.",
            registry=r,
        )

    def observe_http(self, route: str, method: str, status: int, seconds: float) -> None:
        """Count one HTTP request and its latency.

        The labelled children are kept per (route, method, status): ``labels()`` validates and
        locks on every call, which showed in profiles of the ingest path.
        """
        key = (route, method, status)
        children = self._http_children.get(key)
        if children is None:
            children = self._http_children[key] = (
                self.http_requests.labels(route, method, str(status)),
                self.http_latency.labels(route, method),
            )
        children[0].inc()
        children[1].observe(seconds)

    def render(self) -> bytes:
        return generate_latest(self.registry)
