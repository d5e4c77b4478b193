"""The OpenAPI 3.1 document, built from the route table (so it lists exactly the routes served)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from aiohttp import web

from medic_core import __version__
from medic_core.server.http import components, schemas
from medic_core.server.http.context import json_response, medic
from medic_core.server.http.routing import DECLARED, PUBLIC, Route, RouteTable

routes = RouteTable()
_PARAM = re.compile(r"{(\w+)}")
_REF = "#/components/schemas/"
_ERRORS = {
    "400": "The request cannot be read (malformed JSON, wrong content type).",
    "401": "No API key, or an invalid, expired or revoked one.",
    "403": "The key lacks the scope this route needs.",
    "404": "No such resource.",
    "408": "The request head or body did not arrive in time; the connection is closed.",
    "409": "The change conflicts with the current state.",
    "413": "The body is too large.",
    "414": "The request target (path and query) is too long; the connection is closed.",
    "422": "A field breaks a rule; `field` names it.",
    "429": (
        "Rate limit of the key exceeded (see Retry-After and RateLimit-* headers), or too many "
        "failed authentications from the client's address (see Retry-After)."
    ),
    "431": "The request head is too large or has too many headers; the connection is closed.",
    "503": "Temporarily unable (database unreachable, ingest saturated); see Retry-After.",
}
#: What the HTTP port itself may answer on any route, public ones too: before a request is
#: routed (its head), or because the database is away.
_ANY_ROUTE = ("400", "404", "408", "414", "431", "503")


def _path_schema(route: Route, name: str) -> dict[str, Any]:
    if name in route.path_params:
        return route.path_params[name]
    return schemas.SLUG if name == "slug" else {"type": "string", "minLength": 1}


def _operation(route: Route) -> dict[str, Any]:
    op: dict[str, Any] = {
        "summary": route.summary,
        "operationId": route.operation_id,
        "tags": [route.tag],
        "x-medic-scope": route.scope,
    }
    params = [
        {"name": name, "in": "path", "required": True, "schema": _path_schema(route, name)}
        for name in _PARAM.findall(route.path)
    ]
    params += [
        {
            "name": q.name,
            "in": "query",
            "required": False,
            "schema": {**q.schema, "minLength": 1} if _is_string(q.schema) else q.schema,
            **({"description": q.description} if q.description else {}),
        }
        for q in route.query
    ]
    if params:
        op["parameters"] = params
    if route.body is not None:
        op["requestBody"] = {
            "required": route.body_required,
            "content": {"application/json": {"schema": _named(route.body)}},
        }
    if route.composed_body is not None:
        op["requestBody"] = {
            "required": True,
            "description": "JSON, or the same document as YAML with Content-Type: "
            "application/yaml. Every error is reported at once (the problem's `errors`).",
            "content": {"application/json": {"schema": {"$ref": _REF + route.composed_body}}},
        }
    if route.scope != PUBLIC:
        op["security"] = [{"bearer": []}, {"apiKeyHeader": []}]
    success: dict[str, Any] = {"description": "Success", "headers": _headers(route, "2xx")}
    if route.status != 204:
        text = {"type": "string"}
        schema = route.response if route.content_type == "application/json" else text
        success["content"] = {route.content_type: {"schema": schema}}
    problem = {"application/problem+json": {"schema": components.ref("Problem")}}
    errors = {
        code: text for code, text in _ERRORS.items() if route.scope != PUBLIC or code in _ANY_ROUTE
    } | route.problems
    op["responses"] = {str(status): success for status in (route.status, *route.also)} | {
        code: {"description": text, "headers": _headers(route, code), "content": problem}
        for code, text in sorted(errors.items())
    }
    return op


def _named(schema: dict[str, Any]) -> dict[str, Any]:
    """A reference to the component that *is* ``schema`` (``HeartbeatIn``), else the schema."""
    for name, component in components.SCHEMAS.items():
        if component is schema:
            return components.ref(name)
    return schema


def _header(name: str) -> dict[str, Any]:
    return {"$ref": f"#/components/headers/{name}"}


def _headers(route: Route, code: str) -> dict[str, Any]:
    """The headers an answer carries: the request id always; the rate limit's on keyed routes
    (when limiting is on); Retry-After on 429 and 503; the auth challenge on 401."""
    headers = {"X-Request-Id": _header("X-Request-Id")}
    if route.scope != PUBLIC and code not in ("401", "403", "408", "414", "431"):
        headers |= {name: _header(name) for name in _RATE_LIMIT}
    if code in ("429", "503"):
        headers["Retry-After"] = _header("Retry-After")
    if code == "401":
        headers["WWW-Authenticate"] = _header("WWW-Authenticate")
    return headers


_RATE_LIMIT = ("RateLimit-Limit", "RateLimit-Remaining", "RateLimit-Reset")
_INTEGER = {"type": "integer", "minimum": 0}
HEADERS: dict[str, dict[str, Any]] = {
    "X-Request-Id": {
        "description": "The request's id: the client's X-Request-Id (first 100 characters) or "
        "one Medic made; also in problem documents as request_id, and in the logs.",
        "schema": {"type": "string", "maxLength": 100},
    },
    "Retry-After": {
        "description": "Seconds to wait before retrying.",
        "schema": {"type": "integer", "minimum": 1},
    },
    "WWW-Authenticate": {
        "description": 'The challenge: Bearer realm="medic".',
        "schema": {"type": "string"},
    },
    "RateLimit-Limit": {
        "description": "The key's burst (sent when rate limiting is on).",
        "schema": _INTEGER,
    },
    "RateLimit-Remaining": {
        "description": "Requests left in the burst (sent when rate limiting is on).",
        "schema": _INTEGER,
    },
    "RateLimit-Reset": {
        "description": "Seconds until the burst is full again (sent when rate limiting is on).",
        "schema": _INTEGER,
    },
}


#: Schemas composed at start-up from the loaded plugins, with the placeholder a document built
#: without a running server shows (generated clients take such a body as a JSON object).
COMPOSED: dict[str, dict[str, Any]] = {
    "PlaybookIn": {
        "type": "object",
        "required": ["slug", "steps"],
        "properties": {
            "slug": schemas.SLUG,
            "steps": {"type": "array", "items": {"type": "object"}},
        },
        "description": "A playbook definition (docs/playbooks.md); the running server's "
        "document holds the whole schema, composed from its step types.",
    }
}


def composed_schemas(medic: Any) -> dict[str, dict[str, Any]]:
    """``COMPOSED``'s schemas as the running ``medic`` composed them."""
    return {"PlaybookIn": medic.playbooks.validator.schema}


def _is_string(schema: dict[str, Any]) -> bool:
    # Every query value is refused when empty (never "no filter"): say so for the string ones.
    return schema.get("type") == "string" and "minLength" not in schema


def build_document(
    declared: list[Route], composed: Mapping[str, dict[str, Any]] | None = None
) -> dict[str, Any]:
    """The document for ``declared`` routes; ``composed``: the schemas composed at start-up
    (``COMPOSED``'s names) of the running server, else their placeholders."""
    paths: dict[str, dict[str, Any]] = {}
    for route in declared:
        paths.setdefault(route.path, {})[route.method.lower()] = _operation(route)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Medic API",
            "version": __version__,
            "description": "Heartbeats, services, alerts and their lifecycle. Errors are RFC 9457 "
            "problem documents. Authenticate with `Authorization: Bearer <api key>`; each "
            "operation's `x-medic-scope` names the scope it needs.",
        },
        "paths": dict(sorted(paths.items())),
        "components": {
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer"},
                "apiKeyHeader": {"type": "apiKey", "in": "header", "name": "X-Api-Key"},
            },
            "schemas": dict(sorted((components.SCHEMAS | COMPOSED | dict(composed or {})).items())),
            "headers": HEADERS,
        },
    }


@routes.get(
    "/api/v1/openapi.json",
    scope=PUBLIC,
    summary="This OpenAPI 3.1 document.",
    tag="meta",
    operation_id="getOpenApiDocument",
    response=components.ref("OpenApiDocument"),
)
async def openapi(request: web.Request) -> web.Response:
    declared = list(request.app[DECLARED].values())
    return json_response(build_document(declared, composed_schemas(medic(request))))
