"""Agents: list and get (presence, identity and advertised allowlist); re-assign an agent to
another API key, or revoke it (``medic_core/agent/enrollment.py``)."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from medic_core.server.http import components, schemas
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
    operation_id="listAgents",
    response=components.page("Agent"),
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
    "/api/v1/agents/{id}",
    scope="read",
    summary="One agent, by its id.",
    tag=TAG,
    operation_id="getAgent",
    response=components.ref("Agent"),
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
    operation_id="reassignAgent",
    response=components.ref("Agent"),
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
    operation_id="revokeAgent",
    response=components.ref("Agent"),
)
async def revoke_agent(request: web.Request) -> web.Response:
    agents = medic(request).agents
    agent_id = request.match_info["id"]
    await agents.enrollment.revoke(agent_id, actor=actor(request))
    return json_response(await agents.get(agent_id))
