"""The HTTP port itself: aiohttp's server, with limits on connections and on request heads.

Anyone who can reach the port can open connections and send bytes before any key is checked,
so what a connection may hold, and for how long, is bounded here, at the connection level:

- **Connections** (``MEDIC_HTTP_MAX_CONNECTIONS`` in total, ``..._PER_SOURCE`` per client
  source: an IPv4 address or an IPv6 /64; trusted proxies are exempt from the per-source cap,
  since every client behind them shares their address). A connection over a cap is closed at
  once, without a response. Why not a 503: answering needs the request read first, and reading
  it is exactly the resource being capped; a response written before the request is read is
  often lost anyway (closing a socket with unread data sends a reset, which discards what the
  client has not read yet); and clients treat a closed connection like a 503 -- retry later.
  The metric and the log say what happened.
- **Request head time** (``MEDIC_HTTP_HEADER_TIMEOUT``): from the accept, and on a kept-alive
  connection from the first byte of the next request, the request line and headers must be
  complete within it. A head that is still incomplete then is answered 408 (a connection that
  sent nothing is closed silently) and the connection closed. This is the slow-header
  ("slowloris") bound: aiohttp has none of its own besides its keep-alive timer.
- **Idle time** (``MEDIC_HTTP_IDLE_TIMEOUT``): a kept-alive connection with no request under way
  is closed after it. Counting the header time from the first byte of a request rather than
  from the end of the previous response (as Go's ``ReadHeaderTimeout``/``IdleTimeout`` do) lets
  a load balancer keep idle connections longer than the header time: the ALB keeps them 60 s
  and expects the target to keep them longer, or requests race a closing connection (502s).
- **Request body time** (``MEDIC_HTTP_BODY_TIMEOUT``): the body must have arrived within it of
  the request being taken up; otherwise reading it raises ``BodyTimeout`` (408) and the
  connection is closed. (aiohttp bounds the body's size, ``MEDIC_MAX_BODY_BYTES``, not its time.)
- **Head size**: the request target (``MEDIC_HTTP_MAX_URL_BYTES``, 414), the whole head, request
  line and headers (``MEDIC_HTTP_MAX_HEADER_BYTES``, 431; also the limit of one header line),
  the number of header lines (``MEDIC_HTTP_MAX_HEADERS``, 431). Any other unparseable head is a
  400. Each is a problem document like every other error, not aiohttp's plain text; the head
  total is counted here for heads that begin while the connection is idle (a pipelined head that
  arrives while a request is handled is bounded by the line and count limits).

Every refusal and close is counted (``medic_preauth_refusals_total{transport="http",reason}``,
``medic_http_connections_closed_total{reason}``, ``medic_http_connections_open``).

Built on aiohttp's own classes: ``GuardedServer`` (a ``web.Server``: the protocol factory, one
``GuardedRequestHandler`` per connection) made by ``GuardedRunner`` (an ``AppRunner`` whose
``_make_server`` -- the hook aiohttp's own runners implement -- wraps the application's server).
The handler relies on two attributes of aiohttp's ``RequestHandler`` that are not public API:
``_request_count`` (request heads parsed on the connection) and ``_loop``, and on the order in
which aiohttp calls ``data_received``/``finish_response``; the tests in
``tests/integration/test_http_connection_limits.py`` exercise each limit through a real socket,
so an aiohttp upgrade that changes them fails there.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

from aiohttp import web
from aiohttp.http_exceptions import BadHttpMessage, HttpProcessingError, LineTooLong
from aiohttp.web_protocol import RequestHandler
from aiohttp.web_request import BaseRequest

from medic_core.errors import RequestTimeout
from medic_core.net.inbound import TrustedProxies, parse_ip, source_of
from medic_core.observability.metrics import Metrics
from medic_core.server.http.middleware import new_request_id
from medic_core.server.http.problems import problem, raw_problem

if TYPE_CHECKING:
    from medic_core.settings import Settings

log = logging.getLogger(__name__)


class BodyTimeout(RequestTimeout, TimeoutError):
    """The request body did not arrive in time.

    Raised from the body read into the handler (the errors middleware answers 408). It is also a
    ``TimeoutError`` so that aiohttp, when it drains an unread body after the response, stops
    quietly and closes the connection instead of logging an unhandled error.
    """


@dataclass(frozen=True, slots=True)
class HttpLimits:
    header_timeout: float
    idle_timeout: float
    body_timeout: float
    max_connections: int
    max_connections_per_source: int
    max_url_bytes: int
    max_header_bytes: int
    max_headers: int

    @classmethod
    def from_settings(cls, settings: Settings) -> HttpLimits:
        """The limits, checked (``ValueError`` naming the setting), so a bad value stops Medic
        at start."""
        limits = cls(
            header_timeout=settings.http_header_timeout,
            idle_timeout=settings.http_idle_timeout,
            body_timeout=settings.http_body_timeout,
            max_connections=settings.http_max_connections,
            max_connections_per_source=settings.http_max_connections_per_source,
            max_url_bytes=settings.http_max_url_bytes,
            max_header_bytes=settings.http_max_header_bytes,
            max_headers=settings.http_max_headers,
        )
        for name, value in (
            ("HEADER_TIMEOUT", limits.header_timeout),
            ("IDLE_TIMEOUT", limits.idle_timeout),
            ("BODY_TIMEOUT", limits.body_timeout),
            ("MAX_CONNECTIONS", limits.max_connections),
            ("MAX_CONNECTIONS_PER_SOURCE", limits.max_connections_per_source),
            ("MAX_URL_BYTES", limits.max_url_bytes),
            ("MAX_HEADERS", limits.max_headers),
        ):
            if value <= 0:
                raise ValueError(f"MEDIC_HTTP_{name} must be positive, got {value}")
        if limits.max_header_bytes <= limits.max_url_bytes:
            raise ValueError(
                f"MEDIC_HTTP_MAX_HEADER_BYTES ({limits.max_header_bytes}) must be larger than "
                f"MEDIC_HTTP_MAX_URL_BYTES ({limits.max_url_bytes}): the head holds the URL"
            )
        return limits


def head_error(exc: BaseException | None, limits: HttpLimits) -> tuple[int, str, str]:
    """(status, metric reason, detail) for a request head aiohttp's parser refused."""
    if isinstance(exc, LineTooLong):
        # Both the URL and header lines raise LineTooLong; the limit it names tells which (the
        # two limits differ: see HttpLimits.from_settings).
        if len(exc.args) > 1 and exc.args[1] == limits.max_url_bytes:
            return (
                414,
                "url_too_long",
                f"the request target (path and query) is longer than {limits.max_url_bytes} bytes",
            )
        return (
            431,
            "header_too_large",
            f"a header line is longer than {limits.max_header_bytes} bytes",
        )
    if isinstance(exc, BadHttpMessage) and "Too many headers" in exc.message:
        return 431, "header_too_large", f"the request has more than {limits.max_headers} headers"
    text = exc.message if isinstance(exc, HttpProcessingError) else str(exc or "")
    first = (text.strip().splitlines() or ["unreadable request head"])[0][:200]
    return 400, "malformed", f"the request is not valid HTTP/1.1: {first}"


class _Connections:
    """Open connections, in total and per source; what the caps are checked against."""

    def __init__(self, limits: HttpLimits, proxies: TrustedProxies, metrics: Metrics) -> None:
        self._limits = limits
        self._proxies = proxies
        self._metrics = metrics
        self.total = 0
        self._per_source: dict[str, int] = {}  # at most max_connections entries

    def admit(self, peer: Any) -> tuple[str | None, str]:
        """(the cap the connection is over, or None, its source)."""
        address = peer[0] if isinstance(peer, tuple) and peer else None
        source = source_of(address)
        if self.total >= self._limits.max_connections:
            return "max_connections", source
        held = self._per_source.get(source, 0)
        if held >= self._limits.max_connections_per_source and not self._proxies.trusts(
            parse_ip(address) if address else None
        ):
            return "max_connections_per_source", source
        self.total += 1
        self._per_source[source] = held + 1
        self._metrics.http_connections_open.set(self.total)
        return None, source

    def release(self, source: str) -> None:
        self.total -= 1
        held = self._per_source.get(source, 0) - 1
        if held > 0:
            self._per_source[source] = held
        else:
            self._per_source.pop(source, None)
        self._metrics.http_connections_open.set(self.total)


class GuardedServer(web.Server):
    """aiohttp's ``Server`` (the protocol factory) making ``GuardedRequestHandler``s, and the
    body timer of each request."""

    def __init__(
        self,
        handler: Any,
        *,
        request_factory: Any,
        limits: HttpLimits,
        proxies: TrustedProxies,
        metrics: Metrics,
        **kwargs: Any,
    ) -> None:
        super().__init__(handler, request_factory=self._request, **kwargs)
        self._inner_factory = request_factory
        self.limits = limits
        self.metrics = metrics
        self.open_connections = _Connections(limits, proxies, metrics)
        self._refused_logged = 0.0

    def __call__(self) -> GuardedRequestHandler:
        return GuardedRequestHandler(self, loop=self._loop, **self._kwargs)

    def refused(self, reason: str, source: str) -> None:
        self.metrics.http_connections_closed.labels(reason).inc()
        now = self._loop.time()
        if now - self._refused_logged >= 10.0:  # one line per 10 s, not one per connection
            self._refused_logged = now
            log.warning(
                "HTTP connection refused: over %s",
                reason.replace("_", " "),
                extra={"source": source, "open": self.open_connections.total},
            )

    def _request(
        self, message: Any, payload: Any, protocol: Any, writer: Any, task: Any
    ) -> BaseRequest:
        request: BaseRequest = self._inner_factory(message, payload, protocol, writer, task)
        if not payload.is_eof():
            timer = self._loop.call_later(
                self.limits.body_timeout, self._body_expired, payload, protocol
            )
            payload.on_eof(timer.cancel)
        return request

    def _body_expired(self, payload: Any, protocol: RequestHandler) -> None:
        if payload.is_eof() or protocol.transport is None:
            return
        self.metrics.http_connections_closed.labels("body_timeout").inc()
        payload.set_exception(
            BodyTimeout(
                f"the request body did not arrive within {self.limits.body_timeout:g} seconds"
            )
        )


class GuardedRequestHandler(RequestHandler):
    """One connection: aiohttp's protocol with the caps, timers and head limits above."""

    __slots__ = (
        "_answered",
        "_head_bytes",
        "_head_tail",
        "_server",
        "_source",
        "_timer",
        "_timer_kind",
    )

    def __init__(self, manager: GuardedServer, **kwargs: Any) -> None:
        super().__init__(manager, **kwargs)
        self._server = manager  # aiohttp drops its own reference when the connection is lost
        self._source: str | None = None  # set once admitted
        self._timer: asyncio.TimerHandle | None = None
        self._timer_kind: str | None = None  # "head" or "idle"
        self._head_bytes = 0  # of the head under way
        self._head_tail = b""  # its last 3 bytes: the blank line that ends it may straddle reads
        self._answered = 0

    # -- the connection ----------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        tcp = cast(asyncio.Transport, transport)
        refusal, source = self._server.open_connections.admit(tcp.get_extra_info("peername"))
        if refusal is not None:
            self._server.refused(refusal, source)
            tcp.abort()  # no parsing, no timer, no buffer
            return
        self._source = source
        super().connection_made(transport)
        self._arm("head", self._server.limits.header_timeout)

    def connection_lost(self, exc: BaseException | None) -> None:
        self._disarm()
        if self._source is not None:
            self._server.open_connections.release(self._source)
            self._source = None
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if data and self._timer_kind == "idle":
            self._arm("head", self._server.limits.header_timeout)  # the next request began
        heading = self._timer_kind == "head"
        if heading and data and self._head_too_large(data):
            return
        parsed = self._request_count
        super().data_received(data)
        if heading and self._request_count != parsed:
            self._disarm()  # the head is complete: its request is taken up

    def _head_too_large(self, data: bytes) -> bool:
        """Count ``data`` into the head under way (up to the blank line that ends it, if it is
        in ``data``); refuse the request (431) once the head is over the limit, before parsing.
        """
        seen, tail = self._head_bytes, self._head_tail
        joined = tail + data
        end = joined.find(b"\r\n\r\n")
        size = seen + len(data) if end < 0 else seen - len(tail) + end + 4
        self._head_bytes = size
        self._head_tail = joined[-3:]
        limit = self._server.limits.max_header_bytes
        if size <= limit or self.transport is None:
            return False
        self._refuse_head(431, "header_too_large", f"the request head is larger than {limit} bytes")
        return True

    async def finish_response(
        self, request: BaseRequest, resp: web.StreamResponse, start_time: float | None
    ) -> tuple[web.StreamResponse, bool]:
        result = await super().finish_response(request, resp, start_time)
        self._answered += 1
        if self._answered == self._request_count and self.transport is not None:
            # Nothing parsed is waiting: idle from here, once the body (if the handler left
            # any of it unread) has arrived -- until then the bytes coming are not a head.
            body = request.content
            if body.is_eof():
                self._arm("idle", self._server.limits.idle_timeout)
            else:
                body.on_eof(self._idle_after_body)
        return result

    def _idle_after_body(self) -> None:
        if self.transport is not None and self._answered == self._request_count:
            self._arm("idle", self._server.limits.idle_timeout)

    # -- timers ------------------------------------------------------------------------------

    def _arm(self, kind: str, seconds: float) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer_kind = kind
        self._timer = self._loop.call_later(seconds, self._expired)
        if kind == "head":
            self._head_bytes = 0
            self._head_tail = b""

    def _disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer = None
        self._timer_kind = None

    def _expired(self) -> None:
        kind = self._timer_kind
        self._timer = None
        self._timer_kind = None
        if self.transport is None:
            return
        if kind == "idle":
            self._server.metrics.http_connections_closed.labels("idle_timeout").inc()
            self.force_close()
            return
        self._server.metrics.http_connections_closed.labels("header_timeout").inc()
        if self._head_bytes:
            timeout = self._server.limits.header_timeout
            self.transport.write(
                raw_problem(
                    408,
                    "Request timeout",
                    f"the request head (request line and headers) did not arrive within "
                    f"{timeout:g} seconds",
                    request_id=new_request_id(),
                )
            )
        self.force_close()  # the transport sends what was written, then closes

    # -- refusals ----------------------------------------------------------------------------

    def _refuse_head(self, status: int, reason: str, detail: str) -> None:
        self._server.metrics.preauth_refusals.labels("http", reason).inc()
        assert self.transport is not None
        self.transport.write(
            raw_problem(status, _TITLES[status], detail, request_id=new_request_id())
        )
        self._disarm()
        self.force_close()

    def handle_error(
        self,
        request: BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        """The answer to a request head the parser refused (aiohttp calls this with 400), or
        to an error that escaped the middleware (500): a problem document, then close."""
        if request.writer.output_size > 0:
            raise ConnectionError("the response has begun: no error document can follow it")
        request_id = new_request_id()
        if status == 400:
            status, reason, detail = head_error(exc, self._server.limits)
            self._server.metrics.preauth_refusals.labels("http", reason).inc()
            log.info("HTTP request head refused (%s): %s", status, detail)
            response = problem(
                status,
                _TITLES[status],
                detail,
                request_id=request_id,
                headers={"X-Request-Id": request_id},
            )
        else:
            log.error("unhandled error outside the middleware", exc_info=exc)
            response = problem(
                500,
                "Internal error",
                "Medic failed to handle this request; the error is logged with this request_id",
                request_id=request_id,
                headers={"X-Request-Id": request_id},
            )
        response.force_close()
        return response


_TITLES = {
    400: "Bad request",
    408: "Request timeout",
    414: "URI too long",
    431: "Request header fields too large",
}


class GuardedRunner(web.AppRunner):
    """``web.AppRunner`` whose server is a ``GuardedServer``: what ``medic serve`` listens with."""

    __slots__ = ("_limits", "_metrics", "_proxies")

    def __init__(
        self,
        app: web.Application,
        *,
        limits: HttpLimits,
        proxies: TrustedProxies,
        metrics: Metrics,
        **kwargs: Any,
    ) -> None:
        super().__init__(
            app,
            handle_signals=False,
            # aiohttp's own keep-alive timer is a backstop that never fires before Medic's
            # (idle, then at most a head's time), so Medic's timers decide and count.
            keepalive_timeout=limits.idle_timeout + limits.header_timeout + 1.0,
            max_line_size=limits.max_url_bytes,
            max_field_size=limits.max_header_bytes,
            max_headers=limits.max_headers,
            **kwargs,
        )
        self._limits = limits
        self._proxies = proxies
        self._metrics = metrics

    async def _make_server(self) -> web.Server:
        plain = await super()._make_server()
        return GuardedServer(
            plain.request_handler,
            request_factory=plain.request_factory,
            limits=self._limits,
            proxies=self._proxies,
            metrics=self._metrics,
            **self._kwargs,
        )
