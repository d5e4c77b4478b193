"""Cross-cutting request handling, in order: request id and metrics, errors, auth, rate limit,
then the body checked against the route's schema (after auth: an unauthenticated caller learns
nothing about a body's rules).

Authentication reads the route's declared scope and goes through ``medic_core.auth.gate``: the
client's budget of failed authentications first, its key second. Keys are accepted as
``Authorization: Bearer`` or ``X-Api-Key``. An unknown route or method still gets a problem
document, never a stack trace.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import secrets
import time

from aiohttp import web

from medic_core.auth import Principal, grants
from medic_core.errors import (
    BadRequest,
    Forbidden,
    MedicError,
    RateLimited,
    Unauthorized,
    database_unavailable,
)
from medic_core.net.inbound import source_of
from medic_core.observability.tracing import tracer, tracing_enabled
from medic_core.ratelimit import TokenBuckets
from medic_core.server.http.context import (
    BODY,
    PRINCIPAL,
    REQUEST_ID,
    client_address,
    json_body,
    medic,
)
from medic_core.server.http.problems import from_error, from_http_exception, problem
from medic_core.server.http.routing import PUBLIC, Handler, declared_route
from medic_core.store import is_transient_db_error
from medic_core.store.faults import classify

log = logging.getLogger(__name__)
LIMITER = web.AppKey("rate_limiter", TokenBuckets)


def _route_label(request: web.Request) -> str:
    resource = request.match_info.route.resource
    return resource.canonical if resource is not None else "unmatched"


#: Request ids: a random per-process prefix and a counter -- unique across replicas without a
#: uuid4 (and its urandom call) per request.
_ID_PREFIX = secrets.token_hex(8)
_ID_COUNTER = itertools.count(1)


def new_request_id() -> str:
    return f"{_ID_PREFIX}{next(_ID_COUNTER):010x}"


@web.middleware
async def observe(request: web.Request, handler: Handler) -> web.StreamResponse:
    request_id = request.headers.get("X-Request-Id", "")[:100] or new_request_id()
    request[REQUEST_ID] = request_id
    started = time.perf_counter()
    route = _route_label(request)
    status = 500
    span = (
        tracer.start_as_current_span(f"{request.method} {route}")
        if tracing_enabled()
        else contextlib.nullcontext(None)
    )
    with span as current:
        try:
            response = await handler(request)
            status = response.status
            response.headers["X-Request-Id"] = request_id
            return response
        finally:
            if current is not None:
                current.set_attribute("http.status_code", status)
            medic(request).metrics.observe_http(
                route, request.method, status, time.perf_counter() - started
            )


@web.middleware
async def errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    request_id = request.get(REQUEST_ID)
    try:
        _check_url(request)
        return await handler(request)
    except MedicError as exc:
        if exc.status >= 500 and exc.status != 503:
            log.error("request failed: %s", exc, extra={"request_id": request_id})
        return from_error(exc, request_id)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return from_http_exception(exc, request_id)
    except Exception as exc:
        cause = classify(exc)
        if cause is not None:
            # Told to the breaker, which logs the outage in a few lines (not one per request)
            # and refuses the next requests at once.
            medic(request).db_breaker.failed(cause, exc)
            return from_error(database_unavailable(cause, "retry shortly"), request_id)
        log.exception("unhandled error", extra={"request_id": request_id, "path": request.path})
        return problem(
            500,
            "Internal error",
            "Medic failed to handle this request; the error is logged with this request_id",
            request_id=request_id,
        )


def _check_url(request: web.Request) -> None:
    # PostgreSQL text cannot hold NUL: a %00 in a slug or a filter would be a 500 further in.
    if "\x00" in request.path or any("\x00" in k + v for k, v in request.query.items()):
        raise BadRequest("the URL must not contain NUL (%00) characters")


def _token(request: web.Request) -> str | None:
    header = request.headers.get("Authorization")
    if header:
        scheme, _, value = header.partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            return value.strip()
        raise Unauthorized("use 'Authorization: Bearer <api key>' or the X-Api-Key header")
    return request.headers.get("X-Api-Key") or None


async def optional_principal(request: web.Request) -> Principal | None:
    """The caller of a public route, when it sent a valid key; None otherwise.

    A public route never refuses over a key: a readiness probe configured with a stale key
    still gets its answer (the public one), and a database outage that makes keys unverifiable
    does not turn the probe into an error.
    """
    try:
        token = _token(request)
        return None if token is None else await medic(request).keys.authenticate(token)
    except MedicError:
        return None
    except Exception as exc:
        if is_transient_db_error(exc):
            return None
        raise


@web.middleware
async def authenticate(request: web.Request, handler: Handler) -> web.StreamResponse:
    route = declared_route(request)
    if route is None or route.scope == PUBLIC:
        return await handler(request)
    try:
        token = _token(request)
        missing = (
            "this route needs an API key: send 'Authorization: Bearer <key>' "
            f"(scope {route.scope!r})"
        )
    except Unauthorized as exc:  # an Authorization header of another scheme
        token, missing = None, exc.message
    principal = await medic(request).auth_gate.authenticate(
        token, source_of(client_address(request)), transport="http", missing=missing
    )
    if not grants(principal.scopes, route.scope):
        raise Forbidden(
            f"this API key (scopes: {', '.join(sorted(principal.scopes))}) lacks the "
            f"{route.scope!r} scope this route needs"
        )
    request[PRINCIPAL] = principal
    limiter = request.app[LIMITER]
    if not limiter.enabled:
        return await handler(request)
    verdict = limiter.take(principal.id)
    if not verdict.allowed:
        error = RateLimited(
            f"rate limit of {limiter.rate:g} requests/s for this key exceeded",
            retry_after=verdict.retry_after,
        )
        refused = from_error(error, request.get(REQUEST_ID))
        refused.headers.update(verdict.headers())
        return refused
    try:
        response = await handler(request)
    except MedicError as exc:
        # Errors count against the limit too, so they carry its headers.
        response = from_error(exc, request.get(REQUEST_ID))
    response.headers.update(verdict.headers())
    return response


@web.middleware
async def check_body(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Read the body of a route that declares one and check it against that schema.

    The one place request bodies are parsed: a 400 when it is not a JSON object, a 422 naming
    the field when it breaks the documented schema; the handler reads it with ``body()``.
    """
    route = declared_route(request)
    if route is not None and route.body_schema is not None:
        if route.body_required or request.can_read_body:
            data = await json_body(request, nul=route.body_nul_checked)
        else:
            data = {}
        route.body_schema.check(data)
        request[BODY] = data
    return await handler(request)
