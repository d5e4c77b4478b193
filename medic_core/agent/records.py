"""How an agent row reads outside the database: the body the API and events carry
(``agent_to_dict``), and the part the audit log records (``audit_summary``)."""

from __future__ import annotations

from typing import Any

from medic_core.clock import isoformat
from medic_core.store.models import Agent


def agent_to_dict(agent: Agent, service_slug: str | None = None) -> dict[str, Any]:
    return {
        "id": agent.agent_id,
        "hostname": agent.hostname,
        "version": agent.version,
        "os": agent.os,
        "arch": agent.arch,
        "labels": dict(agent.labels or {}),
        "allowlist": agent.allowlist or {},
        "capabilities": list(agent.capabilities or []),
        "paused": agent.paused,
        "paused_reason": agent.paused_reason,
        "containment": agent.containment,
        "max_concurrent_executions": agent.max_concurrent,
        "key_id": agent.key_id,
        "revoked_at": isoformat(agent.revoked_at),
        "status": agent.status,
        "session_id": agent.session_id,
        "connected_at": isoformat(agent.connected_at),
        "last_seen": isoformat(agent.last_seen),
        "offline_since": isoformat(agent.offline_since),
        "service": service_slug,
        "created_at": isoformat(agent.created_at),
        "updated_at": isoformat(agent.updated_at),
    }


def audit_summary(agent: Agent) -> dict[str, Any]:
    """The part of an agent the audit log records: who it is and what it may run."""
    return {
        "id": agent.agent_id,
        "hostname": agent.hostname,
        "version": agent.version,
        "allowlist_sha256": (agent.allowlist or {}).get("sha256", ""),
        "scripts": sorted(s.get("name", "") for s in (agent.allowlist or {}).get("scripts", [])),
        "paused": agent.paused,
        "paused_reason": agent.paused_reason,
        "containment": agent.containment,
        "key_id": agent.key_id,
    }
