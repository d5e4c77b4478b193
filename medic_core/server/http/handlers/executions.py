"""Executions: run an allow-listed script on an agent, follow it, read its output, cancel it."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from medic_core.agent.execution_requests import MAX_ARGS, MAX_ENV, MAX_TIMEOUT
from medic_core.agent.execution_values import STATES
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
TAG = "executions"

EXECUTION_CREATE: dict[str, Any] = {
    "type": "object",
    "required": ["script"],
    "properties": {
        "script": {
            "type": "string",
            "minLength": 1,
            "maxLength": 64,
            "description": "the name of an entry of the agent's allowlist",
        },
        "args": {
            "type": "array",
            "items": {"type": "string", "description": "at most 4096 bytes"},
            "maxItems": MAX_ARGS,
            "description": "the argument vector (never through a shell)",
        },
        "env": {
            "type": "object",
            "additionalProperties": {"type": "string"},
            "maxProperties": MAX_ENV,
            "description": "variables the entry lists; values are stored until the agent "
            "answers and never shown again",
        },
        "timeout_seconds": {
            "type": ["integer", "null"],
            "minimum": 1,
            "maximum": MAX_TIMEOUT,
            "description": "null: the allowlist entry's timeout; more than it is refused",
        },
    },
    "additionalProperties": False,
}

_LIST_QUERY = (
    QueryParam("state", {"enum": list(STATES)}),
    QueryParam("cursor", schemas.CURSOR),
    QueryParam("limit", schemas.LIMIT),
)


@routes.post(
    "/api/v1/agents/{id}/executions",
    scope="admin",
    summary="Run an allow-listed script on an agent (checked against its advertised "
    "allowlist first: 422 with `reason` when refused, 409 when the agent is paused).",
    tag=TAG,
    body=EXECUTION_CREATE,
    status=201,
    operation_id="createExecution",
    response=components.ref("ExecutionCreated"),
)
async def create_execution(request: web.Request) -> web.Response:
    data = checked_body(request)
    body = await medic(request).agents.executions.execute(
        request.match_info["id"],
        data.get("script"),
        data.get("args"),
        data.get("env"),
        data.get("timeout_seconds"),
        actor=actor(request),
    )
    return json_response(body, status=201)


@routes.get(
    "/api/v1/agents/{id}/executions",
    scope="read",
    summary="One agent's executions, newest first (filter: state).",
    tag=TAG,
    query=_LIST_QUERY,
    operation_id="listAgentExecutions",
    response=components.page("Execution"),
)
async def list_agent_executions(request: web.Request) -> web.Response:
    page = await medic(request).agents.executions.list(
        agent=request.match_info["id"],
        state=q_str(request, "state"),
        cursor=q_str(request, "cursor"),
        limit=q_int(request, "limit"),
        agent_must_exist=True,
    )
    return page_response(page)


@routes.get(
    "/api/v1/executions",
    scope="read",
    summary="Executions, newest first (filters: agent, state).",
    tag=TAG,
    query=(QueryParam("agent", {"type": "string"}, "an agent id"), *_LIST_QUERY),
    operation_id="listExecutions",
    response=components.page("Execution"),
)
async def list_executions(request: web.Request) -> web.Response:
    page = await medic(request).agents.executions.list(
        agent=q_str(request, "agent"),
        state=q_str(request, "state"),
        cursor=q_str(request, "cursor"),
        limit=q_int(request, "limit"),
    )
    return page_response(page)


@routes.get(
    "/api/v1/executions/{id}",
    scope="read",
    summary="One execution with its output per stream (output=raw: base64).",
    tag=TAG,
    query=(
        QueryParam(
            "output",
            {"enum": ["text", "raw"], "default": "text"},
            "text: UTF-8 with invalid bytes replaced; raw: the bytes, base64",
        ),
    ),
    operation_id="getExecution",
    response=components.ref("ExecutionWithOutput"),
)
async def get_execution(request: web.Request) -> web.Response:
    body = await medic(request).agents.executions.get(
        request.match_info["id"], output=q_str(request, "output") or "text"
    )
    return json_response(body)


@routes.post(
    "/api/v1/executions/{id}/cancel",
    scope="admin",
    summary="Cancel an execution: at once if it was never sent, else through the agent "
    "(409 once it has ended).",
    tag=TAG,
    operation_id="cancelExecution",
    response=components.ref("Execution"),
)
async def cancel_execution(request: web.Request) -> web.Response:
    body = await medic(request).agents.executions.cancel(
        request.match_info["id"], actor=actor(request)
    )
    return json_response(body)
