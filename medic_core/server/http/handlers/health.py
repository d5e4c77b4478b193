"""Liveness, readiness and metrics (public: probes and scrapers carry no key)."""

from __future__ import annotations

from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST

from medic_core import __version__
from medic_core.auth import grants
from medic_core.server.http import components
from medic_core.server.http.context import json_response, medic
from medic_core.server.http.middleware import optional_principal
from medic_core.server.http.routing import PUBLIC, RouteTable

routes = RouteTable()


@routes.get(
    "/health",
    scope=PUBLIC,
    summary="Liveness: the process answers.",
    tag="health",
    operation_id="getHealth",
    response=components.ref("Health"),
)
async def health(request: web.Request) -> web.Response:
    return json_response({"status": "ok", "version": __version__})


#: The scope whose keys see each check's detail; it already reads every target's check.
DETAILS_SCOPE = "read"


@routes.get(
    "/health/ready",
    scope=PUBLIC,
    summary="Readiness: database, plugin and notification-target checks (503 when a critical "
    "one is down). Without a key: the overall status and each check's name with ok or "
    "failing; with a key granting read: each check's status, detail and criticality.",
    tag="health",
    operation_id="getReadiness",
    response=components.ref("Readiness"),
)
async def ready(request: web.Request) -> web.Response:
    app = medic(request)
    results = await app.readiness()
    checks = {
        name: {"status": r.status, "detail": r.detail, "critical": app.health_checks[name].critical}
        for name, r in results.items()
    }
    # Notification targets, as last tested in the background: informative, never critical
    # (a Slack outage must not take Medic out of its load balancer).
    for slug, r in app.delivery.target_health.items():
        checks[f"target:{slug}"] = {"status": r.status, "detail": r.detail, "critical": False}
    healthy = all(c["status"] == "ok" or not c["critical"] for c in checks.values())
    status = 200 if healthy else 503
    body = {"status": "ok" if healthy else "unavailable", "checks": checks}
    principal = await optional_principal(request)
    if principal is None or not grants(principal.scopes, DETAILS_SCOPE):
        body = _public(body)
    return json_response(body, status=status)


def _public(body: dict[str, Any]) -> dict[str, Any]:
    """What anyone may see: check names and ok/failing, targets as one check.

    Details name hosts, target slugs and upstream errors: they map the deployment for an
    attacker, so they need a key. Load balancers only need the status code.
    """
    checks: dict[str, dict[str, str]] = {}
    for name, check in body["checks"].items():
        shown = "targets" if name.startswith("target:") else name
        failing = check["status"] != "ok" or checks.get(shown, {}).get("status") == "failing"
        checks[shown] = {"status": "failing" if failing else "ok"}
    return {
        "status": body["status"],
        "checks": checks,
        "detail": f"send an API key with the {DETAILS_SCOPE!r} scope to see each check's detail",
    }


@routes.get(
    "/metrics",
    scope=PUBLIC,
    summary="Prometheus metrics.",
    tag="health",
    content_type="text/plain",
    operation_id="getMetrics",
)
async def metrics(request: web.Request) -> web.Response:
    body = medic(request).metrics.render()
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})
