"""Per-request helpers for handlers: the application, the caller, the body, query values.

The request id and the JSON body readers are ``medic_core.requests``'s (plugins' integrations use
them too, and may not import the transport); they are imported here so handlers find every
per-request helper in one module.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

import orjson
from aiohttp import web

from medic_core.audit import Actor
from medic_core.auth import Principal
from medic_core.errors import ValidationError
from medic_core.requests import REQUEST_ID as REQUEST_ID
from medic_core.requests import json_body as json_body
from medic_core.requests import reject_nul as reject_nul
from medic_core.server.http import schemas
from medic_core.server.http.routing import declared_route
from medic_core.store.pagination import Page
from medic_core.validation import conforms, instant

MEDIC = web.AppKey("medic", object)
PRINCIPAL = web.RequestKey("principal", Principal)
#: The request body, checked against its route's schema (``middleware.check_body``).
BODY = web.RequestKey("body", dict)


def medic(request: web.Request) -> Any:
    """The running ``medic_core.app.Medic``."""
    return request.app[MEDIC]


def client_address(request: web.Request) -> str | None:
    """The client's address: the peer, or behind trusted proxies the forwarded client
    (``medic_core.net.inbound``)."""
    return medic(request).trusted_proxies.client_address(  # type: ignore[no-any-return]
        request.remote, request.headers.getall("X-Forwarded-For", ())
    )


def actor(request: web.Request) -> Actor:
    principal: Principal | None = request.get(PRINCIPAL)
    name = principal.actor_name if principal else "anonymous"
    return Actor(name, request.get(REQUEST_ID))


def json_response(
    data: Any, status: int = 200, headers: dict[str, str] | None = None
) -> web.Response:
    return web.Response(
        body=orjson.dumps(data), status=status, content_type="application/json", headers=headers
    )


def page_response(page: Page[Any]) -> web.Response:
    return json_response({"items": list(page.items), "next_cursor": page.next_cursor})


def checked_body(request: web.Request) -> dict[str, Any]:
    """The body of a route that declares one, already checked against its schema."""
    return request[BODY]


# -- query and path parameters ------------------------------------------------------------------
#
# The one place URL parameters are parsed. Each value is checked against what its route declares
# (``QueryParam`` / ``Route.path_params``, the same schemas the OpenAPI document shows), so the
# documented rules are the enforced ones. Three rules hold for every parameter:
#
# - an empty value (``?target=``) is refused, never read as "no filter": a script that builds
#   ``?target=$SLUG`` with an unset variable must not act on every target;
# - a parameter given twice is refused (which one would apply is a guess);
# - integers are bounded (at most a 64-bit signed column, tighter where declared), so a number
#   too large for the database is a 422, not a 500 from the driver.

_INTEGER = re.compile(r"-?[0-9]{1,20}")


def _declared(request: web.Request, name: str) -> dict[str, Any]:
    route = declared_route(request)
    for param in route.query if route is not None else ():
        if param.name == name:
            return param.schema
    return {}


def q_raw(request: web.Request, name: str) -> str | None:
    """The one value of query parameter ``name``; None when absent; 422 when empty or repeated."""
    values = request.query.getall(name, [])
    if not values:
        return None
    if len(values) > 1:
        raise ValidationError(
            f"query parameter {name} is given {len(values)} times: give it once", field=name
        )
    if values[0] == "":
        raise ValidationError(
            f"query parameter {name} is empty: give it a value, or leave it out (no filter)",
            field=name,
        )
    return values[0]


def q_str(request: web.Request, name: str) -> str | None:
    value = q_raw(request, name)
    if value is not None:
        conforms(value, _declared(request, name), name, f"query parameter {name}")
    return value


def _int(text: str, name: str, label: str, schema: dict[str, Any]) -> int:
    if not _INTEGER.fullmatch(text):
        raise ValidationError(f"{label} must be an integer", field=name)
    value = int(text)
    conforms(value, {**schema, "type": "integer"}, name, label)
    return value


def q_int(request: web.Request, name: str) -> int | None:
    value = q_raw(request, name)
    if value is None:
        return None
    return _int(value, name, f"query parameter {name}", _declared(request, name))


def q_bool(request: web.Request, name: str) -> bool | None:
    value = q_raw(request, name)
    if value is None:
        return None
    if value.lower() in ("true", "1", "yes"):
        return True
    if value.lower() in ("false", "0", "no"):
        return False
    raise ValidationError(f"query parameter {name} must be true or false", field=name)


def q_instant(request: web.Request, name: str) -> datetime | None:
    value = q_raw(request, name)
    return None if value is None else instant(value, name)


def path_int(request: web.Request, name: str) -> int:
    """An integer path parameter: a row id unless the route declares other bounds."""
    route = declared_route(request)
    declared = route.path_params.get(name) if route is not None else None
    schema = declared if declared is not None else schemas.ROW_ID
    return _int(request.match_info[name], name, f"{name} in the path", schema)
