"""A bare grpc.aio server for ``medic.agent.v1.AgentService/Connect``: ``grpcaio_server.py PORT``.

Listens on 127.0.0.1:PORT and prints ``ready`` once it does. Every stream: read the ``Hello``,
answer one ``Welcome``, then read (and drop) whatever the agent sends until it hangs up. Nothing
is stored and nothing is authenticated: what is left is grpcio's own cost per stream, with the
servicer written like Medic's (``context.read``/``context.write``, channelz off). Used by
``bench/agent/floor.py``.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))  # medic_core.server.grpc.proto

import grpc

from medic_core.server.grpc.proto import agent_pb2, agent_pb2_grpc


class Servicer(agent_pb2_grpc.AgentServiceServicer):
    async def Connect(self, request_iterator: Any, context: Any) -> None:
        if await context.read() is grpc.aio.EOF:
            return
        welcome = agent_pb2.Welcome(session_id="bare", heartbeat_interval_seconds=30)
        await context.write(agent_pb2.ServerMessage(welcome=welcome))
        while await context.read() is not grpc.aio.EOF:
            pass


async def serve(port: int) -> None:
    # no SO_REUSEPORT: a port already in use is an error, not a second server sharing it
    options = [("grpc.enable_channelz", 0), ("grpc.so_reuseport", 0)]
    server = grpc.aio.server(options=options)
    agent_pb2_grpc.add_AgentServiceServicer_to_server(Servicer(), server)
    if server.add_insecure_port(f"127.0.0.1:{port}") != port:
        raise SystemExit(f"could not listen on 127.0.0.1:{port}")
    await server.start()
    print("ready", flush=True)
    await server.wait_for_termination()


if __name__ == "__main__":
    if len(sys.argv) != 2 or not sys.argv[1].isdigit():
        raise SystemExit(f"usage: {sys.argv[0]} PORT")
    asyncio.run(serve(int(sys.argv[1])))
