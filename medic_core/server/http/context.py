"""Per-request helpers for handlers: the application, the caller, the body, query values."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import orjson
from aiohttp import web

from medic_core.audit import Actor
from medic_core.auth import Principal
from medic_core.errors import BadRequest, ValidationError
from medic_core.store.pagination import Page
from medic_core.validation import instant, row_id

MEDIC = web.AppKey("medic", object)
PRINCIPAL = web.RequestKey("principal", Principal)
REQUEST_ID = web.RequestKey("request_id", str)


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


async def json_body(request: web.Request) -> dict[str, Any]:
    if request.content_type not in ("application/json", "application/problem+json"):
        raise BadRequest(
            f"send JSON with Content-Type: application/json (got {request.content_type or 'none'})"
        )
    raw = await request.read()
    try:
        data = orjson.loads(raw) if raw else None
    except orjson.JSONDecodeError as exc:
        raise BadRequest(f"the body is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise BadRequest("the body must be a JSON object")
    reject_nul(data)
    return data


def reject_nul(value: Any, path: str = "") -> None:
    """Refuse NUL (U+0000) in any string of a JSON document, naming where it is.

    PostgreSQL text cannot store it: letting it through turns a client mistake into a 500 (and,
    for heartbeats, fails the whole group-commit batch it shares with other clients).
    """
    stack: list[tuple[Any, str]] = [(value, path)]
    while stack:  # iterative: a deeply nested document must not exhaust the recursion limit
        item, where = stack.pop()
        if isinstance(item, str):
            if "\x00" in item:
                raise ValidationError(
                    f"{where or 'the body'} must not contain NUL (\\u0000) characters",
                    field=where or None,
                )
        elif isinstance(item, dict):
            for key, child in item.items():
                inner = f"{where}.{key}" if where else str(key)
                stack.append((key, inner))
                stack.append((child, inner))
        elif isinstance(item, list):
            stack.extend((child, f"{where}[{index}]") for index, child in enumerate(item))


async def json_any(request: web.Request) -> Any:
    if request.content_type != "application/json":
        raise BadRequest(
            f"send JSON with Content-Type: application/json (got {request.content_type or 'none'})"
        )
    try:
        return orjson.loads(await request.read())
    except orjson.JSONDecodeError as exc:
        raise BadRequest(f"the body is not valid JSON: {exc}") from None


def q_str(request: web.Request, name: str) -> str | None:
    value = request.query.get(name)
    return value if value not in (None, "") else None


def q_int(request: web.Request, name: str) -> int | None:
    value = q_str(request, name)
    if value is None:
        return None
    try:
        return int(value)
    except ValueError:
        raise ValidationError(f"query parameter {name} must be an integer", field=name) from None


def q_bool(request: web.Request, name: str) -> bool | None:
    value = q_str(request, name)
    if value is None:
        return None
    if value.lower() in ("true", "1", "yes"):
        return True
    if value.lower() in ("false", "0", "no"):
        return False
    raise ValidationError(f"query parameter {name} must be true or false", field=name)


def q_instant(request: web.Request, name: str) -> datetime | None:
    value = q_str(request, name)
    return None if value is None else instant(value, name)


def path_int(request: web.Request, name: str) -> int:
    try:
        value = int(request.match_info[name])
    except ValueError:
        raise ValidationError(f"{name} in the path must be an integer", field=name) from None
    return row_id(value, name)
