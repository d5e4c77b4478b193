"""What an HTTP handler needs from a request, for Medic's API and plugins' integrations alike.

``REQUEST_ID`` is the key under which the server's middleware stores each request's id (the
``X-Request-Id`` it answers with): put it in the ``Actor`` of whatever the request changes, so the
audit log ties the change to the request. ``json_body`` and ``json_any`` read a JSON body with
Medic's rules (the right ``Content-Type``, valid JSON, no NUL in any string) and raise
``BadRequest``/``ValidationError``, which the server answers as ``application/problem+json``.

They live here, outside ``medic_core.server``, because plugins use them too: a plugin's
integration handler is an aiohttp handler mounted by the same server, and plugins may not import
the transport (``tests/unit/test_plugin_imports.py``). ``server/http/context.py`` imports them
from here.
"""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web

from medic_core.errors import BadRequest, ValidationError

REQUEST_ID = web.RequestKey("request_id", str)


async def json_body(request: web.Request, *, nul: bool = True) -> dict[str, Any]:
    """The body as a JSON object (400 when it is not one); NUL characters refused unless
    ``nul`` is False (then the caller refuses them where it can say which part)."""
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
    if nul:
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
