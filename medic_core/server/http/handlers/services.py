"""Services: CRUD, filters, mute/unmute, pause/resume."""

from __future__ import annotations

from aiohttp import web

from medic_core.server.http import components, schemas
from medic_core.server.http.context import (
    actor,
    checked_body,
    json_response,
    medic,
    page_response,
    q_bool,
    q_int,
    q_str,
)
from medic_core.server.http.routing import QueryParam, RouteTable
from medic_core.validation import instant

routes = RouteTable()
TAG = "services"


@routes.get(
    "/api/v1/services",
    scope="read",
    summary="List services (filters: state, team, tag, q, muted), oldest first, cursor-paged.",
    tag=TAG,
    query=(
        QueryParam("state", {"enum": ["new", "up", "late", "down", "paused"]}),
        QueryParam("team", schemas.SLUG),
        QueryParam("tag", schemas.SLUG),
        QueryParam("q", {"type": "string"}, "substring of slug or name"),
        QueryParam("muted", {"type": "boolean"}),
        QueryParam("cursor", schemas.CURSOR),
        QueryParam("limit", schemas.LIMIT),
    ),
    operation_id="listServices",
    response=components.page("Service"),
)
async def list_services(request: web.Request) -> web.Response:
    page = await medic(request).services.list(
        state=q_str(request, "state"),
        team=q_str(request, "team"),
        tag=q_str(request, "tag"),
        q=q_str(request, "q"),
        muted=q_bool(request, "muted"),
        cursor=q_str(request, "cursor"),
        limit=q_int(request, "limit"),
    )
    return page_response(page)


@routes.post(
    "/api/v1/services",
    scope="write",
    summary="Register a service.",
    tag=TAG,
    body=schemas.SERVICE_CREATE,
    status=201,
    operation_id="createService",
    response=components.ref("Service"),
)
async def create_service(request: web.Request) -> web.Response:
    body = await medic(request).services.create(checked_body(request), actor=actor(request))
    return json_response(body, status=201)


@routes.get(
    "/api/v1/services/{slug}",
    scope="read",
    summary="One service.",
    tag=TAG,
    operation_id="getService",
    response=components.ref("Service"),
)
async def get_service(request: web.Request) -> web.Response:
    return json_response(await medic(request).services.get(request.match_info["slug"]))


@routes.patch(
    "/api/v1/services/{slug}",
    scope="write",
    summary="Change a service; a new expectation or grace recomputes its deadline.",
    tag=TAG,
    body=schemas.SERVICE_UPDATE,
    operation_id="updateService",
    response=components.ref("Service"),
)
async def update_service(request: web.Request) -> web.Response:
    body = await medic(request).services.update(
        request.match_info["slug"], checked_body(request), actor=actor(request)
    )
    return json_response(body)


@routes.delete(
    "/api/v1/services/{slug}",
    scope="write",
    summary="Delete a service with its heartbeats, runs and alerts.",
    tag=TAG,
    status=204,
    operation_id="deleteService",
)
async def delete_service(request: web.Request) -> web.Response:
    await medic(request).services.delete(request.match_info["slug"], actor=actor(request))
    return web.Response(status=204)


@routes.post(
    "/api/v1/services/{slug}/mute",
    scope="write",
    summary="Mute: alerts are recorded but not notified until `until` (or unmute).",
    tag=TAG,
    body=schemas.MUTE,
    body_required=False,
    operation_id="muteService",
    response=components.ref("Service"),
)
async def mute(request: web.Request) -> web.Response:
    data = checked_body(request)
    until = instant(data["until"], "until") if data.get("until") is not None else None
    muted = await medic(request).services.mute(
        request.match_info["slug"], until=until, reason=data.get("reason"), actor=actor(request)
    )
    return json_response(muted)


@routes.post(
    "/api/v1/services/{slug}/unmute",
    scope="write",
    summary="Unmute; unresolved alerts held by the mute are notified now.",
    tag=TAG,
    operation_id="unmuteService",
    response=components.ref("Service"),
)
async def unmute(request: web.Request) -> web.Response:
    return json_response(
        await medic(request).services.unmute(request.match_info["slug"], actor=actor(request))
    )


@routes.post(
    "/api/v1/services/{slug}/pause",
    scope="write",
    summary="Pause monitoring (heartbeats are still recorded).",
    tag=TAG,
    operation_id="pauseService",
    response=components.ref("Service"),
)
async def pause(request: web.Request) -> web.Response:
    return json_response(
        await medic(request).services.pause(request.match_info["slug"], actor=actor(request))
    )


@routes.post(
    "/api/v1/services/{slug}/resume",
    scope="write",
    summary="Resume monitoring with a fresh deadline from now.",
    tag=TAG,
    operation_id="resumeService",
    response=components.ref("Service"),
)
async def resume(request: web.Request) -> web.Response:
    return json_response(
        await medic(request).services.resume(request.match_info["slug"], actor=actor(request))
    )
