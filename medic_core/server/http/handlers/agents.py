"""Agents: list and get (presence, identity and advertised allowlist); re-assign an agent to
another API key, or revoke it (``medic_core/agent/enrollment.py``)."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from medic_core.agent.limits import CONTAINMENTS
from medic_core.server.http import schemas
from medic_core.server.http.context import (
    actor,
    checked_body,
    json_response,
    medic,
    page_response,
    q_int,
    q_str,
)
from medic_core.server.http.routing import QueryParam, RouteTable

routes = RouteTable()
TAG = "agents"

AGENT: dict[str, Any] = {
    "type": "object",
    "properties": {
        "id": {"type": "string", "description": "the agent's stable id (a UUID)"},
        "hostname": {"type": "string"},
        "version": {"type": "string"},
        "os": {"type": "string"},
        "arch": {"type": "string"},
        "labels": {"type": "object", "additionalProperties": {"type": "string"}},
        "allowlist": {"type": "object", "description": "the advertised allowlist summary"},
        "capabilities": {"type": "array", "items": {"type": "string"}},
        "paused": {"type": "boolean", "description": "the agent's kill switch is on"},
        "paused_reason": {"type": ["string", "null"]},
        "containment": {
            "enum": [*CONTAINMENTS, None],
            "description": "how the agent ends every process a script starts; null: not said "
            "(older agents)",
        },
        "key_id": {
            "type": ["string", "null"],
            "description": "the API key the agent id belongs to: a Hello with the id from any "
            "other key is refused (null: registered before ids were bound, and no key known "
            "yet: its next Hello binds it)",
        },
        "revoked_at": {
            "oneOf": [schemas.INSTANT, {"type": "null"}],
            "description": "set: an admin revoked the agent; it may not connect until re-assigned",
        },
        "status": {"enum": ["online", "offline"]},
        "session_id": {"type": ["string", "null"]},
        "connected_at": {"oneOf": [schemas.INSTANT, {"type": "null"}]},
        "last_seen": {"oneOf": [schemas.INSTANT, {"type": "null"}]},
        "offline_since": {"oneOf": [schemas.INSTANT, {"type": "null"}]},
        "service": {
            "type": ["string", "null"],
            "description": "slug of the service that carries the agent's agent_offline alerts",
        },
        "created_at": schemas.INSTANT,
        "updated_at": schemas.INSTANT,
    },
}


@routes.get(
    "/api/v1/agents",
    scope="read",
    summary="List agents in registration order (filters: status, label=key=value or key, key).",
    tag=TAG,
    query=(
        QueryParam("status", {"enum": ["online", "offline"]}),
        QueryParam(
            "label",
            {"type": "string", "examples": ["env=prod"]},
            "key=value: agents with that label; key alone: agents that have the key",
        ),
        QueryParam("key", {"type": "string", "maxLength": 32}, "agents bound to this key id"),
        QueryParam("cursor", schemas.CURSOR),
        QueryParam("limit", schemas.LIMIT),
    ),
    response=schemas.page_of(AGENT),
)
async def list_agents(request: web.Request) -> web.Response:
    page = await medic(request).agents.list(
        status=q_str(request, "status"),
        label=q_str(request, "label"),
        key=q_str(request, "key"),
        cursor=q_str(request, "cursor"),
        limit=q_int(request, "limit"),
    )
    return page_response(page)


@routes.get(
    "/api/v1/agents/{id}", scope="read", summary="One agent, by its id.", tag=TAG, response=AGENT
)
async def get_agent(request: web.Request) -> web.Response:
    return json_response(await medic(request).agents.get(request.match_info["id"]))


REASSIGN: dict[str, Any] = {
    "type": "object",
    "required": ["key_id"],
    "properties": {
        "key_id": {
            "type": "string",
            "minLength": 1,
            "maxLength": 32,
            "description": "an active API key with the agent scope (its key id)",
        }
    },
    "additionalProperties": False,
}


@routes.post(
    "/api/v1/agents/{id}/reassign",
    scope="admin",
    summary="Bind the agent to another API key (key rotation) and lift a revocation: a stream "
    "open with another key ends; only this key may connect as the agent from now on.",
    tag=TAG,
    body=REASSIGN,
    response=AGENT,
)
async def reassign_agent(request: web.Request) -> web.Response:
    agents = medic(request).agents
    agent_id = request.match_info["id"]
    key_id = checked_body(request)["key_id"]
    await agents.enrollment.reassign(agent_id, key_id, actor=actor(request))
    return json_response(await agents.get(agent_id))


@routes.post(
    "/api/v1/agents/{id}/revoke",
    scope="admin",
    summary="Revoke the agent: its stream ends, every Hello with its id is refused until it is "
    "re-assigned, its unfinished executions fail (agent_revoked). 409 when already revoked.",
    tag=TAG,
    response=AGENT,
)
async def revoke_agent(request: web.Request) -> web.Response:
    agents = medic(request).agents
    agent_id = request.match_info["id"]
    await agents.enrollment.revoke(agent_id, actor=actor(request))
    return json_response(await agents.get(agent_id))
