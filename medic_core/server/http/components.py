"""The named shapes of what the API answers: one OpenAPI component per resource.

Every success response of the route table refers to one of these (``ref("Service")``, or a
page of them with ``page("Service")``), so generated clients get a typed model for each, never
a bare ``dict``. Each lists every property the server writes as ``required``, and says which
may be ``null``: a client can rely on a key being there. A test validates the answers of the
API test suite against them (tests/support/response_check.py).

The builders of these documents live in the domain modules (``service_to_dict``,
``alert_to_dict``, ...); a property added there and not here fails that test.

One concept in one file, though long (~650 lines): the response half of the API contract,
read top to bottom as the list of resources; it grows by one block per resource. If it passes
~1,000 lines, split it by resource group (``components/alerts.py``, ...) behind this module.
"""

from __future__ import annotations

from typing import Any

from medic_core.agent.execution_values import STATES
from medic_core.agent.limits import CONTAINMENTS
from medic_core.playbooks.executions import STATES as PLAYBOOK_RUN_STATES
from medic_core.playbooks.executions import STEP_STATES as PLAYBOOK_STEP_STATES
from medic_core.secrets.store import NAME_PATTERN as SECRET_NAME_PATTERN
from medic_core.server.http import schemas

SCHEMAS: dict[str, dict[str, Any]] = {}

INSTANT = schemas.INSTANT
NULLABLE_INSTANT: dict[str, Any] = {"type": ["string", "null"], "format": "date-time"}
NULLABLE_STRING: dict[str, Any] = {"type": ["string", "null"]}
NULLABLE_INTEGER: dict[str, Any] = {"type": ["integer", "null"]}
ID: dict[str, Any] = {"type": "integer", "minimum": 1, "description": "the row id"}
PRIORITY: dict[str, Any] = {"enum": ["p1", "p2", "p3", "p4", "p5"]}
STRINGS: dict[str, Any] = {"type": "array", "items": {"type": "string"}}


def ref(name: str) -> dict[str, Any]:
    if name not in SCHEMAS:
        raise KeyError(f"no component {name!r}")
    return {"$ref": f"#/components/schemas/{name}"}


def page(name: str) -> dict[str, Any]:
    """A page of ``name`` items (``{"items": [...], "next_cursor": ...}``) as a component."""
    page_name = f"{name}Page"
    if page_name not in SCHEMAS:
        SCHEMAS[page_name] = schemas.page_of(ref(name))
    return ref(page_name)


def component(
    name: str, properties: dict[str, Any], *, optional: tuple[str, ...] = (), **extra: Any
) -> dict[str, Any]:
    """Register an object component: every property required unless named in ``optional``."""
    SCHEMAS[name] = {
        "type": "object",
        "properties": properties,
        "required": [key for key in properties if key not in optional],
        **extra,
    }
    return ref(name)


def slugged(name: str, properties: dict[str, Any]) -> dict[str, Any]:
    """A resource addressed by its slug: id, slug and name, its own fields, then timestamps."""
    return component(
        name,
        {
            "id": ID,
            "slug": schemas.SLUG,
            "name": {"type": "string"},
            **properties,
            "created_at": INSTANT,
            "updated_at": INSTANT,
        },
    )


# -- health -----------------------------------------------------------------------------------

component("Health", {"status": {"const": "ok"}, "version": {"type": "string"}})
component(
    "ReadinessCheck",
    {
        "status": {
            "type": "string",
            "description": "with a read key: the check's status (ok, degraded, down); "
            "without: ok or failing",
        },
        "detail": {"type": "string"},
        "critical": {"type": "boolean"},
    },
    optional=("detail", "critical"),
)
component(
    "Readiness",
    {
        "status": {"enum": ["ok", "unavailable"]},
        "checks": {"type": "object", "additionalProperties": ref("ReadinessCheck")},
        "detail": {"type": "string", "description": "without a read key: how to see more"},
    },
    optional=("detail",),
)

# -- heartbeats and runs ------------------------------------------------------------------------

SERVICE_STATE: dict[str, Any] = {"enum": ["new", "up", "late", "down", "paused"]}
HEARTBEAT_STATUS: dict[str, Any] = {"enum": ["ok", "start", "success", "fail"]}
component(
    "HeartbeatAccepted",
    {
        "id": ID,
        "service": schemas.SLUG,
        "status": HEARTBEAT_STATUS,
        "received_at": INSTANT,
        "service_state": {**SERVICE_STATE, "description": "the service's state after it"},
        "message_truncated": {"type": "boolean"},
    },
    description="A heartbeat committed to the database.",
)
component(
    "BatchItemError",
    {
        "status": {"type": "integer"},
        "title": {"type": "string"},
        "detail": {"type": "string"},
        "field": {"type": "string"},
    },
    optional=("field",),
)
component(
    "BatchItemResult",
    {
        "index": {"type": "integer", "minimum": 0},
        "ok": {"type": "boolean"},
        "heartbeat": {**ref("HeartbeatAccepted"), "description": "set when ok"},
        "error": {**ref("BatchItemError"), "description": "set when not ok"},
    },
    optional=("heartbeat", "error"),
)
component(
    "BatchResult",
    {
        "accepted": {"type": "integer", "minimum": 0},
        "rejected": {"type": "integer", "minimum": 0},
        "results": {"type": "array", "items": ref("BatchItemResult")},
    },
)
component(
    "Heartbeat",
    {
        "id": ID,
        "service": schemas.SLUG,
        "status": HEARTBEAT_STATUS,
        "run_id": NULLABLE_STRING,
        "exit_code": NULLABLE_INTEGER,
        "message": NULLABLE_STRING,
        "message_truncated": {"type": "boolean"},
        "source": {**NULLABLE_STRING, "description": "client address or agent id"},
        "received_at": INSTANT,
    },
)
component(
    "Run",
    {
        "id": ID,
        "service": schemas.SLUG,
        "run_id": NULLABLE_STRING,
        "status": {"enum": ["running", "succeeded", "failed"]},
        "started_at": INSTANT,
        "finished_at": NULLABLE_INSTANT,
        "duration": {"type": ["number", "null"], "description": "seconds"},
        "exit_code": NULLABLE_INTEGER,
        "overrun": {"type": "boolean"},
    },
)

# -- services, alerts, teams, maintenance -------------------------------------------------------

SCHEMAS["Expectation"] = schemas.EXPECTATION
component(
    "Service",
    {
        "id": ID,
        "slug": schemas.SLUG,
        "name": {"type": "string"},
        "team": {**NULLABLE_STRING, "description": "the team's slug"},
        "tags": STRINGS,
        "priority": PRIORITY,
        "runbook_url": NULLABLE_STRING,
        "description": {"type": "string"},
        "expectation": ref("Expectation"),
        "grace": {"type": "integer"},
        "max_duration": NULLABLE_INTEGER,
        "state": SERVICE_STATE,
        "last_heartbeat_at": NULLABLE_INSTANT,
        "last_status": {"enum": [*HEARTBEAT_STATUS["enum"], None]},
        "expected_at": NULLABLE_INSTANT,
        "next_due": NULLABLE_INSTANT,
        "muted": {"type": "boolean"},
        "muted_until": NULLABLE_INSTANT,
        "mute_reason": NULLABLE_STRING,
        "paused_at": NULLABLE_INSTANT,
        "created_at": INSTANT,
        "updated_at": INSTANT,
    },
)
component(
    "ServiceBrief",
    {
        "id": ID,
        "slug": schemas.SLUG,
        "name": {"type": "string"},
        "priority": PRIORITY,
        "team_id": NULLABLE_INTEGER,
        "tags": STRINGS,
        "runbook_url": NULLABLE_STRING,
    },
)
component(
    "Alert",
    {
        "id": ID,
        "service": ref("ServiceBrief"),
        "cause": {"enum": ["missed", "failed", "overrun", "agent_offline"]},
        "state": {"enum": ["open", "acknowledged", "resolved"]},
        "priority": PRIORITY,
        "summary": {"type": "string"},
        "details": {"type": "object", "description": "cause-specific facts (exit_code, ...)"},
        "opened_at": INSTANT,
        "acknowledged_at": NULLABLE_INSTANT,
        "acknowledged_by": NULLABLE_STRING,
        "resolved_at": NULLABLE_INSTANT,
        "resolved_by": NULLABLE_STRING,
        "resolution": NULLABLE_STRING,
        "suppressed": {"type": "boolean"},
        "suppressed_reason": NULLABLE_STRING,
        "notify_at": NULLABLE_INSTANT,
        "notified_at": NULLABLE_INSTANT,
    },
)
slugged(
    "Team",
    {
        "description": {"type": "string"},
        "escalation_policy": {**NULLABLE_STRING, "description": "the policy's slug"},
    },
)
component(
    "MaintenanceWindow",
    {
        "id": ID,
        "name": {"type": "string"},
        "reason": {"type": "string"},
        "selector": {
            "type": "object",
            "description": 'one of {"all": true}, {"services": [...]}, {"tags": [...]}, '
            '{"team": slug}',
        },
        "starts_at": INSTANT,
        "ends_at": INSTANT,
        "timezone": {"type": "string"},
        "recurrence": NULLABLE_STRING,
        "duration": NULLABLE_INTEGER,
        "created_at": INSTANT,
        "updated_at": INSTANT,
        "active": {"type": "boolean", "description": "an occurrence is open now"},
        "current_occurrence_ends_at": NULLABLE_INSTANT,
    },
    optional=("active", "current_occurrence_ends_at"),
)

# -- alert delivery -------------------------------------------------------------------------

slugged(
    "Schedule",
    {
        "timezone": {"type": "string"},
        "weekly": {"type": "array", "items": schemas.WEEKLY_RANGE},
    },
)
slugged(
    "EscalationPolicy",
    {
        "levels": {"type": "array", "items": schemas.ESCALATION_LEVEL},
        "repeat_every": NULLABLE_INTEGER,
        "max_reminders": {"type": "integer"},
    },
)
slugged(
    "Target",
    {
        "notifier": {"type": "string"},
        "config": {
            "type": "object",
            "description": "secrets (writeOnly properties of the notifier's schema) read "
            "back as ********",
        },
        "team": NULLABLE_STRING,
        "service": NULLABLE_STRING,
        "min_priority": PRIORITY,
        "period": {"enum": ["always", "working_hours", "off_hours"]},
        "schedule": NULLABLE_STRING,
        "enabled": {"type": "boolean"},
    },
)
component(
    "TargetTestResult",
    {
        "target": schemas.SLUG,
        "notifier": {"type": "string"},
        "ok": {"type": "boolean"},
        "retryable": {
            "type": "boolean",
            "description": "whether the delivery service would try such an error again",
        },
        "error": NULLABLE_STRING,
        "response_code": NULLABLE_INTEGER,
        "duration_ms": {"type": "number"},
    },
)
component(
    "TargetCheck",
    {"status": {"enum": ["ok", "degraded", "down"]}, "detail": {"type": "string"}},
)
component(
    "Delivery",
    {
        "id": ID,
        "alert_id": ID,
        "target": {**NULLABLE_STRING, "description": "the target's slug (null: deleted)"},
        "kind": {"type": "string", "description": "opened, reminder, escalated, ..."},
        "level": {"type": "integer"},
        "status": {"type": "string", "description": "pending, sent, failed, ..."},
        "attempts": {"type": "integer"},
        "next_attempt_at": NULLABLE_INSTANT,
        "last_error": NULLABLE_STRING,
        "response_code": NULLABLE_INTEGER,
        "created_at": INSTANT,
        "updated_at": INSTANT,
        "sent_at": NULLABLE_INSTANT,
    },
)
component("Redriven", {"redriven": {"type": "integer", "minimum": 0}})

# -- keys and audit ---------------------------------------------------------------------------

_KEY_FIELDS: dict[str, Any] = {
    "id": ID,
    "key_id": {"type": "string", "description": "public; the actor key:<key_id> in the audit"},
    "name": {"type": "string"},
    "scopes": {
        "type": "array",
        "items": {"enum": ["read", "write", "admin", "heartbeat", "agent"]},
    },
    "created_at": INSTANT,
    "created_by": NULLABLE_STRING,
    "expires_at": NULLABLE_INSTANT,
    "revoked_at": NULLABLE_INSTANT,
    "last_used_at": NULLABLE_INSTANT,
}
component("ApiKey", _KEY_FIELDS)
component(
    "ApiKeyCreated",
    {**_KEY_FIELDS, "token": {"type": "string", "description": "shown once, never again"}},
)
component(
    "AuditEntry",
    {
        "id": ID,
        "at": INSTANT,
        "actor": {"type": "string"},
        "action": {"type": "string"},
        "resource_type": {"type": "string"},
        "resource_id": NULLABLE_STRING,
        "request_id": NULLABLE_STRING,
        "before": {"description": "the resource before (one entry only, not in lists)"},
        "after": {"description": "the resource after (one entry only, not in lists)"},
    },
    optional=("before", "after"),
)

# -- agents and executions --------------------------------------------------------------------

component(
    "Agent",
    {
        "id": {"type": "string", "description": "the agent's stable id (a UUID)"},
        "hostname": {"type": "string"},
        "version": {"type": "string"},
        "os": {"type": "string"},
        "arch": {"type": "string"},
        "labels": {"type": "object", "additionalProperties": {"type": "string"}},
        "allowlist": {"type": "object", "description": "the advertised allowlist summary"},
        "capabilities": STRINGS,
        "paused": {"type": "boolean", "description": "the agent's kill switch is on"},
        "paused_reason": NULLABLE_STRING,
        "containment": {
            "enum": [*CONTAINMENTS, None],
            "description": "how the agent ends every process a script starts; null: not said "
            "(older agents)",
        },
        "max_concurrent_executions": {
            **NULLABLE_INTEGER,
            "description": "how many executions the agent runs at once, as it advertises it: the "
            "server never has more sent and unfinished; null: not said (older agents), 16 assumed",
        },
        "key_id": {
            **NULLABLE_STRING,
            "description": "the API key the agent id belongs to: a Hello with the id from any "
            "other key is refused (null: registered before ids were bound, and no key known "
            "yet: its next Hello binds it)",
        },
        "revoked_at": {
            **NULLABLE_INSTANT,
            "description": "set: an admin revoked the agent; it may not connect until re-assigned",
        },
        "status": {"enum": ["online", "offline"]},
        "session_id": NULLABLE_STRING,
        "connected_at": NULLABLE_INSTANT,
        "last_seen": NULLABLE_INSTANT,
        "offline_since": NULLABLE_INSTANT,
        "service": {
            **NULLABLE_STRING,
            "description": "slug of the service that carries the agent's agent_offline alerts",
        },
        "created_at": INSTANT,
        "updated_at": INSTANT,
    },
)
_EXECUTION_FIELDS: dict[str, Any] = {
    "id": {"type": "string", "description": "the execution id (a UUID)"},
    "agent_id": {"type": "string"},
    "script": {"type": "string"},
    "args": STRINGS,
    "env": {
        "type": "object",
        "additionalProperties": {"const": "********"},
        "description": "the names set; values are never returned",
    },
    "timeout_seconds": NULLABLE_INTEGER,
    "expected_sha256": {"type": "string"},
    "requested_by": {"type": "string"},
    "state": {"enum": list(STATES)},
    "reason": {**NULLABLE_STRING, "description": "reason code (final states)"},
    "detail": NULLABLE_STRING,
    "exit_code": NULLABLE_INTEGER,
    "signal": NULLABLE_INTEGER,
    "output_chunks": {
        **NULLABLE_INTEGER,
        "description": "output chunks the agent says it sent (final states)",
    },
    "output_truncated": {
        "type": "boolean",
        "description": "output was cut: by the agent's cap, or the server dropped chunks "
        "past MEDIC_AGENT_MAX_OUTPUT_BYTES",
    },
    "output_bytes": {"type": "integer", "description": "bytes of output stored"},
    "duration_ms": NULLABLE_INTEGER,
    "containment": {
        "enum": [*CONTAINMENTS, None],
        "description": "how the agent ended the script's processes (final states of "
        "executions that ran; null: not said)",
    },
    "sent_count": {"type": "integer"},
    "last_sent_at": {
        **NULLABLE_INSTANT,
        "description": "when the last Execute went out; null while it is not at the agent: "
        "never sent, or handed back by it (too_many_running)",
    },
    "capacity_refusals": {
        "type": "integer",
        "description": "times the agent refused it too_many_running; each time it went back "
        "to the queue (at most MEDIC_AGENT_BUSY_RETRIES times)",
    },
    "send_after": {
        **NULLABLE_INSTANT,
        "description": "handed back by the agent: not sent again before this instant",
    },
    "cancel_requested_at": NULLABLE_INSTANT,
    "created_at": INSTANT,
    "updated_at": INSTANT,
    "finished_at": NULLABLE_INSTANT,
}
component("Execution", _EXECUTION_FIELDS)
component(
    "ExecutionCreated",
    {
        **_EXECUTION_FIELDS,
        "delivery": {
            "enum": ["sent", "queued"],
            "description": "sent: on the agent's stream now; queued: sent when it connects",
        },
    },
)
component(
    "ExecutionOutput",
    {
        "encoding": {"enum": ["text", "base64"]},
        "stdout": {"type": "string"},
        "stderr": {"type": "string"},
        "chunks_received": {"type": "integer"},
    },
)
component(
    "ExecutionWithOutput",
    {
        **_EXECUTION_FIELDS,
        "output_complete": {
            "type": "boolean",
            "description": "final, and every chunk the agent sent is stored (false when "
            "chunks were lost on a broken stream or dropped past the output cap)",
        },
        "output": ref("ExecutionOutput"),
    },
)

# -- playbooks ----------------------------------------------------------------------------------

_PLAYBOOK_FIELDS: dict[str, Any] = {
    "id": ID,
    "slug": schemas.SLUG,
    "name": {"type": "string"},
    "description": {"type": "string"},
    "current_version": {"type": "integer", "minimum": 1},
    "created_at": INSTANT,
    "updated_at": INSTANT,
}
DIGEST: dict[str, Any] = {
    "type": "string",
    "pattern": "^[0-9a-f]{64}$",
    "description": "SHA-256 of the definition's canonical JSON",
}
DEFINITION: dict[str, Any] = {
    "type": "object",
    "description": "the definition as saved (the PlaybookIn schema)",
}
component("PlaybookSummary", _PLAYBOOK_FIELDS)
component("Playbook", {**_PLAYBOOK_FIELDS, "digest": DIGEST, "definition": DEFINITION})
_VERSION_FIELDS: dict[str, Any] = {
    "version": {"type": "integer", "minimum": 1},
    "digest": DIGEST,
    "created_at": INSTANT,
    "created_by": {"type": "string", "description": "the actor that saved it"},
}
component(
    "PlaybookWebhookSecret",
    {
        "playbook": schemas.SLUG,
        "secret": {
            "type": "string",
            "description": "the inbound webhook's HMAC-SHA256 key: shown only now, stored "
            "encrypted; the previous one stopped working",
        },
        "rotated_at": INSTANT,
    },
)
component("PlaybookVersionSummary", _VERSION_FIELDS)
component("PlaybookVersion", {"slug": schemas.SLUG, **_VERSION_FIELDS, "definition": DEFINITION})
_PLAYBOOK_WARNINGS = {
    "type": "array",
    "items": {"type": "string"},
    "description": "what a step type's review found worth saying without refusing the save "
    "(e.g. a script step's agents chosen by labels: their allowlists are checked when it runs)",
}
component(
    "PlaybookApplied",
    {
        "playbook": ref("PlaybookSummary"),
        "version": {"type": "integer", "minimum": 1, "description": "the current version"},
        "change": {
            "enum": ["created", "updated", "unchanged"],
            "description": "unchanged: the definition is the current version's; no version made",
        },
        "warnings": _PLAYBOOK_WARNINGS,
    },
)
component("PlaybookValid", {"valid": {"const": True}, "warnings": _PLAYBOOK_WARNINGS})
component(
    "StepType",
    {
        "name": {"type": "string"},
        "description": {"type": "string"},
        "plugin": {"type": "string", "description": "the plugin that offers it"},
        "params_schema": {"type": "object", "description": "JSON Schema of a step's params"},
    },
)
component("StepTypeList", {"items": {"type": "array", "items": ref("StepType")}})

# -- requests and problems, named too ---------------------------------------------------------

SCHEMAS["Problem"] = schemas.PROBLEM
SCHEMAS["HeartbeatIn"] = schemas.HEARTBEAT
OPENAPI_DOCUMENT: dict[str, Any] = {
    "type": "object",
    "properties": {
        "openapi": {"type": "string"},
        "info": {"type": "object"},
        "paths": {"type": "object"},
        "components": {"type": "object"},
    },
    "required": ["openapi", "info", "paths", "components"],
    "description": "an OpenAPI 3.1 document",
}
SCHEMAS["OpenApiDocument"] = OPENAPI_DOCUMENT

# -- playbook runs (executions of playbooks) ----------------------------------------------------

_RUN_FIELDS: dict[str, Any] = {
    "id": ID,
    "playbook": schemas.SLUG,
    "version": {"type": "integer", "minimum": 1, "description": "the pinned playbook version"},
    "trigger": {"enum": ["manual", "alert", "webhook"]},
    "service_id": NULLABLE_INTEGER,
    "alert_id": NULLABLE_INTEGER,
    "variables": {"type": "object", "description": "the run's variables (defaults + given)"},
    "state": {"enum": list(PLAYBOOK_RUN_STATES)},
    "step_index": {"type": "integer", "minimum": 0, "description": "the current step"},
    "cancel_requested": {"type": "boolean"},
    "next_at": {
        **NULLABLE_INSTANT,
        "description": "when the engine looks at the run again (null once it ended)",
    },
    "reason": {
        **NULLABLE_STRING,
        "description": "why it ended: step_failed, step_timed_out, outcome_unknown, "
        "step_type_not_runnable, too_many_step_runs, cancelled",
    },
    "detail": NULLABLE_STRING,
    "created_at": INSTANT,
    "updated_at": INSTANT,
    "finished_at": NULLABLE_INSTANT,
    "created_by": {"type": "string", "description": "the actor that started it"},
}
component(
    "PlaybookStepRun",
    {
        "id": ID,
        "index": {"type": "integer", "minimum": 0},
        "name": {"type": "string"},
        "type": {"type": "string"},
        "attempt": {"type": "integer", "minimum": 1},
        "state": {"enum": list(PLAYBOOK_STEP_STATES)},
        "started_at": INSTANT,
        "finished_at": NULLABLE_INSTANT,
        "output": {
            "description": "the step's output (JSON, bounded by "
            "MEDIC_PLAYBOOK_STEP_OUTPUT_BYTES), or null"
        },
        "error": NULLABLE_STRING,
    },
)
component("PlaybookRunSummary", _RUN_FIELDS)
component(
    "PlaybookRun",
    {**_RUN_FIELDS, "steps": {"type": "array", "items": ref("PlaybookStepRun")}},
)


# -- secrets ------------------------------------------------------------------------------------

component(
    "Secret",
    {
        "name": {"type": "string", "pattern": SECRET_NAME_PATTERN},
        "created_at": INSTANT,
        "updated_at": INSTANT,
        "updated_by": {"type": "string", "description": "the actor that set it last"},
    },
    description="A secret's name and metadata: its value is never answered.",
)
