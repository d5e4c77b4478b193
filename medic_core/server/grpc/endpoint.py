"""The gRPC endpoint agents connect to (``medic.agent.v1.AgentService/Connect``).

A transport: it authenticates the call, turns protocol messages into hub calls and what a
session sends into protocol messages, and maps how a stream ends to a gRPC status. It runs on
``grpc.aio`` in the same event loop as the HTTP server, started and stopped by ``Medic``.

Thousands of agents stay connected at once, so a stream costs as little as it can: one
coroutine per call, the handler, reads the agent's messages with ``context.read()`` (``Hello``
first, within the silence limit; then anything, each one marking the agent seen) and keeps
nothing between two of them; what the session sends is written with ``context.write()`` by a
short-lived task (``Session.send``), one write at a time. No queue, reader task or generator
lives as long as the stream. Ending a session interrupts the pending read (``_Call``); the
handler then waits for the writes sent before, and returns with the status of the ending:
``replaced`` → ``ABORTED``; ``silent`` and ``shutdown`` → ``UNAVAILABLE`` (reconnect); a
malformed ``Hello`` or another breach of the protocol (``limits.py``) → ``INVALID_ARGUMENT``
with the reason code first in the details; a ``Hello`` whose key may not speak for the agent id,
or a stream of an agent an admin revoked or moved to another key (``enrollment.py``) →
``PERMISSION_DENIED``; anything before ``Hello`` → ``FAILED_PRECONDITION``. When the agent
closes its side, the call ends ``OK``.

Each ``Hello`` is answered by the hub's executions component: the ``Welcome``, then again what
the agent has not answered. ``ExecutionUpdate``, ``OutputChunk`` and ``Heartbeat`` go to it as
domain values (``update_of``, ``chunk_of``), and the ``Execute``/``Cancel`` commands it sends
are turned into protocol messages on the way out (``message_of``).
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast
from urllib.parse import unquote

import grpc
from google.protobuf.json_format import MessageToDict

from medic_core import __version__
from medic_core.agent.enrollment import HelloRefused
from medic_core.agent.execution_values import (
    CancelCommand,
    ExecuteCommand,
    ExecutionUpdate,
    OutputChunk,
)
from medic_core.agent.hub import AgentHub
from medic_core.agent.info import AgentInfo
from medic_core.agent.limits import ProtocolViolation
from medic_core.agent.sessions import Session
from medic_core.audit import Actor
from medic_core.auth import Principal, grants
from medic_core.auth.gate import AuthGate
from medic_core.errors import MedicError, RateLimited, Unauthorized, Unavailable, ValidationError
from medic_core.net.inbound import TrustedProxies, source_of
from medic_core.server.grpc.proto import agent_pb2, agent_pb2_grpc
from medic_core.settings import Settings
from medic_core.store import is_transient_db_error

log = logging.getLogger(__name__)

_STATUS = {
    "replaced": grpc.StatusCode.ABORTED,
    "unauthenticated": grpc.StatusCode.UNAUTHENTICATED,
    "forbidden": grpc.StatusCode.PERMISSION_DENIED,
    "silent": grpc.StatusCode.UNAVAILABLE,
    "shutdown": grpc.StatusCode.UNAVAILABLE,
    "unavailable": grpc.StatusCode.UNAVAILABLE,
    "invalid": grpc.StatusCode.INVALID_ARGUMENT,
    "no_hello": grpc.StatusCode.FAILED_PRECONDITION,
    "error": grpc.StatusCode.INTERNAL,
}
_MAX_MESSAGE = 4 * 1024 * 1024
# Keepalive: the server pings an idle connection every minute and drops it when no answer comes
# in 20 s; agents may ping as often as every 10 s, also between calls.
_OPTIONS: list[tuple[str, Any]] = [
    ("grpc.keepalive_time_ms", 60_000),
    ("grpc.keepalive_timeout_ms", 20_000),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.min_recv_ping_interval_without_data_ms", 10_000),
    ("grpc.http2.max_pings_without_data", 0),
    ("grpc.max_receive_message_length", _MAX_MESSAGE),
    ("grpc.max_send_message_length", _MAX_MESSAGE),
    # Without this, a second server on the same port would start silently (SO_REUSEPORT).
    ("grpc.so_reuseport", 0),
    # Channelz (gRPC's introspection service) keeps a node per connection and per call, about
    # 0.6 KB of memory for every connected agent (grpcio 1.85); Medic does not expose channelz,
    # so it is off.
    ("grpc.enable_channelz", 0),
]

#: grpc core's own soft limit of calls waiting to be taken by the servicer.
_GRPC_PENDING_CALLS = 1_000


@dataclass(frozen=True, slots=True)
class ServerTls:
    """The gRPC port's certificate and key, and the CA that signs agents' certificates (mTLS)."""

    cert: bytes
    key: bytes
    client_ca: bytes | None

    @classmethod
    def from_settings(cls, settings: Settings) -> ServerTls | None:
        """Read the PEM files now, so a bad path stops Medic at start (``ValueError``)."""
        if not settings.grpc_tls_cert and not settings.grpc_tls_key:
            if settings.grpc_tls_client_ca:
                raise ValueError("MEDIC_GRPC_TLS_CLIENT_CA needs MEDIC_GRPC_TLS_CERT and _KEY")
            return None
        if not (settings.grpc_tls_cert and settings.grpc_tls_key):
            raise ValueError("set both MEDIC_GRPC_TLS_CERT and MEDIC_GRPC_TLS_KEY, or neither")

        def read(path: str, name: str) -> bytes:
            try:
                return Path(path).read_bytes()
            except OSError as exc:
                raise ValueError(f"cannot read {name} {path!r}: {exc}") from None

        return cls(
            cert=read(settings.grpc_tls_cert, "MEDIC_GRPC_TLS_CERT"),
            key=read(settings.grpc_tls_key, "MEDIC_GRPC_TLS_KEY"),
            client_ca=(
                read(settings.grpc_tls_client_ca, "MEDIC_GRPC_TLS_CLIENT_CA")
                if settings.grpc_tls_client_ca
                else None
            ),
        )

    def credentials(self) -> grpc.ServerCredentials:
        return grpc.ssl_server_credentials(
            [(self.key, self.cert)],
            root_certificates=self.client_ca,
            require_client_auth=self.client_ca is not None,
        )


def info_of(hello: agent_pb2.Hello) -> AgentInfo:
    """The domain's view of a ``Hello``."""
    allowlist = MessageToDict(
        hello.allowlist,
        preserving_proto_field_name=True,
        always_print_fields_with_no_presence=True,
    )
    return AgentInfo(
        agent_id=hello.agent_id,
        hostname=hello.hostname,
        version=hello.agent_version,
        os=hello.os,
        arch=hello.arch,
        labels=dict(hello.labels),
        allowlist=allowlist,
        capabilities=tuple(hello.capabilities),
        paused=hello.executions_paused,
        paused_reason=hello.paused_reason or None,
        containment=hello.containment,
        max_concurrent=hello.max_concurrent_executions,
    )


_STATES = {
    agent_pb2.EXECUTION_STATE_ACCEPTED: "accepted",
    agent_pb2.EXECUTION_STATE_REJECTED: "rejected",
    agent_pb2.EXECUTION_STATE_RUNNING: "running",
    agent_pb2.EXECUTION_STATE_SUCCEEDED: "succeeded",
    agent_pb2.EXECUTION_STATE_FAILED: "failed",
    agent_pb2.EXECUTION_STATE_TIMED_OUT: "timed_out",
    agent_pb2.EXECUTION_STATE_CANCELLED: "cancelled",
}


def update_of(message: agent_pb2.ExecutionUpdate) -> ExecutionUpdate:
    """The domain's view of an ``ExecutionUpdate`` (an unknown state reads ``unspecified``)."""
    return ExecutionUpdate(
        execution_id=message.execution_id,
        state=_STATES.get(message.state, "unspecified"),
        reason=message.reason,
        detail=message.detail,
        exit_code=message.exit_code if message.HasField("exit_code") else None,
        signal=message.signal if message.HasField("signal") else None,
        output_chunks=message.output_chunks,
        output_truncated=message.output_truncated,
        duration_ms=message.duration_ms,
        containment=message.containment,
    )


def chunk_of(message: agent_pb2.OutputChunk) -> OutputChunk:
    return OutputChunk(
        execution_id=message.execution_id,
        stream="stderr" if message.stream == agent_pb2.OUTPUT_STREAM_STDERR else "stdout",
        sequence=message.sequence,
        data=message.data,
        truncated=message.truncated,
    )


def message_of(item: object) -> agent_pb2.ServerMessage:
    """What goes on the wire for an item of a session's outbox."""
    if isinstance(item, ExecuteCommand):
        return agent_pb2.ServerMessage(
            execute=agent_pb2.Execute(
                execution_id=item.execution_id,
                script=item.script,
                args=list(item.args),
                env=item.env,
                timeout_seconds=item.timeout_seconds,
                expected_sha256=item.expected_sha256,
            )
        )
    if isinstance(item, CancelCommand):
        return agent_pb2.ServerMessage(
            cancel=agent_pb2.Cancel(execution_id=item.execution_id, reason=item.reason)
        )
    return cast(agent_pb2.ServerMessage, item)


def _ending_of(exc: Exception) -> tuple[str, str]:
    """How a stream ends when reading it failed: (reason, detail for the agent)."""
    if isinstance(exc, ValidationError):
        return "invalid", f"invalid_hello: malformed Hello: {exc}"
    if isinstance(exc, ProtocolViolation):
        return "invalid", f"{exc.reason}: {exc.detail}"
    if isinstance(exc, HelloRefused):
        return "forbidden", exc.detail
    if is_transient_db_error(exc):
        return "unavailable", "the database is unreachable: reconnect later"
    if isinstance(exc, Unavailable):
        return "unavailable", f"{exc}: reconnect later"
    if isinstance(exc, MedicError):
        return "error", str(exc)
    if isinstance(exc, grpc.RpcError | grpc.aio.BaseError):
        return "closed", "the stream broke"
    log.exception("agent stream failed", exc_info=exc)
    return "error", "internal error"


def _refuse(
    context: grpc.aio.ServicerContext[Any, Any], code: grpc.StatusCode, details: str
) -> None:
    context.set_code(code)
    context.set_details(details)


class _Call:
    """The transport of one session: the ``grpc.aio`` call it speaks on.

    grpc.aio allows one read and one write outstanding at a time; the handler is the only
    reader, and the session writes one message at a time. ``interrupt()`` stops a pending read
    by cancelling the handler's task -- only while, and only because, it waits in ``read()``,
    which turns that cancellation into "no more messages". (gRPC stops the handler the same way
    when the agent goes away; that cancellation is let through.)
    """

    __slots__ = ("_context", "_interrupted", "_reading")

    def __init__(self, context: grpc.aio.ServicerContext[Any, Any]) -> None:
        self._context = context
        self._reading: asyncio.Task[Any] | None = None
        self._interrupted = False

    async def write(self, message: object) -> None:
        await self._context.write(message_of(message))

    def interrupt(self) -> None:
        self._interrupted = True
        if self._reading is not None:
            self._reading.cancel()

    async def read(self) -> agent_pb2.AgentMessage | None:
        """The agent's next message; ``None`` once it closed its side or the session ended."""
        if self._interrupted:
            return None
        task = self._reading = asyncio.current_task()
        assert task is not None
        try:
            message = await self._context.read()
        except asyncio.CancelledError:
            if not self._interrupted or task.uncancel() > 0:
                raise
            return None
        finally:
            self._reading = None
        if message is grpc.aio.EOF:
            return None
        return cast(agent_pb2.AgentMessage, message)


@functools.lru_cache(maxsize=1024)
def _actor(name: str) -> Actor:
    """One ``Actor`` per key, shared by all the streams it opened."""
    return Actor(name)


def peer_address(peer: str | None) -> str | None:
    """The address in a gRPC peer string (``ipv4:1.2.3.4:5678``, ``ipv6:[::1]:5678``)."""
    if not peer:
        return None
    kind, _, rest = unquote(peer).partition(":")
    if kind == "ipv4":
        return rest.rpartition(":")[0] or None
    if kind == "ipv6":
        return rest.partition("]")[0].lstrip("[") or None
    return None


class AgentService(agent_pb2_grpc.AgentServiceServicer):
    def __init__(self, hub: AgentHub, gate: AuthGate, proxies: TrustedProxies) -> None:
        self._hub = hub
        self._gate = gate
        self._proxies = proxies

    async def _authenticate(self, context: grpc.aio.ServicerContext[Any, Any]) -> Principal | None:
        """The caller's principal, or None after setting the status the call must end with.

        Refusals end the call by returning with a status set, not by ``context.abort``: an abort
        raised while the client's first messages are still arriving was seen, rarely and under
        load, to end the call INTERNAL instead of with the intended status.

        The key goes through ``medic_core.auth.gate`` like on HTTP: a source over its budget of
        failed authentications is refused (``RESOURCE_EXHAUSTED``) before its key is looked up
        (the budget is shared by both ports; the source is the peer, or behind trusted proxies
        the client in ``x-forwarded-for``).
        """
        token = ""
        forwarded: list[str] = []
        for key, value in context.invocation_metadata() or ():
            if key == "authorization" and isinstance(value, str) and not token:
                scheme, _, token = value.partition(" ")
                if scheme.lower() != "bearer":
                    token = ""
            elif key == "x-forwarded-for" and isinstance(value, str):
                forwarded.append(value)
        address = self._proxies.client_address(peer_address(context.peer()), forwarded)
        try:
            principal = await self._gate.authenticate(
                token.strip(),
                source_of(address),
                transport="grpc",
                missing="send an API key with the agent scope: authorization: Bearer medic_...",
            )
        except RateLimited as exc:
            _refuse(context, grpc.StatusCode.RESOURCE_EXHAUSTED, str(exc))
            return None
        except Unauthorized as exc:
            _refuse(context, grpc.StatusCode.UNAUTHENTICATED, str(exc))
            return None
        except Exception as exc:
            if not is_transient_db_error(exc):
                raise
            _refuse(context, grpc.StatusCode.UNAVAILABLE, "the database is unreachable")
            return None
        if not grants(principal.scopes, "agent"):
            _refuse(
                context,
                grpc.StatusCode.PERMISSION_DENIED,
                f"API key {principal.key_id} lacks the 'agent' scope",
            )
            return None
        return principal

    async def Connect(  # type: ignore[override]
        self,
        request_iterator: AsyncIterator[agent_pb2.AgentMessage],
        context: grpc.aio.ServicerContext[agent_pb2.AgentMessage, agent_pb2.ServerMessage],
    ) -> None:
        """Serve one agent stream: read with ``context.read()`` here, write through the session.

        The call ends with the status of the session's ending, once everything sent before the
        ending has been written.
        """
        principal = await self._authenticate(context)
        if principal is None:
            return
        call = _Call(context)
        session = Session(_actor(principal.actor_name), call)
        try:
            try:
                await self._serve(call, session)
                session.end("closed", "the agent closed the stream")
            except Exception as exc:
                session.end(*_ending_of(exc))  # unless it was ended already
            await session.flushed()
        finally:
            session.end("closed", "the call ended")
            self._hub.closed(session)
        ending = session.ended
        if ending is not None and ending.reason != "closed":
            context.set_code(_STATUS.get(ending.reason, grpc.StatusCode.INTERNAL))
            context.set_details(ending.detail)

    async def _serve(self, call: _Call, session: Session) -> None:
        """Read the agent's messages until it closes its side or the session ends."""
        silence = self._hub.silence_seconds
        try:
            async with asyncio.timeout(silence):
                message = await call.read()
        except TimeoutError:
            session.end("no_hello", f"no Hello within {silence}s")
            return
        while message is not None:
            await self._receive(session, message)
            del message  # not held while waiting for the next one (a Hello is large)
            message = await call.read()

    async def _receive(self, session: Session, message: agent_pb2.AgentMessage) -> None:
        hub = self._hub
        kind = message.WhichOneof("body")
        if kind == "hello":
            replay = await hub.hello(session, info_of(message.hello))
            if session.ended is not None:
                return  # replaced by a later stream of its agent in the same batch, or ending
            welcome = agent_pb2.Welcome(
                session_id=session.session_id,
                heartbeat_interval_seconds=hub.heartbeat_interval,
                server_version=__version__,
            )
            # The Welcome, then the redelivery of what the agent has not answered.
            await hub.executions.welcome(
                session, agent_pb2.ServerMessage(welcome=welcome), replay=replay
            )
        elif session.agent_id is None:
            session.end("no_hello", "the first message of a stream must be a Hello")
        else:
            # Any message proves the agent alive. Unknown bodies are ignored (additive v1).
            hub.seen(session)
            if kind == "execution_update":
                await hub.executions.update(session, update_of(message.execution_update))
            elif kind == "output_chunk":
                await hub.executions.output(session, chunk_of(message.output_chunk))
            elif kind == "heartbeat":
                await hub.executions.heartbeat(session, message.heartbeat.running_execution_ids)


class AgentEndpoint:
    """The ``grpc.aio`` server on ``host:port`` (TLS when configured)."""

    def __init__(
        self,
        hub: AgentHub,
        gate: AuthGate,
        proxies: TrustedProxies,
        *,
        host: str,
        port: int,
        tls: ServerTls | None = None,
        max_pending_calls: int = 10_000,
    ) -> None:
        self._hub = hub
        # grpc core holds the calls that arrive faster than the servicer takes them (a fleet
        # reconnecting at once) and, past 1,000 of them, starts cancelling new ones at random
        # (1,000 to 3,000: "random early detection"): an agent cancelled so backs off, and a
        # fleet reconnecting after a restart came back over minutes instead of seconds. The
        # bound is the Hello queue's (never below grpc's own 1,000): as many agents may wait
        # for their call to be taken as may wait for their Hello to be stored; past it, calls
        # are refused.
        pending = max(max_pending_calls, _GRPC_PENDING_CALLS)
        self._options = [
            *_OPTIONS,
            ("grpc.server.max_pending_requests", pending),
            ("grpc.server.max_pending_requests_hard_limit", pending),
        ]
        self._service = AgentService(hub, gate, proxies)
        self._address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        self._tls = tls
        self._server: grpc.aio.Server | None = None
        self.port = port

    async def start(self) -> None:
        server = grpc.aio.server(options=self._options)
        agent_pb2_grpc.add_AgentServiceServicer_to_server(self._service, server)
        try:
            if self._tls is not None:
                bound = server.add_secure_port(self._address, self._tls.credentials())
            else:
                bound = server.add_insecure_port(self._address)
        except RuntimeError as exc:
            raise OSError(f"cannot listen for agents on {self._address}: {exc}") from None
        if not bound:
            raise OSError(f"cannot listen for agents on {self._address}")
        self.port = bound
        await server.start()
        self._server = server
        log.info(
            "agent endpoint listening",
            extra={"address": self._address, "tls": self._tls is not None},
        )

    async def stop(self, grace: float = 2.0) -> None:
        """End every agent stream (``UNAVAILABLE``: reconnect), then stop the server."""
        if self._server is None:
            return
        self._hub.end_sessions()
        await self._server.stop(grace)
        self._server = None
