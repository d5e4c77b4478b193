"""Every JSON answer of the API tests is checked against the OpenAPI document's response schema.

``ResponseCheck.middleware`` goes innermost into the app the ``client`` fixture serves (so it
sees what each handler answers, before the error middleware). A success answer whose status is
not the documented one, or whose body breaks the documented schema (a named component: required
keys, nullability, types, enums), is recorded; the fixture fails the test at teardown with the
list. So the document's response components are proven by every API test that gets an answer.
"""

from __future__ import annotations

from functools import cache
from typing import Any

import orjson
from aiohttp import web
from jsonschema import Draft202012Validator

from medic_core.server.http.app import route_table
from medic_core.server.http.openapi import build_document
from medic_core.server.http.routing import Handler, declared_route


@cache
def document() -> dict[str, Any]:
    return build_document(route_table().routes)


@cache
def validator(method: str, path: str, status: str) -> Draft202012Validator | None:
    operation = document()["paths"][path][method.lower()]
    response = operation["responses"].get(status)
    if response is None:
        return None
    schema = response["content"]["application/json"]["schema"]
    return Draft202012Validator({**schema, "components": document()["components"]})


class ResponseCheck:
    def __init__(self) -> None:
        self.failures: list[str] = []
        self.checked = 0

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        response = await handler(request)
        route = declared_route(request)
        if route is None or not 200 <= response.status < 300:
            return response
        where = f"{request.method} {route.path} -> {response.status}"
        if response.status not in (route.status, *route.also):
            self.failures.append(f"{where}: the document says {route.status}")
        if response.content_type != "application/json" or response.status == 204:
            return response
        check = validator(request.method, route.path, str(response.status))
        assert isinstance(response, web.Response) and response.body is not None
        body = orjson.loads(bytes(response.body))  # type: ignore[arg-type]
        if check is None:
            self.failures.append(f"{where}: no documented schema")
            return response
        self.checked += 1
        for error in check.iter_errors(body):
            at = "/".join(str(part) for part in error.absolute_path)
            self.failures.append(f"{where}: at {at or '(root)'}: {error.message[:300]}")
        return response
