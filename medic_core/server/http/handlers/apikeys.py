"""API keys (admin scope): create (the token is shown once), list, get, revoke."""

from __future__ import annotations

from aiohttp import web

from medic_core.auth.keys import key_to_dict
from medic_core.server.http import components, schemas
from medic_core.server.http.context import actor, checked_body, json_response, medic, q_bool
from medic_core.server.http.routing import QueryParam, RouteTable
from medic_core.validation import instant

routes = RouteTable()
TAG = "api-keys"


@routes.post(
    "/api/v1/api-keys",
    scope="admin",
    summary="Create a key. The response holds the token; it is never shown again.",
    tag=TAG,
    body=schemas.API_KEY_CREATE,
    status=201,
    operation_id="createApiKey",
    response=components.ref("ApiKeyCreated"),
)
async def create_key(request: web.Request) -> web.Response:
    data = checked_body(request)
    expires = instant(data["expires_at"], "expires_at") if data.get("expires_at") else None
    key, token = await medic(request).keys.create(
        name=data["name"], scopes=data["scopes"], expires_at=expires, actor=actor(request)
    )
    return json_response({**key_to_dict(key), "token": token}, status=201)


@routes.get(
    "/api/v1/api-keys",
    scope="admin",
    summary="List keys (never their tokens).",
    tag=TAG,
    query=(QueryParam("include_revoked", {"type": "boolean"}),),
    operation_id="listApiKeys",
    response=components.page("ApiKey"),
)
async def list_keys(request: web.Request) -> web.Response:
    keys = await medic(request).keys.list(include_revoked=bool(q_bool(request, "include_revoked")))
    return json_response({"items": [key_to_dict(k) for k in keys], "next_cursor": None})


@routes.get(
    "/api/v1/api-keys/{key}",
    scope="admin",
    summary="One key, by id or key id.",
    tag=TAG,
    operation_id="getApiKey",
    response=components.ref("ApiKey"),
)
async def get_key(request: web.Request) -> web.Response:
    return json_response(key_to_dict(await medic(request).keys.get(request.match_info["key"])))


@routes.delete(
    "/api/v1/api-keys/{key}",
    scope="admin",
    summary="Revoke a key (kept for the audit trail, refused from now on).",
    tag=TAG,
    operation_id="revokeApiKey",
    response=components.ref("ApiKey"),
)
async def revoke_key(request: web.Request) -> web.Response:
    key = await medic(request).keys.revoke(request.match_info["key"], actor=actor(request))
    return json_response(key_to_dict(key))
