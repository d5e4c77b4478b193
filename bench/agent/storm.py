"""Reconnect storm: how long N connected agents take to be welcomed again after a restart.

Starts the real ``medic serve`` (``--database``: SQLite in a temp dir, or PostgreSQL in a
private cluster; the agent gRPC endpoint on a free loopback port, plaintext), creates an
``agent``-scoped key and connects ``--agents`` simulated agents with ``simagents --reconnect``
(``bench/agent/simagents``, Rust, one process: every agent on its own TCP connection with the
real agent's HTTP/2 settings; when its stream ends it backs off as the real agent does — full
jitter from 1 s doubling to 60 s, reset after a Welcome — and connects again on a new
connection). 100 agents connect at a time at first. Then:

1. ``--settle`` seconds with every agent connected and heartbeating; the server's ``VmRSS`` then
   gives ``kb_per_stream`` = (RSS with every agent connected - RSS before the first) / agents;
2. the restart: SIGTERM to the server (it ends every stream ``UNAVAILABLE`` and records the
   agents offline, then exits), and ``medic serve`` again on the same database and ports;
3. the storm: the agents come back by themselves; simagents prints its counters every 100 ms
   (``live``: agents welcomed whose stream is open), and the storm is over when every agent is
   welcomed again (``live`` = N, with N more Welcomes than before the restart).

Reported: ``connect_s`` and ``connect_hellos_per_s`` (the first connection of N new agents, 100
at a time); ``shutdown_s`` (SIGTERM to exit) and ``down_s`` (SIGTERM until the new process
answers ``/health``); ``welcomed_all_s`` (from the new process answering ``/health`` until every
agent is welcomed again; ``welcomed_all_from_sigterm_s`` the same from the SIGTERM), the instants
50% and 90% were welcomed, ``storm_hellos_per_s`` (N / the time from the first to the last
Welcome of the storm), the attempts and failed attempts the agents made during it (an attempt
fails while the server is down or when the server refuses it, e.g. its Hello queue is full),
the new server's CPU over the storm (% of one core) and PostgreSQL's, and the 1-minute load
average before and after.

    .venv/bin/python bench/agent/storm.py --agents 10000
    .venv/bin/python bench/agent/storm.py --agents 10000 --database postgresql
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from bench.agent.floor import SIMAGENTS, cargo_build, log, raise_nofile, stop
from bench.agent.streams import count_online, rss_kb
from bench.common import (
    Server,
    Target,
    cpu_seconds,
    database,
    machine,
    migrate,
    table,
    write_results,
)
from tests.support.postgres import free_port

REPORT_MS = 100


@dataclass(frozen=True, slots=True)
class Sample:
    """One status line of ``simagents --reconnect``."""

    at: float  # seconds since the epoch
    live: int
    welcomes: int
    attempts: int
    failures: int
    unreachable: int
    waited: tuple[int, ...]  # welcomed attempts by duration: bucket i, under 2^i ms


def waited_percentile(counts: list[int], p: float) -> str:
    """The bucket bound under which ``p``% of the welcomed attempts took (e.g. ``< 512 ms``)."""
    total = sum(counts)
    if not total:
        return "-"
    rank, seen = p / 100 * total, 0
    for bucket, count in enumerate(counts):
        seen += count
        if seen >= rank:
            return f"< {2**bucket} ms" if bucket < len(counts) - 1 else f">= {2 ** (bucket - 1)} ms"
    return "-"


class Agents:
    """``simagents --reconnect`` and what it has printed so far (read by a thread)."""

    def __init__(
        self, binary: Path, port: int, agents: int, token: str, stderr: IO[str], backoff_cap: int
    ) -> None:
        self.proc = subprocess.Popen(
            [
                str(binary),
                "--target",
                f"http://127.0.0.1:{port}",
                "--agents",
                str(agents),
                "--token",
                token,
                "--reconnect",
                "--report-ms",
                str(REPORT_MS),
                "--backoff-cap",
                str(backoff_cap),
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
        )
        self.first: str | None = None
        self.answered = threading.Event()
        self.samples: list[Sample] = []
        self._lock = threading.Lock()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            words = line.split()
            if words[:1] == ["connected"]:
                self.first = line.strip()
                self.answered.set()
            elif words[:1] == ["at"] and len(words) == 14:
                at, live, welcomes, attempts, failures, unreachable = map(int, words[1:12:2])
                waited = tuple(int(n) for n in words[13].split(","))
                sample = Sample(at / 1000, live, welcomes, attempts, failures, unreachable, waited)
                with self._lock:
                    self.samples.append(sample)
        self.answered.set()  # it exited

    def latest(self) -> Sample | None:
        with self._lock:
            return self.samples[-1] if self.samples else None

    def since(self, at: float) -> list[Sample]:
        with self._lock:
            return [s for s in self.samples if s.at >= at]

    def wait(self, done: Any, timeout: float, what: str) -> Sample:
        """The first sample for which ``done(sample)`` holds (RuntimeError after ``timeout``)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"simagents exited ({self.proc.returncode}) waiting for {what}")
            with self._lock:
                for sample in self.samples:
                    if done(sample):
                        return sample
            time.sleep(REPORT_MS / 1000)
        raise RuntimeError(f"timed out after {timeout:g}s waiting for {what}: {self.latest()}")


def storm_waits(before: Sample, done: Sample) -> dict[str, Any]:
    """How long the storm's welcomed attempts waited for their Welcome (from connecting)."""
    counts = [b - a for a, b in zip(before.waited, done.waited, strict=True)]
    return {
        "attempt_wait_p50": waited_percentile(counts, 50),
        "attempt_wait_p99": waited_percentile(counts, 99),
        "attempt_wait_max": waited_percentile(counts, 100),
    }


def load() -> float:
    return os.getloadavg()[0]


def run(args: argparse.Namespace, binary: Path) -> dict[str, Any]:
    with database(args.database, keep=args.keep) as target:
        log(f"{args.database}: working in {target.workdir}")
        return {**run_on(args, binary, target), "database": args.database, "tree": args.tree or "."}


def run_on(args: argparse.Namespace, binary: Path, target: Target) -> dict[str, Any]:
    url = target.fresh_url("storm")
    migrate(url)
    grpc_port = free_port()
    server = Server(
        url,
        target.workdir / "server",
        env_extra={
            "MEDIC_GRPC_PORT": str(grpc_port),
            "MEDIC_AGENT_HEARTBEAT_INTERVAL": str(args.heartbeat_interval),
            **dict(kv.split("=", 1) for kv in args.server_env),
            **({"PYTHONPATH": str(Path(args.tree).resolve())} if args.tree else {}),
        },
    )
    server.start()
    agents: Agents | None = None
    stderr = (target.workdir / "simagents.log").open("w")
    result: dict[str, Any] = {
        "agents": args.agents,
        "backoff_cap_s": args.backoff_cap,
        "load_before": round(load(), 2),
    }
    try:
        key = server.request("POST", "/api/v1/api-keys", {"name": "bench", "scopes": ["agent"]})
        time.sleep(2)
        baseline = rss_kb(server.pid)
        started = time.monotonic()
        agents = Agents(binary, grpc_port, args.agents, key["token"], stderr, args.backoff_cap)
        if not agents.answered.wait(args.timeout) or agents.first is None:
            raise RuntimeError(f"simagents did not connect its agents (exit {agents.proc.poll()})")
        connect_s = time.monotonic() - started
        words = agents.first.split()
        connected, failed = int(words[1]), int(words[3])
        log(f"{agents.first} in {connect_s:.1f} s; settling {args.settle:g} s")
        time.sleep(args.settle)
        loaded = rss_kb(server.pid)
        online = count_online(server)
        before = agents.wait(lambda s: True, 10, "a status line")
        result |= {
            "connected": connected,
            "failed": failed,
            "online": online,
            "connect_s": round(connect_s, 1),
            "connect_hellos_per_s": round(connected / connect_s, 1),
            "rss_baseline_mb": round(baseline / 1024, 1),
            "rss_connected_mb": round(loaded / 1024, 1),
            "kb_per_stream": round((loaded - baseline) / max(connected, 1), 1),
        }
        if before.live != args.agents:
            raise RuntimeError(f"not every agent is connected before the restart: {before}")

        # -- the restart ------------------------------------------------------------------
        log("restarting the server (SIGTERM, then medic serve again)")
        load_restart = load()
        sigterm = time.time()
        code = server.stop(timeout=args.timeout)
        stopped = time.time()
        pg_cpu0 = target.postgres_cpu()
        server.start(timeout=120, same_port=True)
        ready = time.time()
        cpu0 = cpu_seconds([server.pid])
        profiler = None
        if args.profile:
            profiler = subprocess.Popen(
                [
                    str(Path(sys.executable).parent / "py-spy"),
                    "record",
                    "-p",
                    str(server.pid),
                    "-d",
                    str(args.profile_seconds),
                    "-r",
                    "100",
                    "-f",
                    "raw",
                    "--threads",
                    "-o",
                    args.profile,
                ],
                stdout=stderr,
                stderr=stderr,
            )
        welcomes0 = before.welcomes
        total = args.agents
        done = agents.wait(
            lambda s: s.at > stopped and s.live == total and s.welcomes >= welcomes0 + total,
            args.timeout,
            "every agent welcomed again",
        )
        cpu = cpu_seconds([server.pid]) - cpu0
        pg_cpu1 = target.postgres_cpu()
        storm = agents.since(sigterm)

        def reached(count: int) -> float:
            return next(s.at for s in storm if s.welcomes >= welcomes0 + count)

        first = reached(1)
        at_ready = next((s for s in storm if s.at >= ready), storm[-1])
        wall = done.at - ready
        after = storm[-1]
        result |= {
            "shutdown_s": round(stopped - sigterm, 1),
            "shutdown_exit": code,
            "down_s": round(ready - sigterm, 1),
            "welcomed_all_s": round(done.at - ready, 1),
            "welcomed_all_from_sigterm_s": round(done.at - sigterm, 1),
            "welcomed_50pct_s": round(reached(total // 2) - ready, 1),
            "welcomed_90pct_s": round(reached(total * 9 // 10) - ready, 1),
            "welcomed_99pct_s": round(reached(total * 99 // 100) - ready, 1),
            "first_welcome_s": round(first - ready, 1),
            "storm_hellos_per_s": round(total / max(done.at - first, 1e-3), 1),
            "storm_attempts": after.attempts - before.attempts,
            "storm_failures": after.failures - before.failures,
            "storm_unreachable": after.unreachable - before.unreachable,
            **storm_waits(before, done),
            "failures_after_ready": after.failures - at_ready.failures,
            "server_cpu_pct": round(100 * cpu / max(wall, 1e-3), 1),
            "server_cpu_s": round(cpu, 1),
            "postgres_cpu_s": (
                round(pg_cpu1 - pg_cpu0, 1) if pg_cpu0 is not None and pg_cpu1 else None
            ),
            "load_at_restart": round(load_restart, 2),
        }
        # The storm second by second (from the SIGTERM), for the JSON file.
        timeline, next_at = [], sigterm
        for sample in storm:
            if sample.at >= next_at and sample.at <= done.at + 1:
                timeline.append(
                    [
                        round(sample.at - sigterm, 1),
                        sample.live,
                        sample.welcomes - welcomes0,
                        sample.failures - before.failures,
                        sample.unreachable - before.unreachable,
                    ]
                )
                next_at += 1
        result["timeline"] = {
            "columns": ["s_from_sigterm", "live", "welcomes", "failures", "unreachable"],
            "ready_at_s": round(ready - sigterm, 1),
            "rows": timeline,
        }
        if profiler is not None:
            profiler.wait(args.profile_seconds + 60)
        time.sleep(args.settle)
        held = rss_kb(server.pid)
        result |= {
            "online_after": count_online(server),
            "rss_after_storm_mb": round(held / 1024, 1),
            "kb_per_stream_after_storm": round((held - baseline) / total, 1),
            "load_after": round(load(), 2),
        }
    finally:
        if agents is not None:
            stop(agents.proc)
        server.stop()
        stderr.close()
    return result


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0] if __doc__ else None,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--agents", type=int, default=10_000, help="simulated agents (10000)")
    parser.add_argument(
        "--database",
        choices=["sqlite", "postgresql"],
        default="sqlite",
        help="the server's database (sqlite; postgresql runs a private cluster)",
    )
    parser.add_argument(
        "--heartbeat-interval", type=int, default=30, help="server's heartbeat interval, s (30)"
    )
    parser.add_argument("--settle", type=float, default=10.0, help="wait after connecting, s")
    parser.add_argument("--timeout", type=float, default=600.0, help="limit of each phase, s")
    parser.add_argument(
        "--server-env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="an extra setting for the server (repeatable), e.g. MEDIC_LOG_LEVEL=INFO",
    )
    parser.add_argument(
        "--tree",
        help="run the server from another checkout of the repository (e.g. an older commit, "
        "`git archive <commit> | tar -x -C DIR`): its medic_core comes first on PYTHONPATH",
    )
    parser.add_argument(
        "--backoff-cap",
        type=int,
        default=60,
        help="the agents' longest back-off delay, s (60, the real agent's; lower only to see "
        "what agents with that cap would do)",
    )
    parser.add_argument("--profile", help="py-spy record the restarted server into this file")
    parser.add_argument("--profile-seconds", type=int, default=30, help="py-spy duration (30)")
    parser.add_argument("--no-build", action="store_true", help="use the built simagents")
    parser.add_argument("--keep", action="store_true", help="keep the temp dir (logs, database)")
    args = parser.parse_args()
    if args.agents < 1:
        parser.error("--agents must be at least 1")
    binary = SIMAGENTS / "target" / "release" / "simagents"
    if not args.no_build:
        binary = cargo_build(SIMAGENTS, "simagents")
    raise_nofile(args.agents)
    result = run(args, binary)
    print(table([result], [k for k in result if k != "timeline"]))
    path = write_results("agent-storm", {"machine": machine(), "result": result})
    print(f"\nwritten to {path}")
    print(json.dumps(result))
    ok = result["connected"] == args.agents == result["online_after"]
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
