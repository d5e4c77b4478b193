"""A bare grpclib server for ``medic.agent.v1.AgentService/Connect``: ``grpclib_server.py PORT``.

grpclib is gRPC on the pure-Python ``h2`` HTTP/2 stack (no grpc core). It is not a dependency
of Medic: install it into a scratch virtualenv (with grpcio and protobuf, for the generated
messages) and pass that interpreter to ``bench/agent/floor.py --python``. Exits 3 when grpclib
is missing.

Listens on 127.0.0.1:PORT and prints ``ready`` once it does. Every stream: read the ``Hello``,
answer one ``Welcome``, then read (and drop) whatever the agent sends until it hangs up. Nothing
is stored and nothing is authenticated.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))  # medic_core.server.grpc.proto

from medic_core.server.grpc.proto import agent_pb2

METHOD = "/medic.agent.v1.AgentService/Connect"


class Servicer:
    async def connect(self, stream: Any) -> None:
        if await stream.recv_message() is None:
            return
        welcome = agent_pb2.Welcome(session_id="bare", heartbeat_interval_seconds=30)
        await stream.send_message(agent_pb2.ServerMessage(welcome=welcome))
        async for _ in stream:
            pass

    def __mapping__(self) -> dict[str, Any]:
        from grpclib.const import Cardinality, Handler

        return {
            METHOD: Handler(
                self.connect,
                Cardinality.STREAM_STREAM,
                agent_pb2.AgentMessage,
                agent_pb2.ServerMessage,
            )
        }


async def serve(port: int) -> None:
    from grpclib.server import Server

    server = Server([Servicer()])
    await server.start("127.0.0.1", port)
    print("ready", flush=True)
    await server.wait_closed()


def main() -> int:
    if len(sys.argv) != 2 or not sys.argv[1].isdigit():
        print(f"usage: {sys.argv[0]} PORT", file=sys.stderr)
        return 2
    try:
        import grpclib  # noqa: F401
    except ImportError:
        print(
            "grpclib is not installed: pip install grpclib into a scratch venv, "
            "see bench/README.md",
            file=sys.stderr,
        )
        return 3
    asyncio.run(serve(int(sys.argv[1])))
    return 0


if __name__ == "__main__":
    sys.exit(main())
