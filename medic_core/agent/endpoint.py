"""The gRPC endpoint agents connect to (``medic.agent.v1.AgentService/Connect``).

A transport: it authenticates the call, turns protocol messages into hub calls and the hub's
outbox into protocol messages, and maps how a stream ends to a gRPC status. It runs on
``grpc.aio`` in the same event loop as the HTTP server, started and stopped by ``Medic``.

Each call gets a ``Session``. One task reads the agent's messages (``Hello`` first, within the
silence limit; then anything, each one marking the agent seen); the call itself writes what the
session's outbox holds until an ``Ending`` arrives. Endings map to statuses: ``replaced`` →
``ABORTED``; ``silent`` and ``shutdown`` → ``UNAVAILABLE`` (reconnect); a malformed ``Hello`` →
``INVALID_ARGUMENT``; anything before ``Hello`` → ``FAILED_PRECONDITION``. When the agent closes
its side, the call ends ``OK``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import grpc
from google.protobuf.json_format import MessageToDict

from medic_core import __version__
from medic_core.agent.hub import AgentHub, AgentInfo, Ending, Session
from medic_core.agent.proto import agent_pb2, agent_pb2_grpc
from medic_core.audit import Actor
from medic_core.auth import ApiKeys, Principal, grants
from medic_core.errors import MedicError, Unauthorized, ValidationError
from medic_core.settings import Settings
from medic_core.store import is_transient_db_error

log = logging.getLogger(__name__)

_STATUS = {
    "replaced": grpc.StatusCode.ABORTED,
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
]


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
    )


def _ending_of(exc: Exception) -> tuple[str, str]:
    """How a stream ends when reading it failed: (reason, detail for the agent)."""
    if isinstance(exc, ValidationError):
        return "invalid", f"malformed Hello: {exc}"
    if is_transient_db_error(exc):
        return "unavailable", "the database is unreachable: reconnect later"
    if isinstance(exc, MedicError):
        return "error", str(exc)
    if isinstance(exc, grpc.RpcError | grpc.aio.BaseError):
        return "closed", "the stream broke"
    log.exception("agent stream failed", exc_info=exc)
    return "error", "internal error"


class AgentService(agent_pb2_grpc.AgentServiceServicer):
    def __init__(self, hub: AgentHub, keys: ApiKeys) -> None:
        self._hub = hub
        self._keys = keys

    async def _authenticate(self, context: grpc.aio.ServicerContext[Any, Any]) -> Principal:
        token = ""
        for key, value in context.invocation_metadata() or ():
            if key == "authorization" and isinstance(value, str):
                scheme, _, token = value.partition(" ")
                if scheme.lower() != "bearer":
                    token = ""
                break
        if not token.strip():
            await context.abort(
                grpc.StatusCode.UNAUTHENTICATED,
                "send an API key with the agent scope: authorization: Bearer medic_...",
            )
        try:
            principal = await self._keys.authenticate(token.strip())
        except Unauthorized as exc:
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, str(exc))
        except Exception as exc:
            if not is_transient_db_error(exc):
                raise
            await context.abort(grpc.StatusCode.UNAVAILABLE, "the database is unreachable")
        if not grants(principal.scopes, "agent"):
            await context.abort(
                grpc.StatusCode.PERMISSION_DENIED,
                f"API key {principal.key_id} lacks the 'agent' scope",
            )
        return principal

    async def Connect(
        self,
        request_iterator: AsyncIterator[agent_pb2.AgentMessage],
        context: grpc.aio.ServicerContext[agent_pb2.AgentMessage, agent_pb2.ServerMessage],
    ) -> AsyncIterator[agent_pb2.ServerMessage]:
        principal = await self._authenticate(context)
        session = Session(Actor(principal.actor_name))
        reader = asyncio.create_task(self._read(request_iterator, session), name="agent-read")
        try:
            while True:
                item = await session.outbox.get()
                if isinstance(item, Ending):
                    if item.reason == "closed":
                        return
                    await context.abort(
                        _STATUS.get(item.reason, grpc.StatusCode.INTERNAL), item.detail
                    )
                yield cast(agent_pb2.ServerMessage, item)
        finally:
            reader.cancel()
            await asyncio.gather(reader, return_exceptions=True)
            if session.ended is None:
                session.end("closed", "the call ended")
            self._hub.closed(session)

    async def _read(
        self, requests: AsyncIterator[agent_pb2.AgentMessage], session: Session
    ) -> None:
        try:
            await self._handle(requests.__aiter__(), session)
            session.end("closed", "the agent closed the stream")
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            if session.ended is None:  # else the stream was ended already: nothing to say
                session.end(*_ending_of(exc))

    async def _handle(
        self, requests: AsyncIterator[agent_pb2.AgentMessage], session: Session
    ) -> None:
        hub = self._hub
        try:
            async with asyncio.timeout(hub.silence_seconds):
                first = await anext(requests, None)
        except TimeoutError:
            session.end("no_hello", f"no Hello within {hub.silence_seconds}s")
            return
        message = first
        while message is not None:
            kind = message.WhichOneof("body")
            if kind == "hello":
                await hub.hello(session, info_of(message.hello))
                session.send(
                    agent_pb2.ServerMessage(
                        welcome=agent_pb2.Welcome(
                            session_id=session.session_id,
                            heartbeat_interval_seconds=hub.heartbeat_interval,
                            server_version=__version__,
                        )
                    )
                )
            elif session.agent_id is None:
                session.end("no_hello", "the first message of a stream must be a Hello")
                return
            else:
                # Heartbeats, and (until dispatch lands) execution updates and output chunks:
                # any message proves the agent alive. Unknown bodies are ignored (additive v1).
                hub.seen(session)
            message = await anext(requests, None)


class AgentEndpoint:
    """The ``grpc.aio`` server on ``host:port`` (TLS when configured)."""

    def __init__(
        self,
        hub: AgentHub,
        keys: ApiKeys,
        *,
        host: str,
        port: int,
        tls: ServerTls | None = None,
    ) -> None:
        self._hub = hub
        self._service = AgentService(hub, keys)
        self._address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        self._tls = tls
        self._server: grpc.aio.Server | None = None
        self.port = port

    async def start(self) -> None:
        server = grpc.aio.server(options=_OPTIONS)
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
