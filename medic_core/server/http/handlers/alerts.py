"""Alerts: list, get, acknowledge, resolve."""

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
TAG = "alerts"


@routes.get(
    "/api/v1/alerts",
    scope="read",
    summary="List alerts, newest first (filters: state, cause, service, unresolved).",
    tag=TAG,
    query=(
        QueryParam("state", {"enum": ["open", "acknowledged", "resolved"]}),
        QueryParam("cause", {"enum": ["missed", "failed", "overrun", "agent_offline"]}),
        QueryParam("service", schemas.SLUG),
        QueryParam("unresolved", {"type": "boolean"}),
        QueryParam("cursor", schemas.CURSOR),
        QueryParam("limit", schemas.LIMIT),
    ),
    operation_id="listAlerts",
    response=components.page("Alert"),
)
async def list_alerts(request: web.Request) -> web.Response:
    page = await medic(request).alerts.list(
        state=q_str(request, "state"),
        cause=q_str(request, "cause"),
        service=q_str(request, "service"),
        unresolved=q_bool(request, "unresolved"),
        cursor=q_str(request, "cursor"),
        limit=q_int(request, "limit"),
    )
    return page_response(page)


@routes.get(
    "/api/v1/alerts/{id}",
    scope="read",
    summary="One alert.",
    tag=TAG,
    path_params=schemas.ID_PATH,
    operation_id="getAlert",
    response=components.ref("Alert"),
)
async def get_alert(request: web.Request) -> web.Response:
    return json_response(await medic(request).alerts.get(path_int(request, "id")))


@routes.post(
    "/api/v1/alerts/{id}/ack",
    scope="write",
    summary="Acknowledge an open alert (409 if it is not open).",
    tag=TAG,
    path_params=schemas.ID_PATH,
    operation_id="acknowledgeAlert",
    response=components.ref("Alert"),
)
async def ack(request: web.Request) -> web.Response:
    body = await medic(request).alerts.acknowledge(path_int(request, "id"), actor=actor(request))
    return json_response(body)


@routes.post(
    "/api/v1/alerts/{id}/resolve",
    scope="write",
    summary="Resolve an alert by hand, with an optional note.",
    tag=TAG,
    path_params=schemas.ID_PATH,
    body=schemas.RESOLVE,
    body_required=False,
    operation_id="resolveAlert",
    response=components.ref("Alert"),
)
async def resolve(request: web.Request) -> web.Response:
    note = str(checked_body(request).get("note") or "").strip() or None
    body = await medic(request).alerts.resolve(
        path_int(request, "id"), actor=actor(request), note=note
    )
    return json_response(body)
