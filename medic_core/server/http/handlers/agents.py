"""Agents: list and get (presence, identity and advertised allowlist)."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from medic_core.server.http import schemas
from medic_core.server.http.context import json_response, medic, page_response, q_int, q_str
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
    summary="List agents in registration order (filters: status, label=key=value or key).",
    tag=TAG,
    query=(
        QueryParam("status", {"enum": ["online", "offline"]}),
        QueryParam(
            "label",
            {"type": "string", "examples": ["env=prod"]},
            "key=value: agents with that label; key alone: agents that have the key",
        ),
        QueryParam("cursor", schemas.CURSOR),
        QueryParam("limit", schemas.LIMIT),
    ),
    response=schemas.page_of(AGENT),
)
async def list_agents(request: web.Request) -> web.Response:
    page = await medic(request).agents.list(
        status=q_str(request, "status"),
        label=q_str(request, "label"),
        cursor=q_str(request, "cursor"),
        limit=q_int(request, "limit"),
    )
    return page_response(page)


@routes.get(
    "/api/v1/agents/{id}", scope="read", summary="One agent, by its id.", tag=TAG, response=AGENT
)
async def get_agent(request: web.Request) -> web.Response:
    return json_response(await medic(request).agents.get(request.match_info["id"]))
