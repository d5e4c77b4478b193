"""Secrets for playbook templates: names and metadata to readers, values set by admins only.

Setting a secret needs ``admin``, not ``write``: a ``write`` key can already define a playbook
whose webhook sends ``secrets.NAME`` anywhere, so if it could also choose the values, nothing
would be narrower than ``write``. No answer ever holds a value (docs/secrets.md).
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from medic_core.secrets.store import NAME_PATTERN
from medic_core.server.http import components, schemas
from medic_core.server.http.context import (
    actor,
    checked_body,
    json_response,
    medic,
    page_response,
    q_int,
    q_str,
)
from medic_core.server.http.routing import QueryParam, RouteTable

routes = RouteTable()
TAG = "secrets"
_NAME: dict[str, dict[str, Any]] = {
    "name": {"type": "string", "pattern": NAME_PATTERN, "description": "the secret's name"}
}


@routes.get(
    "/api/v1/secrets",
    scope="read",
    summary="List secrets (names and metadata, never values), oldest first, cursor-paged.",
    tag=TAG,
    query=(QueryParam("cursor", schemas.CURSOR), QueryParam("limit", schemas.LIMIT)),
    operation_id="listSecrets",
    response=components.page("Secret"),
)
async def list_secrets(request: web.Request) -> web.Response:
    page = await medic(request).secrets.list(
        cursor=q_str(request, "cursor"), limit=q_int(request, "limit")
    )
    return page_response(page)


@routes.put(
    "/api/v1/secrets/{name}",
    scope="admin",
    summary="Set a secret: create it (201) or replace its value (200). The answer holds no "
    "value; 409 when MEDIC_SECRET_KEY is not set.",
    tag=TAG,
    path_params=_NAME,
    body=schemas.SECRET_SET,
    also=(201,),
    operation_id="setSecret",
    response=components.ref("Secret"),
)
async def set_secret(request: web.Request) -> web.Response:
    summary, created = await medic(request).secrets.set(
        request.match_info["name"], checked_body(request)["value"], actor=actor(request)
    )
    return json_response(summary, status=201 if created else 200)


@routes.delete(
    "/api/v1/secrets/{name}",
    scope="admin",
    summary="Delete a secret.",
    tag=TAG,
    path_params=_NAME,
    status=204,
    operation_id="deleteSecret",
)
async def delete_secret(request: web.Request) -> web.Response:
    await medic(request).secrets.delete(request.match_info["name"], actor=actor(request))
    return web.Response(status=204)
