"""RFC 9457 problem details: the one mapping from errors to HTTP responses."""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

import orjson
from aiohttp import web

from medic_core.errors import MedicError, RateLimited, Unavailable, ValidationError

PROBLEM_TYPE = "application/problem+json"


def problem_document(
    status: int,
    title: str,
    detail: str,
    *,
    request_id: str | None = None,
    problem_type: str = "about:blank",
    **extra: Any,
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "type": problem_type,
        "title": title,
        "status": status,
        "detail": detail,
    }
    if request_id:
        body["request_id"] = request_id
    body.update({k: v for k, v in extra.items() if v is not None})
    return body


def problem(
    status: int,
    title: str,
    detail: str,
    *,
    request_id: str | None = None,
    headers: dict[str, str] | None = None,
    problem_type: str = "about:blank",
    **extra: Any,
) -> web.Response:
    document = problem_document(
        status, title, detail, request_id=request_id, problem_type=problem_type, **extra
    )
    return web.Response(
        status=status,
        body=orjson.dumps(document),
        content_type=PROBLEM_TYPE,
        headers=headers,
    )


def raw_problem(status: int, title: str, detail: str, *, request_id: str) -> bytes:
    """A whole HTTP/1.1 response carrying a problem document, ending the connection.

    For answers the connection itself gives before any request could be parsed (a request head
    that is too large or too slow): there is no request for aiohttp to answer.
    """
    body = orjson.dumps(problem_document(status, title, detail, request_id=request_id))
    head = (
        f"HTTP/1.1 {status} {HTTPStatus(status).phrase}\r\n"
        f"Content-Type: {PROBLEM_TYPE}\r\n"
        f"Content-Length: {len(body)}\r\n"
        f"X-Request-Id: {request_id}\r\n"
        "Connection: close\r\n\r\n"
    )
    return head.encode("ascii") + body


def from_error(error: MedicError, request_id: str | None) -> web.Response:
    headers: dict[str, str] = {}
    extra: dict[str, Any] = dict(error.extra)
    if isinstance(error, ValidationError) and error.field:
        extra["field"] = error.field
    if isinstance(error, RateLimited | Unavailable):
        headers["Retry-After"] = str(max(1, round(error.retry_after)))
    if error.status == 401:
        headers["WWW-Authenticate"] = 'Bearer realm="medic"'
    return problem(
        error.status,
        error.title,
        error.message,
        request_id=request_id,
        headers=headers or None,
        problem_type=error.type,
        **extra,
    )


_HTTP_DETAILS = {
    404: "no such route: see /api/v1/openapi.json for the API",
    405: "this method is not allowed on this route",
    413: "the request body is too large",
}


def from_http_exception(exc: web.HTTPException, request_id: str | None) -> web.Response:
    detail = _HTTP_DETAILS.get(exc.status, exc.reason)
    headers = {"Allow": exc.headers["Allow"]} if "Allow" in exc.headers else None
    return problem(exc.status, exc.reason, detail, request_id=request_id, headers=headers)
