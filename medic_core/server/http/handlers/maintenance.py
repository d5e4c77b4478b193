"""Maintenance windows."""

from __future__ import annotations

from aiohttp import web

from medic_core.server.http import components, schemas
from medic_core.server.http.context import (
    actor,
    checked_body,
    json_response,
    medic,
    page_response,
    path_int,
    q_bool,
    q_int,
    q_str,
)
from medic_core.server.http.routing import QueryParam, RouteTable

routes = RouteTable()
TAG = "maintenance"


@routes.get(
    "/api/v1/maintenance-windows",
    scope="read",
    summary="List maintenance windows, newest first (active=true: covering now).",
    tag=TAG,
    query=(
        QueryParam("active", {"type": "boolean"}),
        QueryParam("cursor", schemas.CURSOR),
        QueryParam("limit", schemas.LIMIT),
    ),
    operation_id="listMaintenanceWindows",
    response=components.page("MaintenanceWindow"),
)
async def list_windows(request: web.Request) -> web.Response:
    page = await medic(request).maintenance.list(
        active=q_bool(request, "active"),
        cursor=q_str(request, "cursor"),
        limit=q_int(request, "limit"),
    )
    return page_response(page)


@routes.post(
    "/api/v1/maintenance-windows",
    scope="write",
    summary="Create a maintenance window (one-off or recurring).",
    tag=TAG,
    body=schemas.MAINTENANCE,
    status=201,
    operation_id="createMaintenanceWindow",
    response=components.ref("MaintenanceWindow"),
)
async def create_window(request: web.Request) -> web.Response:
    body = await medic(request).maintenance.create(checked_body(request), actor=actor(request))
    return json_response(body, status=201)


@routes.get(
    "/api/v1/maintenance-windows/{id}",
    scope="read",
    summary="One window.",
    tag=TAG,
    path_params=schemas.ID_PATH,
    operation_id="getMaintenanceWindow",
    response=components.ref("MaintenanceWindow"),
)
async def get_window(request: web.Request) -> web.Response:
    return json_response(await medic(request).maintenance.get(path_int(request, "id")))


@routes.patch(
    "/api/v1/maintenance-windows/{id}",
    scope="write",
    summary="Change a window.",
    tag=TAG,
    path_params=schemas.ID_PATH,
    body=schemas.MAINTENANCE_UPDATE,
    operation_id="updateMaintenanceWindow",
    response=components.ref("MaintenanceWindow"),
)
async def update_window(request: web.Request) -> web.Response:
    body = await medic(request).maintenance.update(
        path_int(request, "id"), checked_body(request), actor=actor(request)
    )
    return json_response(body)


@routes.delete(
    "/api/v1/maintenance-windows/{id}",
    scope="write",
    summary="Delete a window; alerts it held are re-examined at once.",
    tag=TAG,
    path_params=schemas.ID_PATH,
    status=204,
    operation_id="deleteMaintenanceWindow",
)
async def delete_window(request: web.Request) -> web.Response:
    await medic(request).maintenance.delete(path_int(request, "id"), actor=actor(request))
    return web.Response(status=204)
