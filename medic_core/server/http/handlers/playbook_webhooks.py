"""A playbook's inbound webhook, and the admin call that makes its secret.

The webhook route is ``scope="public"``: it takes no API key, it is authenticated by the HMAC
signature ``medic_core/playbooks/webhooks.py`` checks. Its body is read here, raw (the
signature is over the exact bytes), and never past ``MEDIC_PLAYBOOK_WEBHOOK_MAX_BYTES``.
"""

from __future__ import annotations

from aiohttp import web

from medic_core.playbooks.webhooks import SIGNATURE_HEADER, TIMESTAMP_HEADER, PlaybookWebhooks
from medic_core.server.http import components
from medic_core.server.http.context import actor, json_response, medic
from medic_core.server.http.routing import RouteTable

routes = RouteTable()
TAG = "playbooks"


@routes.post(
    "/api/v1/playbooks/{slug}/webhook",
    scope="public",
    summary="A playbook's inbound webhook: no API key, signed instead with the playbook's "
    "secret (X-Medic-Timestamp: unix seconds; X-Medic-Signature: sha256=<hex HMAC-SHA256 of "
    "'<timestamp>.' + body>). Body: empty or {\"variables\": {...}}. 201 with the run; 401 "
    "unsigned, stale, replayed or a bad signature; 413 too large; 422 variables; 409 when a "
    "run of the playbook is active (docs/playbooks.md#inbound-webhook).",
    tag=TAG,
    status=201,
    operation_id="receivePlaybookWebhook",
    response=components.ref("PlaybookRun"),
    problems={
        "401": "Not signed with the playbook's webhook secret, outside the timestamp window, "
        "already accepted, or the playbook takes no webhook (one answer for all: the metric "
        "medic_playbook_webhooks_refused_total says which).",
        "409": "A run of the playbook is active.",
        "413": "The body is larger than MEDIC_PLAYBOOK_WEBHOOK_MAX_BYTES.",
        "422": "A variable breaks its declaration; `field` names it.",
    },
)
async def receive_webhook(request: web.Request) -> web.Response:
    hooks: PlaybookWebhooks = medic(request).webhooks
    declared = request.content_length
    if declared is not None and declared > hooks.max_bytes:
        raise hooks.refuse("too_large")
    body = bytearray()
    async for chunk in request.content.iter_chunked(16384):
        body += chunk
        if len(body) > hooks.max_bytes:
            raise hooks.refuse("too_large")
    run = await hooks.receive(
        request.match_info["slug"],
        request.headers.get(TIMESTAMP_HEADER),
        request.headers.get(SIGNATURE_HEADER),
        bytes(body),
    )
    return json_response(run, status=201)


@routes.post(
    "/api/v1/playbooks/{slug}/webhook-secret",
    scope="admin",
    summary="Make a new secret for the playbook's inbound webhook (the old one stops working "
    "at once); the secret is shown only in this answer and stored encrypted (409 without "
    "MEDIC_SECRET_KEY).",
    tag=TAG,
    operation_id="rotatePlaybookWebhookSecret",
    response=components.ref("PlaybookWebhookSecret"),
)
async def rotate_webhook_secret(request: web.Request) -> web.Response:
    document = await medic(request).webhooks.rotate_secret(
        request.match_info["slug"], actor=actor(request)
    )
    return json_response(document, headers={"Cache-Control": "no-store"})
