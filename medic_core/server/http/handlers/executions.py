"""Executions: run an allow-listed script on an agent, follow it, read its output, cancel it."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from medic_core.agent.execution_requests import MAX_ARGS, MAX_ENV, MAX_TIMEOUT
from medic_core.agent.execution_values import STATES
from medic_core.agent.limits import CONTAINMENTS
from medic_core.server.http import schemas
from medic_core.server.http.context import (
    actor,
    json_body,
    json_response,
    medic,
    page_response,
    q_int,
    q_str,
)
from medic_core.server.http.routing import QueryParam, RouteTable
from medic_core.validation import only_keys

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

_NULLABLE_INSTANT = {"oneOf": [schemas.INSTANT, {"type": "null"}]}
EXECUTION: dict[str, Any] = {
    "type": "object",
    "properties": {
        "id": {"type": "string", "description": "the execution id (a UUID)"},
        "agent_id": {"type": "string"},
        "script": {"type": "string"},
        "args": {"type": "array", "items": {"type": "string"}},
        "env": {
            "type": "object",
            "additionalProperties": {"const": "********"},
            "description": "the names set; values are never returned",
        },
        "timeout_seconds": {"type": ["integer", "null"]},
        "expected_sha256": {"type": "string"},
        "requested_by": {"type": "string"},
        "state": {"enum": list(STATES)},
        "reason": {"type": ["string", "null"], "description": "reason code (final states)"},
        "detail": {"type": ["string", "null"]},
        "exit_code": {"type": ["integer", "null"]},
        "signal": {"type": ["integer", "null"]},
        "output_chunks": {
            "type": ["integer", "null"],
            "description": "output chunks the agent says it sent (final states)",
        },
        "output_truncated": {
            "type": "boolean",
            "description": "output was cut: by the agent's cap, or the server dropped chunks "
            "past MEDIC_AGENT_MAX_OUTPUT_BYTES",
        },
        "output_bytes": {"type": "integer", "description": "bytes of output stored"},
        "duration_ms": {"type": ["integer", "null"]},
        "containment": {
            "enum": [*CONTAINMENTS, None],
            "description": "how the agent ended the script's processes (final states of "
            "executions that ran; null: not said)",
        },
        "sent_count": {"type": "integer"},
        "last_sent_at": {
            **_NULLABLE_INSTANT,
            "description": "when the last Execute went out; null while it is not at the agent: "
            "never sent, or handed back by it (too_many_running)",
        },
        "capacity_refusals": {
            "type": "integer",
            "description": "times the agent refused it too_many_running; each time it went back "
            "to the queue (at most MEDIC_AGENT_BUSY_RETRIES times)",
        },
        "send_after": {
            **_NULLABLE_INSTANT,
            "description": "handed back by the agent: not sent again before this instant",
        },
        "cancel_requested_at": _NULLABLE_INSTANT,
        "created_at": schemas.INSTANT,
        "updated_at": schemas.INSTANT,
        "finished_at": _NULLABLE_INSTANT,
    },
}
EXECUTION_CREATED: dict[str, Any] = {
    "type": "object",
    "properties": {
        **EXECUTION["properties"],
        "delivery": {
            "enum": ["sent", "queued"],
            "description": "sent: on the agent's stream now; queued: sent when it connects",
        },
    },
}
EXECUTION_WITH_OUTPUT: dict[str, Any] = {
    "type": "object",
    "properties": {
        **EXECUTION["properties"],
        "output_complete": {
            "type": "boolean",
            "description": "final, and every chunk the agent sent is stored (false when "
            "chunks were lost on a broken stream or dropped past the output cap)",
        },
        "output": {
            "type": "object",
            "properties": {
                "encoding": {"enum": ["text", "base64"]},
                "stdout": {"type": "string"},
                "stderr": {"type": "string"},
                "chunks_received": {"type": "integer"},
            },
        },
    },
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
    response=EXECUTION_CREATED,
)
async def create_execution(request: web.Request) -> web.Response:
    data = await json_body(request)
    only_keys(data, {"script", "args", "env", "timeout_seconds"}, "execution")
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
    response=schemas.page_of(EXECUTION),
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
    response=schemas.page_of(EXECUTION),
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
    response=EXECUTION_WITH_OUTPUT,
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
    response=EXECUTION,
)
async def cancel_execution(request: web.Request) -> web.Response:
    body = await medic(request).agents.executions.cancel(
        request.match_info["id"], actor=actor(request)
    )
    return json_response(body)
