"""The relational model.

One concept in one file, though long (~690 lines): the whole schema as Alembic's autogenerate and
a reader see it, one class per table with its indexes and constraints beside it. Split by
package (``store/models/agents.py``, ...) if it passes ~1,000 lines.

One class per table; behaviour lives in the domain modules, not here. Conventions:
- instants are ``UTCDateTime`` (aware UTC);
- ``services.next_due`` is the stored, indexed deadline: the instant the service becomes
  ``down`` unless a heartbeat arrives. The monitor reads only rows whose deadline has passed;
- the database itself enforces "at most one unresolved alert per (service, cause)" with a
  partial unique index, so two monitors racing can never both open one.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from medic_core.store.types import BigId, Json, UTCDateTime


class Base(DeclarativeBase):
    pass


class Team(Base):
    __tablename__ = "teams"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    slug: Mapped[str] = mapped_column(String(100), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(Text, default="")
    # How the team's unacknowledged alerts escalate and remind (none: only the first page).
    escalation_policy_id: Mapped[int | None] = mapped_column(
        ForeignKey("escalation_policies.id", ondelete="SET NULL"), index=True
    )
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


class Service(Base):
    __tablename__ = "services"
    __table_args__ = (Index("ix_services_agent_id", "agent_id", unique=True),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    slug: Mapped[str] = mapped_column(String(100), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    team_id: Mapped[int | None] = mapped_column(
        ForeignKey("teams.id", ondelete="SET NULL"), index=True
    )
    tags: Mapped[list[str]] = mapped_column(Json, default=list)
    priority: Mapped[str] = mapped_column(String(2), default="p3")
    runbook_url: Mapped[str | None] = mapped_column(String(2000))
    description: Mapped[str] = mapped_column(Text, default="")
    expectation: Mapped[dict[str, Any]] = mapped_column(Json)
    grace: Mapped[int] = mapped_column(Integer, default=0)
    max_duration: Mapped[int | None] = mapped_column(Integer)

    state: Mapped[str] = mapped_column(String(10), default="new")
    last_heartbeat_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_status: Mapped[str | None] = mapped_column(String(10))
    # expected_at is the deadline without grace: past it the service reads as "late".
    expected_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    next_due: Mapped[datetime | None] = mapped_column(UTCDateTime, index=True)
    # The latest heartbeat instants a quorum expectation needs (ISO strings, ascending).
    recent_beats: Mapped[list[str]] = mapped_column(Json, default=list)

    muted: Mapped[bool] = mapped_column(Boolean, default=False)
    muted_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    mute_reason: Mapped[str | None] = mapped_column(String(500))
    paused_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Set on the service an agent's hub made for it (``agent-<agent id>``): the hub adopts only
    # a service marked with its own agent id, never a user's service that happens to hold the
    # slug. NULL for every service people create.
    agent_id: Mapped[str | None] = mapped_column(String(64))

    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


class Heartbeat(Base):
    __tablename__ = "heartbeats"
    __table_args__ = (Index("ix_heartbeats_service_id_id", "service_id", "id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    service_id: Mapped[int] = mapped_column(ForeignKey("services.id", ondelete="CASCADE"))
    status: Mapped[str] = mapped_column(String(10))
    run_id: Mapped[str | None] = mapped_column(String(200))
    exit_code: Mapped[int | None] = mapped_column(Integer)
    message: Mapped[str | None] = mapped_column(Text)
    message_truncated: Mapped[bool] = mapped_column(Boolean, default=False)
    source: Mapped[str | None] = mapped_column(String(200))
    received_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)


class JobRun(Base):
    __tablename__ = "job_runs"
    __table_args__ = (
        Index("ix_job_runs_service_id_id", "service_id", "id"),
        # Only open runs with a limit are ever claimed for overrun, so the index holds only them.
        Index(
            "ix_job_runs_overrun_due",
            "overrun_due",
            sqlite_where=text("finished_at IS NULL AND overrun_due IS NOT NULL"),
            postgresql_where=text("finished_at IS NULL AND overrun_due IS NOT NULL"),
        ),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    service_id: Mapped[int] = mapped_column(ForeignKey("services.id", ondelete="CASCADE"))
    run_id: Mapped[str | None] = mapped_column(String(200))
    status: Mapped[str] = mapped_column(String(10), default="running")
    started_at: Mapped[datetime] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    duration: Mapped[float | None] = mapped_column(Float)
    exit_code: Mapped[int | None] = mapped_column(Integer)
    overrun_due: Mapped[datetime | None] = mapped_column(UTCDateTime)
    overrun: Mapped[bool] = mapped_column(Boolean, default=False)


class Alert(Base):
    __tablename__ = "alerts"
    __table_args__ = (
        Index(
            "uq_alerts_one_unresolved_per_cause",
            "service_id",
            "cause",
            unique=True,
            sqlite_where=text("resolved_at IS NULL"),
            postgresql_where=text("resolved_at IS NULL"),
        ),
        Index(
            "ix_alerts_notify_at",
            "notify_at",
            sqlite_where=text("notify_at IS NOT NULL"),
            postgresql_where=text("notify_at IS NOT NULL"),
        ),
        Index("ix_alerts_state_id", "state", "id"),
        Index(
            "ix_alerts_page_at",
            "page_at",
            sqlite_where=text("page_at IS NOT NULL"),
            postgresql_where=text("page_at IS NOT NULL"),
        ),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    service_id: Mapped[int] = mapped_column(ForeignKey("services.id", ondelete="CASCADE"))
    cause: Mapped[str] = mapped_column(String(20))
    state: Mapped[str] = mapped_column(String(15), default="open")
    priority: Mapped[str] = mapped_column(String(2))
    summary: Mapped[str] = mapped_column(String(500))
    details: Mapped[dict[str, Any]] = mapped_column(Json, default=dict)
    opened_at: Mapped[datetime] = mapped_column(UTCDateTime)
    acknowledged_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    acknowledged_by: Mapped[str | None] = mapped_column(String(200))
    resolved_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    resolved_by: Mapped[str | None] = mapped_column(String(200))
    resolution: Mapped[str | None] = mapped_column(String(500))
    # Suppressed alerts (mute, maintenance) are recorded but not notified. notify_at is when the
    # suppression ends: if the alert is still unresolved then, it is notified at that moment.
    suppressed: Mapped[bool] = mapped_column(Boolean, default=False)
    suppressed_reason: Mapped[str | None] = mapped_column(String(200))
    notify_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    notified_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Escalation: the policy level reached, reminders sent, and when the next page (escalation
    # or reminder) is due while the alert stays open -- an indexed deadline like next_due.
    escalation_level: Mapped[int] = mapped_column(Integer, default=0)
    reminders_sent: Mapped[int] = mapped_column(Integer, default=0)
    page_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class MaintenanceWindow(Base):
    __tablename__ = "maintenance_windows"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(200))
    reason: Mapped[str] = mapped_column(Text, default="")
    # {"all": true} | {"services": [slug, ...]} | {"tags": [tag, ...]} | {"team": slug}
    selector: Mapped[dict[str, Any]] = mapped_column(Json)
    starts_at: Mapped[datetime] = mapped_column(UTCDateTime)
    ends_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    timezone: Mapped[str] = mapped_column(String(64), default="UTC")
    recurrence: Mapped[str | None] = mapped_column(String(200))
    duration: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


class ApiKey(Base):
    __tablename__ = "api_keys"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    # The public half of the token: the lookup is one unique-index probe, never a scan.
    key_id: Mapped[str] = mapped_column(String(32), unique=True)
    secret_hash: Mapped[str] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(200))
    scopes: Mapped[list[str]] = mapped_column(Json)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    created_by: Mapped[str | None] = mapped_column(String(200))
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class AuditEntry(Base):
    __tablename__ = "audit_log"
    __table_args__ = (
        Index("ix_audit_log_resource", "resource_type", "resource_id"),
        Index("ix_audit_log_at", "at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime)
    actor: Mapped[str] = mapped_column(String(200))
    action: Mapped[str] = mapped_column(String(100))
    resource_type: Mapped[str] = mapped_column(String(50))
    resource_id: Mapped[str] = mapped_column(String(100))
    before: Mapped[dict[str, Any] | None] = mapped_column(Json)
    after: Mapped[dict[str, Any] | None] = mapped_column(Json)
    request_id: Mapped[str | None] = mapped_column(String(100))


class Schedule(Base):
    """A weekly schedule in an IANA zone: the working hours a target's period refers to.

    ``weekly`` is a list of ``{"days": ["mon", ...], "start": "09:00", "end": "17:30"}``; an end
    at or before the start runs past midnight into the next day.
    """

    __tablename__ = "schedules"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    slug: Mapped[str] = mapped_column(String(100), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    timezone: Mapped[str] = mapped_column(String(64))
    weekly: Mapped[list[dict[str, Any]]] = mapped_column(Json)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


class EscalationPolicy(Base):
    """What happens while an alert stays unacknowledged.

    ``levels``: ``[{"after": seconds since opening, "targets": [target slug, ...]}, ...]`` in
    increasing ``after``. ``repeat_every`` (seconds): remind everyone paged so far, at most
    ``max_reminders`` times.
    """

    __tablename__ = "escalation_policies"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    slug: Mapped[str] = mapped_column(String(100), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    levels: Mapped[list[dict[str, Any]]] = mapped_column(Json, default=list)
    repeat_every: Mapped[int | None] = mapped_column(Integer)
    max_reminders: Mapped[int] = mapped_column(Integer, default=3)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


class NotificationTarget(Base):
    """Where notifications go: a notifier plugin and its configuration.

    Owned by a team (the team's services page it), by one service (an override that replaces
    the team's targets for that service), or by neither (the fallback for services whose team
    has no targets, and for services without a team). ``min_priority``: the least severe
    priority notified (p1 is the most severe). ``period``: ``always``, or ``working_hours`` /
    ``off_hours`` of ``schedule``.
    """

    __tablename__ = "notification_targets"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    slug: Mapped[str] = mapped_column(String(100), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    notifier: Mapped[str] = mapped_column(String(100))
    config: Mapped[dict[str, Any]] = mapped_column(Json, default=dict)
    team_id: Mapped[int | None] = mapped_column(
        ForeignKey("teams.id", ondelete="CASCADE"), index=True
    )
    service_id: Mapped[int | None] = mapped_column(
        ForeignKey("services.id", ondelete="CASCADE"), index=True
    )
    min_priority: Mapped[str] = mapped_column(String(2), default="p5")
    period: Mapped[str] = mapped_column(String(20), default="always")
    schedule_id: Mapped[int | None] = mapped_column(
        ForeignKey("schedules.id", ondelete="RESTRICT"), index=True
    )
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


class Delivery(Base):
    """The outbox: one notification of one alert to one target, written in the transaction that
    changed the alert, and sent (with retries) by the delivery service.

    ``status``: ``pending`` (waiting for ``next_attempt_at``), ``sent``, ``failed`` (gave up:
    permanent error or attempts exhausted; re-drivable) or ``cancelled`` (no longer wanted,
    e.g. a reminder after acknowledgement). ``key`` makes creation idempotent.
    """

    __tablename__ = "deliveries"
    __table_args__ = (
        Index(
            "ix_deliveries_due",
            "next_attempt_at",
            sqlite_where=text("status = 'pending'"),
            postgresql_where=text("status = 'pending'"),
        ),
        Index("ix_deliveries_alert_target", "alert_id", "target_id", "id"),
        Index("ix_deliveries_status_id", "status", "id"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    key: Mapped[str] = mapped_column(String(200), unique=True)
    alert_id: Mapped[int] = mapped_column(ForeignKey("alerts.id", ondelete="CASCADE"))
    target_id: Mapped[int] = mapped_column(
        ForeignKey("notification_targets.id", ondelete="CASCADE"), index=True
    )
    kind: Mapped[str] = mapped_column(String(20))
    level: Mapped[int] = mapped_column(Integer, default=0)
    status: Mapped[str] = mapped_column(String(10), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_error: Mapped[str | None] = mapped_column(String(1000))
    response_code: Mapped[int | None] = mapped_column(Integer)
    # What the notifier returned (e.g. the Slack message ts), for later deliveries of the alert.
    result: Mapped[dict[str, Any] | None] = mapped_column(Json)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class Agent(Base):
    """A host running ``medic-agent``, as it last described itself (``Hello``).

    ``status`` is ``online`` while a stream is open and the agent is heard from, ``offline``
    otherwise. ``next_due`` is the agent's stored, indexed deadline, like ``services.next_due``:
    while online, the instant it counts as silent (last heard + missed heartbeats x interval);
    while offline, the instant its ``agent_offline`` alert opens; NULL once alerted. The alert
    hangs on ``service_id``, the agent's own service row (``agent-<agent_id>``), so teams,
    priorities, routing, mutes and maintenance windows apply to it as to any service.

    ``key_id`` is the API key the agent id belongs to (``enrollment.py``): the key of its first
    ``Hello``, or the one an admin re-assigned it to; a ``Hello`` with the id from any other key
    is refused. NULL only for agents registered before identities were bound whose key could
    not be recovered: the next ``Hello`` binds it. ``revoked_at``: an admin revoked the agent,
    so every ``Hello`` with its id is refused until it is re-assigned. ``containment``: how the
    agent says it ends a script's processes (``cgroup``, ``subreaper``, ``process_group``).
    ``max_concurrent``: how many executions it runs at once (its ``Hello``); NULL when it does
    not say (older agents: the server assumes the agent's default, ``limits.ASSUMED_CAPACITY``).
    """

    __tablename__ = "agents"
    __table_args__ = (Index("ix_agents_status_id", "status", "id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    agent_id: Mapped[str] = mapped_column(String(64), unique=True)
    hostname: Mapped[str] = mapped_column(String(255))
    version: Mapped[str] = mapped_column(String(64))
    os: Mapped[str] = mapped_column(String(32))
    arch: Mapped[str] = mapped_column(String(32))
    labels: Mapped[dict[str, str]] = mapped_column(Json, default=dict)
    # The advertised allowlist: {"sha256": ..., "scripts": [{"name", "sha256", "args", ...}]}.
    allowlist: Mapped[dict[str, Any]] = mapped_column(Json, default=dict)
    capabilities: Mapped[list[str]] = mapped_column(Json, default=list)
    paused: Mapped[bool] = mapped_column(Boolean, default=False)
    paused_reason: Mapped[str | None] = mapped_column(String(500))
    containment: Mapped[str | None] = mapped_column(String(16))
    max_concurrent: Mapped[int | None] = mapped_column(Integer)
    key_id: Mapped[str | None] = mapped_column(String(32))
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    status: Mapped[str] = mapped_column(String(10), default="online")
    session_id: Mapped[str | None] = mapped_column(String(64))
    connected_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_seen: Mapped[datetime | None] = mapped_column(UTCDateTime)
    offline_since: Mapped[datetime | None] = mapped_column(UTCDateTime)
    next_due: Mapped[datetime | None] = mapped_column(UTCDateTime, index=True)
    service_id: Mapped[int | None] = mapped_column(
        ForeignKey("services.id", ondelete="SET NULL"), index=True
    )
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


#: The executions something is owed for: an ``Execute`` not at the agent (never sent, or handed
#: back by it: ``too_many_running``), or a ``Cancel`` asked for and not sent yet. The predicate
#: of ``ix_executions_owed``; queries use this very text, so that SQLite (which matches a
#: partial index's terms literally) uses the index too.
EXECUTIONS_OWED = (
    "finished_at IS NULL AND (last_sent_at IS NULL "
    "OR (cancel_requested_at IS NOT NULL AND cancel_sent_at IS NULL))"
)


class Execution(Base):
    """One request to run an allow-listed script on one agent, and what became of it.

    ``execution_id`` is the public id and the protocol's idempotency key (a UUID the server
    chooses); ``id`` orders rows for cursor pages. ``state``: ``pending`` (not yet answered by
    the agent: re-sent after every reconnect), ``accepted``, ``running``, then one final state
    (``rejected``, ``succeeded``, ``failed``, ``timed_out``, ``cancelled``). ``env_values`` may
    hold secrets: it is kept only while the request may still be (re)sent, never returned by
    the API nor written to the audit log, and cleared once the agent answered.
    ``output_chunks`` is the number of output chunks the agent says it sent (final states);
    ``output_bytes`` the bytes of output stored, which the server caps per execution
    (``MEDIC_AGENT_MAX_OUTPUT_BYTES``; ``output_truncated`` once a chunk was dropped for it).
    ``containment``: how the agent ended the script's processes (final states that ran).
    ``sent_count`` counts the ``Execute`` messages sent; ``last_sent_at`` is when the last one
    went out, and ``NULL`` while one is owed: never sent, or handed back by the agent
    (``too_many_running``, counted in ``capacity_refusals``; not sent again before
    ``send_after``). Sent and unfinished, an execution takes one of its agent's slots
    (``agents.max_concurrent``). ``cancel_sent_at`` is when the last ``Cancel`` went out, and
    ``NULL`` while one is owed (``cancel_requested_at`` set).
    """

    __tablename__ = "executions"
    __table_args__ = (
        # Unfinished executions of one agent: the replay after a Welcome and the lost check.
        Index(
            "ix_executions_agent_open",
            "agent_id",
            "id",
            sqlite_where=text("finished_at IS NULL"),
            postgresql_where=text("finished_at IS NULL"),
        ),
        Index("ix_executions_agent_id_id", "agent_id", "id"),
        Index("ix_executions_state_id", "state", "id"),
        # What the replica holding an agent's stream still has to send (its dispatch pass):
        # almost always empty, so the pass costs an index probe when there is nothing to do.
        Index(
            "ix_executions_owed",
            "agent_id",
            "id",
            sqlite_where=text(EXECUTIONS_OWED),
            postgresql_where=text(EXECUTIONS_OWED),
        ),
        # Unanswered executions by age: the watch fails those past the agent's memory window.
        Index("ix_executions_state_created", "state", "created_at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    execution_id: Mapped[str] = mapped_column(String(64), unique=True)
    agent_id: Mapped[str] = mapped_column(
        String(64), ForeignKey("agents.agent_id", ondelete="CASCADE")
    )
    script: Mapped[str] = mapped_column(String(64))
    args: Mapped[list[str]] = mapped_column(Json, default=list)
    env_names: Mapped[list[str]] = mapped_column(Json, default=list)
    env_values: Mapped[dict[str, str] | None] = mapped_column(Json)
    timeout_seconds: Mapped[int | None] = mapped_column(Integer)
    expected_sha256: Mapped[str] = mapped_column(String(64))
    requested_by: Mapped[str] = mapped_column(String(200))
    state: Mapped[str] = mapped_column(String(12), default="pending")
    reason: Mapped[str | None] = mapped_column(String(64))
    detail: Mapped[str | None] = mapped_column(String(1000))
    exit_code: Mapped[int | None] = mapped_column(Integer)
    signal: Mapped[int | None] = mapped_column(Integer)
    output_chunks: Mapped[int | None] = mapped_column(BigInteger)
    output_truncated: Mapped[bool] = mapped_column(Boolean, default=False)
    output_bytes: Mapped[int] = mapped_column(BigInteger, default=0)
    duration_ms: Mapped[int | None] = mapped_column(BigInteger)
    containment: Mapped[str | None] = mapped_column(String(16))
    sent_count: Mapped[int] = mapped_column(Integer, default=0)
    last_sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    capacity_refusals: Mapped[int] = mapped_column(Integer, default=0)
    send_after: Mapped[datetime | None] = mapped_column(UTCDateTime)
    cancel_requested_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    cancel_sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class ExecutionOutput(Base):
    """One output chunk of an execution, as the agent sent it (raw bytes, at most 16 KiB).

    ``sequence`` counts from 0 per execution, both streams together; the unique constraint
    makes a repeated chunk a no-op.
    """

    __tablename__ = "execution_output"
    __table_args__ = (
        UniqueConstraint("execution_id", "sequence", name="uq_execution_output_sequence"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    execution_id: Mapped[int] = mapped_column(ForeignKey("executions.id", ondelete="CASCADE"))
    sequence: Mapped[int] = mapped_column(BigInteger)
    stream: Mapped[str] = mapped_column(String(6))
    data: Mapped[bytes] = mapped_column(LargeBinary)
    truncated: Mapped[bool] = mapped_column(Boolean, default=False)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime)


class Playbook(Base):
    """A playbook: its slug and the number of its current version (``playbooks/registry.py``).

    ``name`` and ``description`` repeat the current version's, for lists. Deleting sets
    ``deleted_at`` and keeps the versions: an execution pins the version it started with.
    """

    __tablename__ = "playbooks"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    slug: Mapped[str] = mapped_column(String(100), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(Text, default="")
    current_version: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)
    deleted_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    #: The inbound webhook's HMAC secret, encrypted with ``MEDIC_SECRET_KEY`` (a Fernet token;
    #: ``playbooks/webhooks.py``). None: no secret made yet, the webhook refuses everything.
    webhook_secret: Mapped[str | None] = mapped_column(Text)


class PlaybookVersion(Base):
    """One version of a playbook's definition, never changed once written.

    ``digest``: the SHA-256 (hex) of the definition's canonical JSON, so applying an unchanged
    definition makes no version.
    """

    __tablename__ = "playbook_versions"
    __table_args__ = (
        UniqueConstraint("playbook_id", "version", name="uq_playbook_versions_version"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    playbook_id: Mapped[int] = mapped_column(ForeignKey("playbooks.id", ondelete="CASCADE"))
    version: Mapped[int] = mapped_column(Integer)
    definition: Mapped[dict[str, Any]] = mapped_column(Json)
    digest: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    created_by: Mapped[str] = mapped_column(Text)


class PlaybookExecution(Base):
    """One run of a playbook, pinned to the version it started with (``playbooks/executions.py``).

    ``next_at`` is when the engine must look at it again (now when runnable; a wait's deadline;
    a retry's back-off); ``lease_owner``/``lease_until`` say which replica holds it. ``active_key``
    (``"<playbook>:<service or ->"``) is set while the run is active and cleared when it ends: its
    unique constraint is the "one active run per playbook x service" guard, race-free.
    ``step_runs`` counts the step runs made (bounded by ``MEDIC_PLAYBOOK_MAX_STEP_RUNS``).
    """

    __tablename__ = "playbook_executions"
    __table_args__ = (
        UniqueConstraint("active_key", name="uq_playbook_executions_active"),
        Index("ix_playbook_executions_due", "state", "next_at"),
        Index("ix_playbook_executions_playbook", "playbook_id", "id"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    playbook_id: Mapped[int] = mapped_column(ForeignKey("playbooks.id", ondelete="CASCADE"))
    version_id: Mapped[int] = mapped_column(ForeignKey("playbook_versions.id", ondelete="CASCADE"))
    service_id: Mapped[int | None] = mapped_column(ForeignKey("services.id", ondelete="SET NULL"))
    alert_id: Mapped[int | None] = mapped_column(ForeignKey("alerts.id", ondelete="SET NULL"))
    trigger: Mapped[str] = mapped_column(String(20))
    variables: Mapped[dict[str, Any]] = mapped_column(Json)
    state: Mapped[str] = mapped_column(String(20))
    step_index: Mapped[int] = mapped_column(Integer)
    #: Attempts made of the current step since the run entered it (0: none yet).
    attempt: Mapped[int] = mapped_column(Integer, default=0)
    step_runs: Mapped[int] = mapped_column(Integer, default=0)
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    next_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    lease_owner: Mapped[str | None] = mapped_column(String(100))
    lease_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    active_key: Mapped[str | None] = mapped_column(String(60))
    reason: Mapped[str | None] = mapped_column(String(60))
    detail: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_by: Mapped[str] = mapped_column(Text)
    #: What the trigger adds to the template context (``alert`` and ``service`` for a run an
    #: alert started), as it was when the run started. None for a manual run.
    trigger_context: Mapped[dict[str, Any] | None] = mapped_column(Json, nullable=True)


class PlaybookTriggerFiring(Base):
    """That trigger ``trigger_index`` of a playbook fired for an alert, and what came of it
    (``playbooks/triggers.py``): ``started`` (``execution_id``) or ``skipped_<why>``.

    The unique constraint over (playbook, trigger, alert) is the exactly-once guarantee: two
    replicas scanning the same open alert cannot both record it, so only one starts a run, and
    a restart scans again without starting anything twice.
    """

    __tablename__ = "playbook_trigger_firings"
    __table_args__ = (
        UniqueConstraint(
            "playbook_id", "trigger_index", "alert_id", name="uq_playbook_trigger_firings"
        ),
        Index("ix_playbook_trigger_firings_alert", "alert_id"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    playbook_id: Mapped[int] = mapped_column(ForeignKey("playbooks.id", ondelete="CASCADE"))
    trigger_index: Mapped[int] = mapped_column(Integer)
    alert_id: Mapped[int] = mapped_column(ForeignKey("alerts.id", ondelete="CASCADE"))
    outcome: Mapped[str] = mapped_column(String(30))
    execution_id: Mapped[int | None] = mapped_column(
        ForeignKey("playbook_executions.id", ondelete="SET NULL")
    )
    detail: Mapped[str | None] = mapped_column(Text)
    fired_at: Mapped[datetime] = mapped_column(UTCDateTime)


class PlaybookWebhookDelivery(Base):
    """A signature an inbound playbook webhook accepted: its unique constraint refuses the same
    signed request twice (a replay). Rows older than twice the timestamp window are pruned:
    a request that old is refused by its timestamp anyway."""

    __tablename__ = "playbook_webhook_deliveries"
    __table_args__ = (
        UniqueConstraint("playbook_id", "signature", name="uq_playbook_webhook_deliveries"),
        Index("ix_playbook_webhook_deliveries_received", "received_at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    playbook_id: Mapped[int] = mapped_column(ForeignKey("playbooks.id", ondelete="CASCADE"))
    signature: Mapped[str] = mapped_column(String(64))
    received_at: Mapped[datetime] = mapped_column(UTCDateTime)


class PlaybookStepRun(Base):
    """One attempt of one step of an execution. ``step_state`` is what the step type keeps
    between ``advance`` calls (a wait's deadline); ``output`` and ``error`` are bounded."""

    __tablename__ = "playbook_step_runs"
    __table_args__ = (Index("ix_playbook_step_runs_execution", "execution_id", "id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    execution_id: Mapped[int] = mapped_column(
        ForeignKey("playbook_executions.id", ondelete="CASCADE")
    )
    step_index: Mapped[int] = mapped_column(Integer)
    step_name: Mapped[str] = mapped_column(String(64))
    step_type: Mapped[str] = mapped_column(String(64))
    attempt: Mapped[int] = mapped_column(Integer)
    state: Mapped[str] = mapped_column(String(20))
    started_at: Mapped[datetime] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    step_state: Mapped[dict[str, Any]] = mapped_column(Json)
    output: Mapped[Any] = mapped_column(Json, nullable=True)
    error: Mapped[str | None] = mapped_column(Text)


class Secret(Base):
    """A named secret for playbook templates (``secrets/store.py``): its value encrypted.

    ``ciphertext`` is a Fernet token made with the first key of ``MEDIC_SECRET_KEY``; the value
    is never stored in clear, and nothing but the engine's ``Secrets.resolve`` decrypts it.
    """

    __tablename__ = "secrets"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    ciphertext: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_by: Mapped[str] = mapped_column(Text)
