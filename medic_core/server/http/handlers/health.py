"""Liveness, readiness and metrics (public: probes and scrapers carry no key)."""

from __future__ import annotations

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST

from medic_core import __version__
from medic_core.server.http.context import json_response, medic
from medic_core.server.http.routing import PUBLIC, RouteTable

routes = RouteTable()


@routes.get("/health", scope=PUBLIC, summary="Liveness: the process answers.", tag="health")
async def health(request: web.Request) -> web.Response:
    return json_response({"status": "ok", "version": __version__})


@routes.get(
    "/health/ready",
    scope=PUBLIC,
    summary="Readiness: database, plugin and notification-target checks (503 when a critical "
    "one is down).",
    tag="health",
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
    body = {"status": "ok" if healthy else "unavailable", "checks": checks}
    return json_response(body, status=200 if healthy else 503)


@routes.get(
    "/metrics",
    scope=PUBLIC,
    summary="Prometheus metrics.",
    tag="health",
    content_type="text/plain",
)
async def metrics(request: web.Request) -> web.Response:
    body = medic(request).metrics.render()
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})
