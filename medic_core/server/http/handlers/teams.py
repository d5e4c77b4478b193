"""Teams."""

from __future__ import annotations

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
TAG = "teams"


@routes.get(
    "/api/v1/teams",
    scope="read",
    summary="List teams.",
    tag=TAG,
    query=(QueryParam("cursor", schemas.CURSOR), QueryParam("limit", schemas.LIMIT)),
    operation_id="listTeams",
    response=components.page("Team"),
)
async def list_teams(request: web.Request) -> web.Response:
    page = await medic(request).teams.list(
        cursor=q_str(request, "cursor"), limit=q_int(request, "limit")
    )
    return page_response(page)


@routes.post(
    "/api/v1/teams",
    scope="write",
    summary="Create a team.",
    tag=TAG,
    body=schemas.TEAM_CREATE,
    status=201,
    operation_id="createTeam",
    response=components.ref("Team"),
)
async def create_team(request: web.Request) -> web.Response:
    body = await medic(request).teams.create(checked_body(request), actor=actor(request))
    return json_response(body, status=201)


@routes.get(
    "/api/v1/teams/{slug}",
    scope="read",
    summary="One team.",
    tag=TAG,
    operation_id="getTeam",
    response=components.ref("Team"),
)
async def get_team(request: web.Request) -> web.Response:
    return json_response(await medic(request).teams.get(request.match_info["slug"]))


@routes.patch(
    "/api/v1/teams/{slug}",
    scope="write",
    summary="Rename or describe a team.",
    tag=TAG,
    body=schemas.TEAM_UPDATE,
    operation_id="updateTeam",
    response=components.ref("Team"),
)
async def update_team(request: web.Request) -> web.Response:
    body = await medic(request).teams.update(
        request.match_info["slug"], checked_body(request), actor=actor(request)
    )
    return json_response(body)


@routes.delete(
    "/api/v1/teams/{slug}",
    scope="write",
    summary="Delete a team that owns no services.",
    tag=TAG,
    status=204,
    operation_id="deleteTeam",
)
async def delete_team(request: web.Request) -> web.Response:
    await medic(request).teams.delete(request.match_info["slug"], actor=actor(request))
    return web.Response(status=204)
