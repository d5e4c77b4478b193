"""Agent streams: how many concurrent agent streams one server process holds, and what each costs.

Starts the real ``medic serve`` (``--database``: SQLite in a temp dir, or PostgreSQL in a
private cluster; the agent gRPC endpoint on a free loopback port), creates an ``agent``-scoped
key, then connects ``--agents`` simulated agents from ``--clients`` separate client processes
(so the clients' memory and CPU are not the server's). Every simulated agent has its own TCP
connection (a local subchannel pool: real agents never share a connection), calls ``Connect``,
sends a ``Hello`` with a one-script allowlist, waits for the ``Welcome`` and then sends a
``Heartbeat`` every interval the server gave it, like the real agent.

Reported:

- ``connected``: agents whose Welcome arrived, and ``online`` as the server's REST API counts
  them (``GET /api/v1/agents?status=online`` pages);
- ``rss_*``: the server's resident memory (``VmRSS``) before the first agent, with all agents
  connected after ``--settle`` seconds (heartbeats flowing), and ``kb_per_stream`` =
  (connected RSS - baseline RSS) / connected agents;
- ``connect_s``: how long connecting them all took; ``server_cpu_idle_pct``: the server's CPU
  over ``--hold`` seconds with every agent connected and heartbeating.

    .venv/bin/python bench/agent/streams.py --agents 10000
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import multiprocessing
import resource
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from bench.common import Server, cpu_seconds, database, machine, migrate, table, write_results
from tests.support.postgres import free_port


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for {pid}")


def _hello(agent_id: str) -> Any:
    from medic_core.server.grpc.proto import agent_pb2

    return agent_pb2.AgentMessage(
        hello=agent_pb2.Hello(
            agent_id=agent_id,
            hostname=f"bench-{agent_id[-8:]}",
            agent_version="0.1.0",
            os="linux",
            arch="x86_64",
            labels={"role": "bench"},
            allowlist=agent_pb2.AllowlistSummary(
                sha256="0" * 64,
                scripts=[
                    agent_pb2.ScriptRules(name="restart-nginx", sha256="1" * 64, timeout_seconds=30)
                ],
            ),
        )
    )


async def _agent(
    index: int,
    target: str,
    token: str,
    answered: asyncio.Event,
    done: asyncio.Event,
    box: list[int],
) -> None:
    """One simulated agent; ``answered`` is set once it got its Welcome or failed."""
    import grpc

    from medic_core.server.grpc.proto import agent_pb2, agent_pb2_grpc

    agent_id = f"00000000-0000-4000-8000-{index:012x}"
    channel = grpc.aio.insecure_channel(target, options=[("grpc.use_local_subchannel_pool", 1)])
    stub = agent_pb2_grpc.AgentServiceStub(channel)
    outbox: asyncio.Queue[Any] = asyncio.Queue()
    outbox.put_nowait(_hello(agent_id))

    async def requests() -> Any:
        while True:
            item = await outbox.get()
            if item is None:
                return
            yield item

    call = stub.Connect(requests(), metadata=(("authorization", f"Bearer {token}"),))
    try:
        welcome = await call.read()
        if welcome is grpc.aio.EOF or welcome.WhichOneof("body") != "welcome":
            box[1] += 1
            return
        box[0] += 1
        answered.set()
        interval = max(1, welcome.welcome.heartbeat_interval_seconds)
        beat = agent_pb2.AgentMessage(heartbeat=agent_pb2.Heartbeat())
        while not done.is_set():
            try:
                await asyncio.wait_for(done.wait(), interval)
            except TimeoutError:
                outbox.put_nowait(beat)
    except grpc.aio.AioRpcError:
        if not answered.is_set():
            box[1] += 1
    finally:
        answered.set()
        outbox.put_nowait(None)
        call.cancel()
        await channel.close()


def _client(
    first: int, count: int, target: str, token: str, ready: Any, release: Any, results: Any
) -> None:
    """One client process: ``count`` agents, connected ``--parallel`` at a time."""

    async def main() -> None:
        done = asyncio.Event()
        box = [0, 0]  # connected, failed
        tasks = []
        for start in range(first, first + count, 100):
            events = []
            for i in range(start, min(start + 100, first + count)):
                event = asyncio.Event()
                events.append(event)
                tasks.append(asyncio.create_task(_agent(i, target, token, event, done, box)))
            # Bounded connection rate: wait for this hundred to be answered before the next.
            # Stragglers past 30 s count as neither connected nor failed.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.gather(*(e.wait() for e in events)), 30)
        results.put(("connected", box[0], box[1]))
        ready.set()
        await asyncio.to_thread(release.wait)
        done.set()
        await asyncio.gather(*tasks, return_exceptions=True)

    resource.setrlimit(resource.RLIMIT_NOFILE, resource.getrlimit(resource.RLIMIT_NOFILE)[1:] * 2)
    asyncio.run(main())


def count_online(server: Server) -> int:
    total, cursor = 0, None
    while True:
        query = "?status=online&limit=500" + (f"&cursor={cursor}" if cursor else "")
        page = server.request("GET", f"/api/v1/agents{query}")
        total += len(page["items"])
        cursor = page.get("next_cursor")
        if not cursor:
            return total


def run(args: argparse.Namespace) -> dict[str, Any]:
    with database(args.database) as target:
        result = run_on(args, target.fresh_url("agents"), target.workdir)
    return {**result, "database": args.database}


def run_on(args: argparse.Namespace, url: str, workdir: Path) -> dict[str, Any]:
    migrate(url)
    grpc_port = free_port()
    server = Server(
        url,
        workdir / "server",
        env_extra={
            "MEDIC_GRPC_PORT": str(grpc_port),
            "MEDIC_AGENT_HEARTBEAT_INTERVAL": str(args.heartbeat_interval),
        },
    )
    server.start()
    ctx = multiprocessing.get_context("spawn")
    procs = []
    try:
        key = server.request("POST", "/api/v1/api-keys", {"name": "bench", "scopes": ["agent"]})
        token = key["token"]
        time.sleep(2)
        baseline = rss_kb(server.pid)
        ready = [ctx.Event() for _ in range(args.clients)]
        release = ctx.Event()
        results: Any = ctx.Queue()
        per = -(-args.agents // args.clients)
        started = time.monotonic()
        for n in range(args.clients):
            first, count = n * per, min(per, args.agents - n * per)
            proc = ctx.Process(
                target=_client,
                args=(first, count, f"127.0.0.1:{grpc_port}", token, ready[n], release, results),
            )
            proc.start()
            procs.append(proc)
        for event in ready:
            if not event.wait(args.timeout):
                raise RuntimeError("a client process did not finish connecting in time")
        connect_s = time.monotonic() - started
        connected = failed = 0
        for _ in procs:
            _, ok, bad = results.get(timeout=10)
            connected, failed = connected + ok, failed + bad
        time.sleep(args.settle)
        loaded = rss_kb(server.pid)
        cpu0 = cpu_seconds([server.pid])
        time.sleep(args.hold)
        cpu = cpu_seconds([server.pid]) - cpu0
        held = rss_kb(server.pid)
        online = count_online(server)
        release.set()
        for proc in procs:
            proc.join(60)
    finally:
        for proc in procs:
            if proc.is_alive():
                proc.kill()
        server.stop()
    return {
        "agents": args.agents,
        "connected": connected,
        "failed": failed,
        "online": online,
        "connect_s": round(connect_s, 1),
        "rss_baseline_mb": round(baseline / 1024, 1),
        "rss_connected_mb": round(loaded / 1024, 1),
        "rss_after_hold_mb": round(held / 1024, 1),
        "kb_per_stream": round((max(loaded, held) - baseline) / max(connected, 1), 1),
        "server_cpu_idle_pct": round(100 * cpu / args.hold, 1),
        "heartbeat_interval_s": args.heartbeat_interval,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--agents", type=int, default=10_000, help="simulated agents (10000)")
    parser.add_argument(
        "--database",
        choices=["sqlite", "postgresql"],
        default="sqlite",
        help="the server's database (sqlite; postgresql runs a private cluster)",
    )
    parser.add_argument("--clients", type=int, default=4, help="client processes (4)")
    parser.add_argument(
        "--heartbeat-interval", type=int, default=30, help="server's heartbeat interval, s (30)"
    )
    parser.add_argument("--settle", type=float, default=10.0, help="wait after connecting, s")
    parser.add_argument("--hold", type=float, default=60.0, help="measure CPU/RSS over, s (60)")
    parser.add_argument("--timeout", type=float, default=600.0, help="connect phase limit, s")
    args = parser.parse_args()
    result = run(args)
    print(table([result], list(result)))
    path = write_results("agent-streams", {"machine": machine(), "result": result})
    print(f"\nwritten to {path}")
    print(json.dumps(result))
    ok = result["connected"] == args.agents == result["online"]
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
