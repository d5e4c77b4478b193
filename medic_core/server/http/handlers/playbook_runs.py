"""Playbook runs: start one by hand, list and read them, cancel one, rerun a failed one.

Runs are advanced by the engine in the background (``medic_core/playbooks/engine.py``), never in
the request: starting answers 201 with the stored, ``pending`` run at once.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from medic_core.playbooks.executions import STATES
from medic_core.server.http import components, schemas
from medic_core.server.http.context import (
    actor,
    checked_body,
    json_response,
    medic,
    page_response,
    path_int,
    q_int,
    q_str,
)
from medic_core.server.http.routing import QueryParam, RouteTable

routes = RouteTable()
TAG = "playbooks"

RUN_CREATE: dict[str, Any] = {
    "type": "object",
    "properties": {
        "variables": {
            "type": "object",
            "maxProperties": 50,
            "additionalProperties": {"type": ["string", "integer", "number", "boolean"]},
            "description": "values of the playbook's variables (checked against their types; "
            "unknown names are refused)",
        },
    },
    "additionalProperties": False,
}


@routes.post(
    "/api/v1/playbooks/{slug}/runs",
    scope="write",
    summary="Start a run of a playbook's current version (201; 409 when another run of it "
    "is active or a step's type cannot run yet; 422 for variables).",
    tag=TAG,
    body=RUN_CREATE,
    status=201,
    operation_id="startPlaybookRun",
    response=components.ref("PlaybookRun"),
)
async def start_run(request: web.Request) -> web.Response:
    data = checked_body(request)
    run = await medic(request).runs.start(
        request.match_info["slug"], data.get("variables") or {}, actor=actor(request)
    )
    return json_response(run, status=201)


@routes.get(
    "/api/v1/playbook-runs",
    scope="read",
    summary="Playbook runs, newest first (filters: playbook, state), cursor-paged.",
    tag=TAG,
    query=(
        QueryParam("playbook", schemas.SLUG),
        QueryParam("state", {"enum": list(STATES)}),
        QueryParam("cursor", schemas.CURSOR),
        QueryParam("limit", schemas.LIMIT),
    ),
    operation_id="listPlaybookRuns",
    response=components.page("PlaybookRunSummary"),
)
async def list_runs(request: web.Request) -> web.Response:
    page = await medic(request).runs.list(
        playbook=q_str(request, "playbook"),
        state=q_str(request, "state"),
        cursor=q_str(request, "cursor"),
        limit=q_int(request, "limit"),
    )
    return page_response(page)


@routes.get(
    "/api/v1/playbook-runs/{id}",
    scope="read",
    summary="One playbook run with its step runs (every attempt, oldest first).",
    tag=TAG,
    path_params=schemas.ID_PATH,
    operation_id="getPlaybookRun",
    response=components.ref("PlaybookRun"),
)
async def get_run(request: web.Request) -> web.Response:
    return json_response(await medic(request).runs.get(path_int(request, "id")))


@routes.post(
    "/api/v1/playbook-runs/{id}/cancel",
    scope="write",
    summary="Cancel a run: a pending or waiting run ends cancelled at once, a running one "
    "when its step returns (409 once it ended).",
    tag=TAG,
    path_params=schemas.ID_PATH,
    operation_id="cancelPlaybookRun",
    response=components.ref("PlaybookRun"),
)
async def cancel_run(request: web.Request) -> web.Response:
    run = await medic(request).runs.cancel(path_int(request, "id"), actor=actor(request))
    return json_response(run)


RUN_RERUN: dict[str, Any] = {
    "type": "object",
    "properties": {
        "from_step": {
            "type": "string",
            "minLength": 1,
            "maxLength": 64,
            "description": "the name of the step to run again from (default: the step the run "
            "stopped at)",
        },
    },
    "additionalProperties": False,
}


@routes.post(
    "/api/v1/playbook-runs/{id}/rerun",
    scope="write",
    summary="Run a failed or timed-out run again from a step (default: the step it stopped "
    "at), on its pinned version: a new attempt of that step, earlier step runs kept (409 "
    "when the run did not fail, or another run of its playbook is active; 422 for an "
    "unknown step).",
    tag=TAG,
    path_params=schemas.ID_PATH,
    body=RUN_RERUN,
    body_required=False,
    operation_id="rerunPlaybookRun",
    response=components.ref("PlaybookRun"),
)
async def rerun_run(request: web.Request) -> web.Response:
    data = checked_body(request)
    run = await medic(request).runs.rerun(
        path_int(request, "id"), from_step=data.get("from_step"), actor=actor(request)
    )
    return json_response(run)
