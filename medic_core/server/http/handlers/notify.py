"""Schedules, escalation policies and notification targets (the routing tables).

Reads need ``read``; every change needs ``admin``: targets hold notifier secrets (never shown
back: ``"********"`` stands for them) and these tables decide who gets paged.
"""

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

routes = RouteTable()
SCHEDULES, POLICIES, TARGETS = "schedules", "escalation-policies", "targets"
PAGING = (QueryParam("cursor", schemas.CURSOR), QueryParam("limit", schemas.LIMIT))

# -- schedules ----------------------------------------------------------------------------------


@routes.get(
    "/api/v1/schedules",
    scope="read",
    summary="List schedules (weekly hours in a time zone), oldest first.",
    tag=SCHEDULES,
    query=PAGING,
    operation_id="listSchedules",
    response=components.page("Schedule"),
)
async def list_schedules(request: web.Request) -> web.Response:
    page = await medic(request).schedules.list(
        cursor=q_str(request, "cursor"), limit=q_int(request, "limit")
    )
    return page_response(page)


@routes.post(
    "/api/v1/schedules",
    scope="admin",
    summary="Create a schedule.",
    tag=SCHEDULES,
    body=schemas.SCHEDULE_CREATE,
    status=201,
    operation_id="createSchedule",
    response=components.ref("Schedule"),
)
async def create_schedule(request: web.Request) -> web.Response:
    body = await medic(request).schedules.create(checked_body(request), actor=actor(request))
    return json_response(body, status=201)


@routes.get(
    "/api/v1/schedules/{slug}",
    scope="read",
    summary="One schedule.",
    tag=SCHEDULES,
    operation_id="getSchedule",
    response=components.ref("Schedule"),
)
async def get_schedule(request: web.Request) -> web.Response:
    return json_response(await medic(request).schedules.get(request.match_info["slug"]))


@routes.patch(
    "/api/v1/schedules/{slug}",
    scope="admin",
    summary="Change a schedule's name, time zone or hours.",
    tag=SCHEDULES,
    body=schemas.SCHEDULE_UPDATE,
    operation_id="updateSchedule",
    response=components.ref("Schedule"),
)
async def update_schedule(request: web.Request) -> web.Response:
    body = await medic(request).schedules.update(
        request.match_info["slug"], checked_body(request), actor=actor(request)
    )
    return json_response(body)


@routes.delete(
    "/api/v1/schedules/{slug}",
    scope="admin",
    summary="Delete a schedule no target's period uses (409 names the targets).",
    tag=SCHEDULES,
    status=204,
    operation_id="deleteSchedule",
)
async def delete_schedule(request: web.Request) -> web.Response:
    await medic(request).schedules.delete(request.match_info["slug"], actor=actor(request))
    return web.Response(status=204)


# -- escalation policies ------------------------------------------------------------------------


@routes.get(
    "/api/v1/escalation-policies",
    scope="read",
    summary="List escalation policies, oldest first.",
    tag=POLICIES,
    query=PAGING,
    operation_id="listEscalationPolicies",
    response=components.page("EscalationPolicy"),
)
async def list_escalation_policies(request: web.Request) -> web.Response:
    page = await medic(request).escalations.list(
        cursor=q_str(request, "cursor"), limit=q_int(request, "limit")
    )
    return page_response(page)


@routes.post(
    "/api/v1/escalation-policies",
    scope="admin",
    summary="Create an escalation policy (its targets must exist).",
    tag=POLICIES,
    body=schemas.ESCALATION_POLICY_CREATE,
    status=201,
    operation_id="createEscalationPolicy",
    response=components.ref("EscalationPolicy"),
)
async def create_escalation_policy(request: web.Request) -> web.Response:
    body = await medic(request).escalations.create(checked_body(request), actor=actor(request))
    return json_response(body, status=201)


@routes.get(
    "/api/v1/escalation-policies/{slug}",
    scope="read",
    summary="One escalation policy.",
    tag=POLICIES,
    operation_id="getEscalationPolicy",
    response=components.ref("EscalationPolicy"),
)
async def get_escalation_policy(request: web.Request) -> web.Response:
    return json_response(await medic(request).escalations.get(request.match_info["slug"]))


@routes.patch(
    "/api/v1/escalation-policies/{slug}",
    scope="admin",
    summary="Change an escalation policy (levels are replaced as a whole).",
    tag=POLICIES,
    body=schemas.ESCALATION_POLICY_UPDATE,
    operation_id="updateEscalationPolicy",
    response=components.ref("EscalationPolicy"),
)
async def update_escalation_policy(request: web.Request) -> web.Response:
    body = await medic(request).escalations.update(
        request.match_info["slug"], checked_body(request), actor=actor(request)
    )
    return json_response(body)


@routes.delete(
    "/api/v1/escalation-policies/{slug}",
    scope="admin",
    summary="Delete an escalation policy no team uses (409 names the teams).",
    tag=POLICIES,
    status=204,
    operation_id="deleteEscalationPolicy",
)
async def delete_escalation_policy(request: web.Request) -> web.Response:
    await medic(request).escalations.delete(request.match_info["slug"], actor=actor(request))
    return web.Response(status=204)


# -- notification targets -----------------------------------------------------------------------


@routes.get(
    "/api/v1/targets",
    scope="read",
    summary="List notification targets, oldest first (secrets shown as ********).",
    tag=TARGETS,
    query=(
        QueryParam("team", schemas.SLUG, "targets owned by this team"),
        QueryParam("service", schemas.SLUG, "targets owned by this service (overrides)"),
        QueryParam("notifier", {"type": "string"}, "targets using this notifier"),
        QueryParam("enabled", {"type": "boolean"}),
        *PAGING,
    ),
    operation_id="listTargets",
    response=components.page("Target"),
)
async def list_targets(request: web.Request) -> web.Response:
    page = await medic(request).targets.list(
        team=q_str(request, "team"),
        service=q_str(request, "service"),
        notifier=q_str(request, "notifier"),
        enabled=q_bool(request, "enabled"),
        cursor=q_str(request, "cursor"),
        limit=q_int(request, "limit"),
    )
    return page_response(page)


@routes.post(
    "/api/v1/targets",
    scope="admin",
    summary="Create a notification target (config is checked against the notifier's schema).",
    tag=TARGETS,
    body=schemas.TARGET_CREATE,
    status=201,
    operation_id="createTarget",
    response=components.ref("Target"),
)
async def create_target(request: web.Request) -> web.Response:
    body = await medic(request).targets.create(checked_body(request), actor=actor(request))
    return json_response(body, status=201)


@routes.get(
    "/api/v1/targets/{slug}",
    scope="read",
    summary="One notification target (secrets shown as ********).",
    tag=TARGETS,
    operation_id="getTarget",
    response=components.ref("Target"),
)
async def get_target(request: web.Request) -> web.Response:
    return json_response(await medic(request).targets.get(request.match_info["slug"]))


@routes.patch(
    "/api/v1/targets/{slug}",
    scope="admin",
    summary="Change a target; the merged result is validated again. Send ******** back for a "
    "secret to keep it.",
    tag=TARGETS,
    body=schemas.TARGET_UPDATE,
    operation_id="updateTarget",
    response=components.ref("Target"),
)
async def update_target(request: web.Request) -> web.Response:
    body = await medic(request).targets.update(
        request.match_info["slug"], checked_body(request), actor=actor(request)
    )
    return json_response(body)


@routes.delete(
    "/api/v1/targets/{slug}",
    scope="admin",
    summary="Delete a target no escalation policy names (409 names the policies).",
    tag=TARGETS,
    status=204,
    operation_id="deleteTarget",
)
async def delete_target(request: web.Request) -> web.Response:
    await medic(request).targets.delete(request.match_info["slug"], actor=actor(request))
    return web.Response(status=204)


@routes.post(
    "/api/v1/targets/{slug}/test",
    scope="admin",
    summary="Send a test notification to a target now (not through the outbox).",
    tag=TARGETS,
    operation_id="testTarget",
    response=components.ref("TargetTestResult"),
)
async def test_target(request: web.Request) -> web.Response:
    return json_response(await medic(request).delivery.test_target(request.match_info["slug"]))


@routes.get(
    "/api/v1/targets/{slug}/check",
    scope="read",
    summary="Check a target's configuration without notifying anyone.",
    tag=TARGETS,
    operation_id="checkTarget",
    response=components.ref("TargetCheck"),
)
async def check_target(request: web.Request) -> web.Response:
    result = await medic(request).delivery.check_target(request.match_info["slug"])
    return json_response({"status": result.status, "detail": result.detail})
