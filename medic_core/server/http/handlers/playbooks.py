"""Playbooks (definitions and versions) and the step types they may use.

The definition body is the one body ``check_body`` does not check: its schema is composed at
start-up from the loaded step types (``Route.composed_body``), and the domain reports every
error at once (the problem's ``errors``), headed by the error the schema's validator ranks
first -- the same detail and field a declared body schema would give.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from medic_core.errors import BadRequest
from medic_core.server.http import components, schemas
from medic_core.server.http.context import (
    actor,
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
DEFINITION = "PlaybookIn"
_YAML = ("application/yaml", "application/x-yaml", "text/yaml")
_PAGING = (QueryParam("cursor", schemas.CURSOR), QueryParam("limit", schemas.LIMIT))
_VERSION: dict[str, Any] = {"type": "integer", "minimum": 1, "maximum": 2**31 - 1}


async def _definition(request: web.Request) -> dict[str, Any]:
    """The body as a definition document (JSON or YAML by Content-Type), not yet checked."""
    if request.content_type in _YAML:
        fmt = "yaml"
    elif request.content_type == "application/json":
        fmt = "json"
    else:
        raise BadRequest(
            "send the playbook as JSON (Content-Type: application/json) or YAML "
            f"(Content-Type: application/yaml); got {request.content_type or 'none'}"
        )
    document: dict[str, Any] = medic(request).playbooks.validator.parse(await request.read(), fmt)
    return document


@routes.get(
    "/api/v1/playbooks",
    scope="read",
    summary="List playbooks, oldest first, cursor-paged.",
    tag=TAG,
    query=_PAGING,
    operation_id="listPlaybooks",
    response=components.page("PlaybookSummary"),
)
async def list_playbooks(request: web.Request) -> web.Response:
    page = await medic(request).playbooks.list(
        cursor=q_str(request, "cursor"), limit=q_int(request, "limit")
    )
    return page_response(page)


@routes.put(
    "/api/v1/playbooks/{slug}",
    scope="write",
    summary="Apply a playbook definition: create it, or save a new version if it changed "
    "(201 created, 200 updated or unchanged).",
    tag=TAG,
    composed_body=DEFINITION,
    also=(201,),
    operation_id="applyPlaybook",
    response=components.ref("PlaybookApplied"),
)
async def apply_playbook(request: web.Request) -> web.Response:
    applied = await medic(request).playbooks.apply(
        await _definition(request), actor=actor(request), slug=request.match_info["slug"]
    )
    return json_response(applied.document(), status=201 if applied.change == "created" else 200)


@routes.post(
    "/api/v1/playbooks:validate",
    scope="read",
    summary="Check a playbook definition without saving it; 422 lists every error.",
    tag=TAG,
    composed_body=DEFINITION,
    operation_id="validatePlaybook",
    response=components.ref("PlaybookValid"),
)
async def validate_playbook(request: web.Request) -> web.Response:
    warnings = await medic(request).playbooks.validate(await _definition(request))
    return json_response({"valid": True, "warnings": warnings})


@routes.get(
    "/api/v1/playbooks/{slug}",
    scope="read",
    summary="One playbook with its current version's definition.",
    tag=TAG,
    operation_id="getPlaybook",
    response=components.ref("Playbook"),
)
async def get_playbook(request: web.Request) -> web.Response:
    return json_response(await medic(request).playbooks.get(request.match_info["slug"]))


@routes.delete(
    "/api/v1/playbooks/{slug}",
    scope="write",
    summary="Delete a playbook (its versions are kept for the executions that pinned them).",
    tag=TAG,
    status=204,
    operation_id="deletePlaybook",
)
async def delete_playbook(request: web.Request) -> web.Response:
    await medic(request).playbooks.delete(request.match_info["slug"], actor=actor(request))
    return web.Response(status=204)


@routes.get(
    "/api/v1/playbooks/{slug}/versions",
    scope="read",
    summary="A playbook's versions, newest first, cursor-paged (without their definitions).",
    tag=TAG,
    query=_PAGING,
    operation_id="listPlaybookVersions",
    response=components.page("PlaybookVersionSummary"),
)
async def list_versions(request: web.Request) -> web.Response:
    page = await medic(request).playbooks.versions(
        request.match_info["slug"], cursor=q_str(request, "cursor"), limit=q_int(request, "limit")
    )
    return page_response(page)


@routes.get(
    "/api/v1/playbooks/{slug}/versions/{version}",
    scope="read",
    summary="One version of a playbook, with its definition.",
    tag=TAG,
    path_params={"version": _VERSION},
    operation_id="getPlaybookVersion",
    response=components.ref("PlaybookVersion"),
)
async def get_version(request: web.Request) -> web.Response:
    version = await medic(request).playbooks.get_version(
        request.match_info["slug"], path_int(request, "version")
    )
    return json_response(version)


@routes.get(
    "/api/v1/step-types",
    scope="read",
    summary="The step types playbooks may use (from the loaded plugins), with their params "
    "schemas.",
    tag=TAG,
    operation_id="listStepTypes",
    response=components.ref("StepTypeList"),
)
async def list_step_types(request: web.Request) -> web.Response:
    return json_response({"items": medic(request).playbooks.validator.step_types.documents()})
