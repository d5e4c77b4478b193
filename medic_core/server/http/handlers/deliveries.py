"""Deliveries (the notification outbox): list, inspect, re-drive failed ones."""

from __future__ import annotations

from aiohttp import web

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
TAG = "deliveries"


@routes.get(
    "/api/v1/deliveries",
    scope="read",
    summary="Notification deliveries, newest first (filters: status, alert, target).",
    tag=TAG,
    query=(
        QueryParam("status", {"enum": ["pending", "sent", "failed", "cancelled"]}),
        QueryParam("alert", schemas.ROW_ID),
        QueryParam("target", schemas.SLUG),
        QueryParam("cursor", schemas.CURSOR),
        QueryParam("limit", schemas.LIMIT),
    ),
    operation_id="listDeliveries",
    response=components.page("Delivery"),
)
async def list_deliveries(request: web.Request) -> web.Response:
    page = await medic(request).delivery.list(
        status=q_str(request, "status"),
        alert_id=q_int(request, "alert"),
        target=q_str(request, "target"),
        cursor=q_str(request, "cursor"),
        limit=q_int(request, "limit"),
    )
    return page_response(page)


@routes.get(
    "/api/v1/deliveries/{id}",
    scope="read",
    summary="One delivery.",
    tag=TAG,
    path_params=schemas.ID_PATH,
    operation_id="getDelivery",
    response=components.ref("Delivery"),
)
async def get_delivery(request: web.Request) -> web.Response:
    return json_response(await medic(request).delivery.get(path_int(request, "id")))


@routes.post(
    "/api/v1/deliveries/{id}/retry",
    scope="admin",
    summary="Re-drive a failed delivery with a fresh set of attempts (409 unless failed).",
    tag=TAG,
    path_params=schemas.ID_PATH,
    operation_id="retryDelivery",
    response=components.ref("Delivery"),
)
async def retry_delivery(request: web.Request) -> web.Response:
    body = await medic(request).delivery.redrive(path_int(request, "id"), actor=actor(request))
    return json_response(body)


@routes.post(
    "/api/v1/deliveries:retry-failed",
    scope="admin",
    summary="Re-drive every failed delivery, or those of one target (?target=slug).",
    tag=TAG,
    query=(QueryParam("target", schemas.SLUG),),
    operation_id="retryFailedDeliveries",
    response=components.ref("Redriven"),
)
async def retry_failed(request: web.Request) -> web.Response:
    count = await medic(request).delivery.redrive_failed(
        target=q_str(request, "target"), actor=actor(request)
    )
    return json_response({"redriven": count})
