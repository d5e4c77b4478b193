"""Ingest benchmark: durable heartbeats per second through one ``medic serve`` process.

For each database and scenario it starts a fresh server on a fresh database (PostgreSQL: a
private cluster on a free port, fsync on), registers ``--services`` services over the API,
creates a heartbeat-scoped key, and drives the ingest endpoint with wrk over loopback. Then it
stops the server (SIGTERM: the writer drains) and counts the heartbeats actually stored.

    durable heartbeats/s = rows stored during the measured run / run duration

and checks ``stored >= heartbeats acknowledged with a 2xx`` (a 2xx promises a commit; requests
still in flight when wrk stops may be stored without wrk counting their answer, never the
reverse). Latency percentiles are wrk's, per request (closed loop, one request in flight per
connection). Results: a table on stdout and JSON under bench/results/.

    .venv/bin/python bench/ingest/run.py --database both --duration 30 --connections 128
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from bench.common import (
    Server,
    Target,
    cpu_seconds,
    database,
    machine,
    table,
    write_results,
)

LUA = Path(__file__).with_name("heartbeats.lua")
PREFIX = "bench-"
SCENARIOS = ("single", "batch", "ping")


def register(server: Server, count: int, concurrency: int = 32) -> str:
    """Create ``count`` services and a heartbeat-scoped key; return the key's token."""
    import aiohttp

    async def run() -> str:
        headers = {"Authorization": f"Bearer {server.token}"}
        async with aiohttp.ClientSession(server.base, headers=headers) as http:
            async with http.post(
                "/api/v1/api-keys", json={"name": "bench ingest", "scopes": ["heartbeat"]}
            ) as resp:
                resp.raise_for_status()
                token = str((await resp.json())["token"])
            numbers = iter(range(count))

            async def worker() -> None:
                for n in numbers:
                    body = {
                        "slug": f"{PREFIX}{n}",
                        # An hour between heartbeats: nothing falls due while the benchmark runs.
                        "expectation": {"kind": "interval", "period": 3600},
                    }
                    async with http.post("/api/v1/services", json=body) as resp:
                        resp.raise_for_status()

            await asyncio.gather(*(worker() for _ in range(concurrency)))
        return token

    return asyncio.run(run())


def count_heartbeats(url: str) -> int:
    from sqlalchemy import func, select

    from medic_core.store import Database
    from medic_core.store.models import Heartbeat

    async def run() -> int:
        db = Database(url)
        try:
            async with db.sessions() as session:
                return int(await session.scalar(select(func.count()).select_from(Heartbeat)) or 0)
        finally:
            await db.close()

    return asyncio.run(run())


def wrk(
    server: Server,
    token: str,
    *,
    mode: str,
    services: int,
    batch: int,
    connections: int,
    threads: int,
    duration: float,
) -> dict[str, Any]:
    env = {
        **os.environ,
        "MEDIC_BENCH_KEY": token,
        "MEDIC_BENCH_SERVICES": str(services),
        "MEDIC_BENCH_PREFIX": PREFIX,
        "MEDIC_BENCH_MODE": mode,
        "MEDIC_BENCH_BATCH": str(batch),
    }
    cmd = [
        "wrk",
        f"-t{threads}",
        f"-c{connections}",
        f"-d{max(1, round(duration))}s",
        "--timeout",
        "10s",
        "--latency",
        "-s",
        str(LUA),
        server.base,
    ]
    out = subprocess.run(
        cmd, env=env, capture_output=True, text=True, timeout=duration + 60, check=False
    )
    if out.returncode != 0:
        raise RuntimeError(f"wrk failed ({out.returncode}): {out.stderr}")
    line = next((ln for ln in out.stdout.splitlines() if ln.startswith("WRK_JSON ")), None)
    if line is None:
        raise RuntimeError(f"wrk printed no summary:\n{out.stdout}\n{out.stderr}")
    result: dict[str, Any] = json.loads(line.removeprefix("WRK_JSON "))
    result["cmd"] = " ".join(cmd)
    result["text"] = out.stdout
    return result


def run_scenario(target: Target, mode: str, args: argparse.Namespace) -> dict[str, Any]:
    url = target.fresh_url(f"ingest-{mode}")
    env = {"MEDIC_WRITER_QUEUE": str(args.writer_queue)} if args.writer_queue else {}
    if args.writer_batch:
        env["MEDIC_WRITER_BATCH"] = str(args.writer_batch)
    server = Server(url, target.workdir / f"server-{mode}", env_extra=env, loop=args.loop)
    server.start()
    try:
        token = register(server, args.services)
        per_request = args.batch if mode == "batch" else 1
        connections = args.batch_connections if mode == "batch" else args.connections
        common = {
            "mode": mode,
            "services": args.services,
            "batch": args.batch,
            "connections": connections,
            "threads": args.threads,
        }
        if args.warmup > 0:
            wrk(server, token, duration=args.warmup, **common)
            time.sleep(1.0)  # let the warm-up's last requests commit
        baseline = count_heartbeats(url)
        load0 = os.getloadavg()[0]
        metrics0 = server.metrics()
        cpu0, db0, t0 = cpu_seconds([server.pid]), target.postgres_cpu(), time.monotonic()
        result = wrk(server, token, duration=args.duration, **common)
        cpu1, db1, t1 = cpu_seconds([server.pid]), target.postgres_cpu(), time.monotonic()
        metrics1 = server.metrics()
    finally:
        code = server.stop()
    stored = count_heartbeats(url) - baseline
    seconds = result["duration_us"] / 1e6
    failed = result["errors"]["status"]
    ok_requests = result["requests"] - failed
    acked = ok_requests * per_request
    batches = metrics1.get("medic_writer_batch_size_count", 0) - metrics0.get(
        "medic_writer_batch_size_count", 0
    )
    batched = metrics1.get("medic_writer_batch_size_sum", 0) - metrics0.get(
        "medic_writer_batch_size_sum", 0
    )
    wall = t1 - t0
    lat = result["latency_us"]
    return {
        "database": target.kind,
        "scenario": mode if mode != "batch" else f"batch{args.batch}",
        "connections": connections,
        "loop": args.loop,
        "seconds": round(seconds, 1),
        "requests_2xx": ok_requests,
        "non_2xx": failed,
        "socket_errors": sum(v for k, v in result["errors"].items() if k != "status"),
        "acked_heartbeats": acked,
        "stored_heartbeats": stored,
        "durable_hb_per_s": round(stored / seconds),
        "acked_hb_per_s": round(acked / seconds),
        "requests_per_s": round(result["requests"] / seconds),
        "p50_ms": round(lat["p50"] / 1000, 1),
        "p90_ms": round(lat["p90"] / 1000, 1),
        "p99_ms": round(lat["p99"] / 1000, 1),
        "max_ms": round(lat["max"] / 1000, 1),
        "stored_ge_acked": stored >= acked,
        "avg_commit_batch": round(batched / batches, 1) if batches else None,
        "commits_per_s": round(batches / wall, 1),
        "server_cpu_pct": round(100 * (cpu1 - cpu0) / wall),
        "server_cpu_ms_per_1k_hb": round(1e6 * (cpu1 - cpu0) / stored) if stored else None,
        "loadavg_1m_before": round(load0, 2),
        "loadavg_1m_after": round(os.getloadavg()[0], 2),
        "postgres_cpu_pct": (
            round(100 * (db1 - db0) / wall) if db0 is not None and db1 is not None else None
        ),
        "server_exit_code": code,
        "wrk_cmd": result["cmd"],
        "wrk_output": result["text"],
    }


COLUMNS = (
    "database",
    "scenario",
    "connections",
    "durable_hb_per_s",
    "acked_hb_per_s",
    "stored_heartbeats",
    "acked_heartbeats",
    "stored_ge_acked",
    "non_2xx",
    "p50_ms",
    "p99_ms",
    "avg_commit_batch",
    "server_cpu_pct",
    "server_cpu_ms_per_1k_hb",
    "postgres_cpu_pct",
    "loadavg_1m_before",
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Durable heartbeats/s through one medic server process, measured with wrk.",
    )
    parser.add_argument("--database", choices=("sqlite", "postgresql", "both"), default="both")
    parser.add_argument(
        "--scenario",
        default="single,batch",
        help=f"comma-separated, from {', '.join(SCENARIOS)} (default: single,batch)",
    )
    parser.add_argument("--duration", type=float, default=30, help="seconds per run (default 30)")
    parser.add_argument("--warmup", type=float, default=3, help="warm-up seconds (default 3)")
    parser.add_argument(
        "--connections", type=int, default=128, help="concurrent connections (default 128)"
    )
    parser.add_argument(
        "--batch-connections",
        type=int,
        default=16,
        help="connections for the batch scenario (default 16: 16 x 100 heartbeats in flight; "
        "more than the writer queue, 10,000, is refused with 503 by design)",
    )
    parser.add_argument("--threads", type=int, default=1, help="wrk threads (default 1)")
    parser.add_argument("--services", type=int, default=1000, help="services (default 1000)")
    parser.add_argument(
        "--batch", type=int, default=100, help="heartbeats per batch request (default 100)"
    )
    parser.add_argument("--writer-queue", type=int, default=0, help="MEDIC_WRITER_QUEUE override")
    parser.add_argument("--writer-batch", type=int, default=0, help="MEDIC_WRITER_BATCH override")
    parser.add_argument(
        "--loop",
        choices=("default", "asyncio", "uvloop"),
        default="default",
        help="event loop of the server: default = as `medic serve` picks it (uvloop when "
        "installed); asyncio or uvloop force one, to measure the difference",
    )
    parser.add_argument("--label", default="", help="free text stored with the results")
    parser.add_argument("--keep", action="store_true", help="keep the temp data dirs")
    args = parser.parse_args(argv)
    if not 1 <= args.duration <= 600 or not 0 <= args.warmup <= 60:
        parser.error("--duration must be 1..600 s and --warmup 0..60 s")
    if not 1 <= args.connections <= 4096 or not 1 <= args.batch_connections <= 4096:
        parser.error("--connections and --batch-connections must be 1..4096")
    if not 1 <= args.batch <= 1000:
        parser.error("--batch must be 1..1000")
    if not 1 <= args.services <= 100_000:
        parser.error("--services must be 1..100000")
    scenarios = [s.strip() for s in args.scenario.split(",") if s.strip()]
    if not scenarios or any(s not in SCENARIOS for s in scenarios):
        parser.error(f"--scenario takes {', '.join(SCENARIOS)}")
    kinds = ["sqlite", "postgresql"] if args.database == "both" else [args.database]

    rows: list[dict[str, Any]] = []
    for kind in kinds:
        with database(kind, keep=args.keep) as target:
            for mode in scenarios:
                print(f"-- {kind} / {mode}: {args.duration:g}s", flush=True)
                rows.append(run_scenario(target, mode, args))
                print(table([rows[-1]], COLUMNS), flush=True)
    print()
    print(table(rows, COLUMNS))
    path = write_results(
        "ingest",
        {"label": args.label, "args": vars(args), "machine": machine(), "results": rows},
    )
    print(f"\nresults: {path.relative_to(Path.cwd()) if path.is_relative_to(Path.cwd()) else path}")
    bad = [r for r in rows if not r["stored_ge_acked"]]
    if bad:
        print("DURABILITY CHECK FAILED: fewer heartbeats stored than acknowledged", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
