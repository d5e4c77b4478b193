"""Heartbeat ingest (JSON, batch and the curl-friendly ping form) and heartbeat history."""

from __future__ import annotations

from aiohttp import web

from medic_core.errors import BadRequest, MedicError, ValidationError
from medic_core.heartbeats import HeartbeatIn, heartbeat_in
from medic_core.heartbeats.model import MAX_MESSAGE, bounded, outcome_of
from medic_core.server.http import components, schemas
from medic_core.server.http.bodies import BodySchema
from medic_core.server.http.context import (
    checked_body,
    client_address,
    json_response,
    medic,
    page_response,
    q_int,
    q_str,
    reject_nul,
)
from medic_core.server.http.routing import QueryParam, RouteTable
from medic_core.validation import SLUG_RE, quote

routes = RouteTable()
#: Each batch item is checked against the same schema as a single heartbeat.
_ITEM = BodySchema(schemas.HEARTBEAT)
_PAGE = (QueryParam("cursor", schemas.CURSOR), QueryParam("limit", schemas.LIMIT))
RUN_ID = {"type": "string", "maxLength": 200}


def _source(request: web.Request) -> str | None:
    return client_address(request)


@routes.post(
    "/api/v1/heartbeats",
    scope="heartbeat",
    summary="Record one heartbeat. A 201 means it is committed to the database.",
    tag="heartbeats",
    body=schemas.HEARTBEAT,
    status=201,
    operation_id="sendHeartbeat",
    response=components.ref("HeartbeatAccepted"),
)
async def post_heartbeat(request: web.Request) -> web.Response:
    hb = heartbeat_in(checked_body(request), source=_source(request))
    stored = await medic(request).writer.submit(hb)
    return json_response(stored.to_dict(), status=201)


@routes.post(
    "/api/v1/heartbeats:batch",
    scope="heartbeat",
    summary="Record up to 1,000 heartbeats; each item gets its own result.",
    tag="heartbeats",
    body=schemas.HEARTBEAT_BATCH,
    body_nul_checked=False,
    operation_id="sendHeartbeatBatch",
    response=components.ref("BatchResult"),
)
async def post_batch(request: web.Request) -> web.Response:
    items = checked_body(request)["heartbeats"]
    results: list[dict[str, object] | None] = [None] * len(items)
    valid: list[tuple[int, HeartbeatIn]] = []
    for index, item in enumerate(items):
        prefix = f"heartbeats[{index}]"
        try:
            _ITEM.check(item, prefix=prefix)
            reject_nul(item, prefix)
            hb = heartbeat_in(item, source=_source(request), field_prefix=f"{prefix}.")
            valid.append((index, hb))
        except MedicError as exc:
            results[index] = _error(index, exc)
    if valid:
        stored = await medic(request).writer.submit_many([hb for _, hb in valid])
        for (index, _), outcome in zip(valid, stored, strict=True):
            if isinstance(outcome, MedicError):
                results[index] = _error(index, outcome)
            else:
                results[index] = {"index": index, "ok": True, "heartbeat": outcome.to_dict()}
    accepted = sum(1 for r in results if r and r["ok"])
    return json_response(
        {"accepted": accepted, "rejected": len(items) - accepted, "results": results}
    )


def _error(index: int, exc: MedicError) -> dict[str, object]:
    error: dict[str, object] = {"status": exc.status, "title": exc.title, "detail": exc.message}
    if isinstance(exc, ValidationError) and exc.field:
        error["field"] = exc.field
    return {"index": index, "ok": False, "error": error}


async def _ping(request: web.Request, status: str | None, exit_code: int | None) -> web.Response:
    slug = request.match_info["slug"]
    if not SLUG_RE.match(slug):
        raise ValidationError(f"{quote(slug)} is not a valid service slug", field="slug")
    if status is None:
        status = "ok" if exit_code is None else outcome_of(exit_code)
    run_id = q_str(request, "run_id")
    if run_id is not None and len(run_id) > 200:
        raise ValidationError("run_id must be at most 200 characters", field="run_id")
    message = None
    if request.method == "POST" and request.can_read_body:
        # Enough bytes for MAX_MESSAGE characters and one more (so a cut is flagged); the rest
        # of a longer body is not kept. content.read() returns what has arrived so far, so read
        # until that much is in or the body ends.
        limit, raw = MAX_MESSAGE * 4 + 1, b""
        while len(raw) < limit:
            chunk = await request.content.read(limit - len(raw))
            if not chunk:
                break
            raw += chunk
        # Cron output is free text: undecodable bytes and NUL (which PostgreSQL text cannot
        # hold) become U+FFFD rather than costing the heartbeat.
        message = raw.decode("utf-8", errors="replace").replace("\x00", "\ufffd") or None
    hb = bounded(HeartbeatIn(slug, status, run_id, exit_code, source=_source(request)), message)
    await medic(request).writer.submit(hb)
    return web.Response(text="OK\n")


_PING_DOC = "Curl-friendly heartbeat for cron lines; answers 'OK' once committed."


@routes.get(
    "/api/v1/ping/{slug}",
    scope="heartbeat",
    summary=_PING_DOC,
    tag="heartbeats",
    content_type="text/plain",
    query=(QueryParam("run_id", RUN_ID),),
    operation_id="ping",
)
@routes.post(
    "/api/v1/ping/{slug}",
    scope="heartbeat",
    summary=_PING_DOC + " The body, if any, is the message.",
    tag="heartbeats",
    content_type="text/plain",
    query=(QueryParam("run_id", RUN_ID),),
    operation_id="pingWithMessage",
)
async def ping(request: web.Request) -> web.Response:
    return await _ping(request, None, None)


_SIGNAL_DOC = "Job signal: {signal} is start, success, fail or a process exit code (0 = success)."


@routes.get(
    "/api/v1/ping/{slug}/{signal}",
    scope="heartbeat",
    summary=_SIGNAL_DOC,
    tag="heartbeats",
    content_type="text/plain",
    query=(QueryParam("run_id", RUN_ID),),
    operation_id="pingSignal",
)
@routes.post(
    "/api/v1/ping/{slug}/{signal}",
    scope="heartbeat",
    summary=_SIGNAL_DOC,
    tag="heartbeats",
    content_type="text/plain",
    query=(QueryParam("run_id", RUN_ID),),
    operation_id="pingSignalWithMessage",
)
async def ping_signal(request: web.Request) -> web.Response:
    signal = request.match_info["signal"]
    if signal in ("start", "success", "fail"):
        return await _ping(request, signal, None)
    try:
        code = int(signal)
    except ValueError:
        raise BadRequest(
            f"unknown signal {quote(signal)}: use /start, /success, /fail or /<exit code>"
        ) from None
    if not -(2**31) <= code < 2**31:
        raise ValidationError("the exit code must be a 32-bit integer", field="signal")
    return await _ping(request, None, code)


@routes.get(
    "/api/v1/services/{slug}/heartbeats",
    scope="read",
    summary="Heartbeats of a service, newest first.",
    tag="heartbeats",
    query=(QueryParam("status", {"enum": ["ok", "start", "success", "fail"]}), *_PAGE),
    operation_id="listHeartbeats",
    response=components.page("Heartbeat"),
)
async def list_heartbeats(request: web.Request) -> web.Response:
    page = await medic(request).history.heartbeats(
        request.match_info["slug"],
        status=q_str(request, "status"),
        cursor=q_str(request, "cursor"),
        limit=q_int(request, "limit"),
    )
    return page_response(page)


@routes.get(
    "/api/v1/services/{slug}/runs",
    scope="read",
    summary="Job runs of a service (start to success/fail), newest first.",
    tag="heartbeats",
    query=(QueryParam("status", {"enum": ["running", "succeeded", "failed"]}), *_PAGE),
    operation_id="listRuns",
    response=components.page("Run"),
)
async def list_runs(request: web.Request) -> web.Response:
    page = await medic(request).history.runs(
        request.match_info["slug"],
        status=q_str(request, "status"),
        cursor=q_str(request, "cursor"),
        limit=q_int(request, "limit"),
    )
    return page_response(page)
