"""Builds the aiohttp application around a ``Medic`` and runs it."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

from medic_core.ratelimit import TokenBuckets
from medic_core.server.http import openapi
from medic_core.server.http.context import MEDIC
from medic_core.server.http.handlers import (
    agents,
    alerts,
    apikeys,
    audit,
    deliveries,
    executions,
    health,
    heartbeats,
    maintenance,
    notify,
    playbook_runs,
    playbook_webhooks,
    playbooks,
    secrets,
    services,
    teams,
)
from medic_core.server.http.middleware import (
    LIMITER,
    authenticate,
    check_body,
    errors,
    observe,
)
from medic_core.server.http.routing import RouteTable

if TYPE_CHECKING:
    from medic_core.app import Medic

_TABLES = (
    health,
    heartbeats,
    services,
    alerts,
    teams,
    maintenance,
    notify,
    deliveries,
    apikeys,
    audit,
    agents,
    executions,
    playbooks,
    playbook_runs,
    playbook_webhooks,
    secrets,
    openapi,
)


def route_table() -> RouteTable:
    table = RouteTable()
    for module in _TABLES:
        table.routes.extend(module.routes.routes)
    return table


def build_app(medic: Medic) -> web.Application:
    """The HTTP application for an already-constructed ``Medic``.

    Plugin integrations mount their own routes under ``/integrations/<name>/``; those routes
    authenticate their callers themselves (inbound webhooks carry signatures, not API keys).
    """
    settings = medic.settings
    app = web.Application(
        middlewares=[observe, errors, authenticate, check_body],
        client_max_size=settings.max_body_bytes,
    )
    app[MEDIC] = medic
    app[LIMITER] = TokenBuckets[int](settings.rate_limit, settings.rate_burst)
    route_table().install(app)
    for name, integration in medic.plugins.integrations(medic.plugin_context).items():
        # All of an integration's routes or none: one that raises or declares a bad route is
        # a recorded plugin failure, not a server that cannot start.
        try:
            mounted = [
                (method, f"/integrations/{name}/{path.lstrip('/')}", handler)
                for method, path, handler in integration.routes()
            ]
            trial = web.UrlDispatcher()  # add_route validates method, path and handler
            for method, path, handler in mounted:
                trial.add_route(method, path, handler)
        except Exception as exc:
            medic.plugins.record_failure(name, "routes", exc)
            continue
        for method, path, handler in mounted:
            app.router.add_route(method, path, handler)
    return app
