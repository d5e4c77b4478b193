"""The route table: every route declares its scope, summary and documented shape.

Handlers register with ``@routes.get(path, scope=..., summary=...)``; the same table builds the
aiohttp router, the auth middleware's decision and the OpenAPI document, so they cannot
disagree. ``scope="public"`` is the explicit way to say a route needs no key.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from medic_core.server.http.bodies import BodySchema

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
PUBLIC = "public"
SCOPE_VALUES = (PUBLIC, "read", "write", "admin", "heartbeat", "agent")
_OPERATION_ID = re.compile(r"[a-z][A-Za-z0-9]*")


@dataclass(frozen=True)
class QueryParam:
    name: str
    schema: dict[str, Any]
    description: str = ""


@dataclass(frozen=True)
class Route:
    method: str
    path: str
    handler: Handler
    scope: str
    summary: str
    tag: str
    #: The stable OpenAPI operationId (camelCase): generated clients name their functions by it.
    operation_id: str
    #: The JSON Schema of the body: documented in OpenAPI *and* enforced before the handler
    #: runs (``middleware.check_body``); the handler reads the checked body with ``body()``.
    body: dict[str, Any] | None = None
    #: False: the body may be left out (then it is ``{}``).
    body_required: bool = True
    #: False: NUL characters are refused by the handler, item by item (the heartbeat batch).
    body_nul_checked: bool = True
    query: tuple[QueryParam, ...] = ()
    #: JSON Schemas of path parameters, by name; undeclared: ``slug`` is a slug, others strings.
    path_params: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: The name of a body schema composed at start-up from the loaded plugins (the playbook
    #: definition: ``PlaybookIn``): the OpenAPI document shows the running server's,
    #: and the handler reads and checks the body through the domain, which reports every error
    #: (``check_body`` does not see it: the schema is not known when routes are declared).
    composed_body: str | None = None
    status: int = 200
    #: Other success statuses answered with the same ``response`` (201 when an apply creates).
    also: tuple[int, ...] = ()
    response: dict[str, Any] | None = None
    #: Problems a route answers beyond those its scope implies, by status, with what each means
    #: here (the signed playbook webhook is public, yet answers 401 for a bad signature).
    problems: dict[str, str] = field(default_factory=dict)
    content_type: str = "application/json"
    extra: dict[str, Any] = field(default_factory=dict)
    body_schema: BodySchema | None = field(init=False, default=None, compare=False)

    def __post_init__(self) -> None:
        if self.body is not None:  # compiled once, when the route is declared
            object.__setattr__(self, "body_schema", BodySchema(self.body))


class RouteTable:
    def __init__(self) -> None:
        self.routes: list[Route] = []

    def add(self, method: str, path: str, **kwargs: Any) -> Callable[[Handler], Handler]:
        if kwargs.get("scope") not in SCOPE_VALUES:
            raise ValueError(f"route {method} {path} must declare a scope from {SCOPE_VALUES}")
        if not _OPERATION_ID.fullmatch(kwargs.get("operation_id", "")):
            raise ValueError(f"route {method} {path} must declare a camelCase operation_id")
        json_answer = kwargs.get("content_type", "application/json") == "application/json"
        if json_answer and kwargs.get("status", 200) != 204 and kwargs.get("response") is None:
            raise ValueError(f"route {method} {path} must declare its response schema")

        def register(handler: Handler) -> Handler:
            self.routes.append(Route(method=method, path=path, handler=handler, **kwargs))
            return handler

        return register

    def get(self, path: str, **kwargs: Any) -> Callable[[Handler], Handler]:
        return self.add("GET", path, **kwargs)

    def post(self, path: str, **kwargs: Any) -> Callable[[Handler], Handler]:
        return self.add("POST", path, **kwargs)

    def put(self, path: str, **kwargs: Any) -> Callable[[Handler], Handler]:
        return self.add("PUT", path, **kwargs)

    def patch(self, path: str, **kwargs: Any) -> Callable[[Handler], Handler]:
        return self.add("PATCH", path, **kwargs)

    def delete(self, path: str, **kwargs: Any) -> Callable[[Handler], Handler]:
        return self.add("DELETE", path, **kwargs)

    def install(self, app: web.Application) -> None:
        declared: dict[Any, Route] = {}
        for route in self.routes:
            declared[app.router.add_route(route.method, route.path, route.handler)] = route
        app[DECLARED] = declared


#: aiohttp's route object -> our declaration; the auth middleware reads the scope from it.
DECLARED = web.AppKey("declared_routes", dict)


def declared_route(request: web.Request) -> Route | None:
    return request.app[DECLARED].get(request.match_info.route)
