"""The audit log (admin scope: entries carry before/after documents)."""

from __future__ import annotations

from aiohttp import web

from medic_core.server.http import components, schemas
from medic_core.server.http.context import (
    json_response,
    medic,
    page_response,
    path_int,
    q_instant,
    q_int,
    q_str,
)
from medic_core.server.http.routing import QueryParam, RouteTable

routes = RouteTable()
TAG = "audit"


@routes.get(
    "/api/v1/audit",
    scope="admin",
    summary="List audit entries, newest first (filters: actor, action, resource, time range).",
    tag=TAG,
    query=(
        QueryParam("actor", {"type": "string"}),
        QueryParam("action", {"type": "string"}, "e.g. service.update"),
        QueryParam("resource_type", {"type": "string"}),
        QueryParam("resource_id", {"type": "string"}),
        QueryParam("since", schemas.INSTANT),
        QueryParam("until", schemas.INSTANT),
        QueryParam("cursor", schemas.CURSOR),
        QueryParam("limit", schemas.LIMIT),
    ),
    operation_id="listAuditEntries",
    response=components.page("AuditEntry"),
)
async def list_audit(request: web.Request) -> web.Response:
    page = await medic(request).audit.list(
        actor=q_str(request, "actor"),
        action=q_str(request, "action"),
        resource_type=q_str(request, "resource_type"),
        resource_id=q_str(request, "resource_id"),
        since=q_instant(request, "since"),
        until=q_instant(request, "until"),
        cursor=q_str(request, "cursor"),
        limit=q_int(request, "limit"),
    )
    return page_response(page)


@routes.get(
    "/api/v1/audit/{id}",
    scope="admin",
    summary="One audit entry with its before and after documents.",
    tag=TAG,
    path_params=schemas.ID_PATH,
    operation_id="getAuditEntry",
    response=components.ref("AuditEntry"),
)
async def get_audit(request: web.Request) -> web.Response:
    return json_response(await medic(request).audit.get(path_int(request, "id")))
