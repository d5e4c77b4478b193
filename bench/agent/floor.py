"""Agent stream floor: server memory per connected agent stream on bare gRPC servers.

What does one held agent stream cost a server process in memory, before any of Medic's own
state? Runs a bare ``medic.agent.v1.AgentService/Connect`` server on each of three HTTP/2
stacks, with the same handler (read the ``Hello``, answer one ``Welcome``, then read and drop
until the agent hangs up; nothing stored, nothing authenticated):

- ``grpcaio``: grpcio's asyncio server (grpc core's C/C++ HTTP/2), written like Medic's
  servicer (``context.read``/``context.write``, channelz off): ``bare/grpcaio_server.py``;
- ``grpclib``: grpclib on the pure-Python ``h2`` stack: ``bare/grpclib_server.py``. grpclib is
  not a Medic dependency: install it (with grpcio and protobuf) into a scratch virtualenv and
  pass that interpreter with ``--python``;
- ``tonic`` and ``tonic-plain``: tonic/hyper/h2 in Rust (``bare/tonic-server``, a
  current-thread runtime). ``tonic`` is the tuned handler (the response stream drains the
  inbound one: no task or channel per stream; 16 KiB / 32 KiB receive windows), ``tonic-plain``
  the usual shape (a reader task and an mpsc channel per stream, tonic's default windows).

All are driven by the same client, ``simagents`` (Rust, ``bench/agent/simagents``): ``--agents``
simulated agents in one separate process, each on its own TCP connection with the real agent's
HTTP/2 settings (fixed 64 KiB / 128 KiB windows, keepalive pings every 30 s), Hello -> Welcome,
then a Heartbeat every 30 s; 100 agents connect at a time. Both Rust projects are built first
(``cargo build --release``).

Reported per server: ``rss_base_mb``, the server's ``VmRSS`` 2 s after it listens, before any
agent; ``rss_loaded_mb``, its ``VmRSS`` ``--settle`` seconds (10) after every agent got its
Welcome; ``kb_per_stream`` = (loaded - base) / connected; ``connect_s``, how long connecting all
agents took. Each stream is also one TCP connection, so the figure includes the per-connection
HTTP/2 state (and the kernel's socket buffers are not in it: they are not process memory).

    .venv/bin/python bench/agent/floor.py --agents 2000 --python /path/to/scratch-venv/bin/python
"""

from __future__ import annotations

import argparse
import contextlib
import json
import resource
import selectors
import shutil
import subprocess
import sys
import time
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from bench.agent.streams import rss_kb
from bench.common import ROOT, machine, table, write_results
from tests.support.postgres import free_port

HERE = ROOT / "bench" / "agent"
SIMAGENTS = HERE / "simagents"
TONIC_SERVER = HERE / "bare" / "tonic-server"
COLUMNS = [
    "server",
    "agents",
    "connected",
    "failed",
    "rss_base_mb",
    "rss_loaded_mb",
    "kb_per_stream",
    "connect_s",
    "stack",
]


@dataclass(frozen=True)
class Spec:
    """One server to measure: how to start it (the port is appended) and what it needs."""

    name: str
    needs: str  # a Python module the --python interpreter must import, or "cargo"


SPECS = {
    spec.name: spec
    for spec in (
        Spec("grpcaio", "grpc"),
        Spec("grpclib", "grpclib"),
        Spec("tonic-plain", "cargo"),
        Spec("tonic", "cargo"),
    )
}


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def cargo_build(project: Path, binary: str) -> Path:
    """``cargo build --release`` of a standalone project; its progress goes to stderr."""
    log(f"building {project.relative_to(ROOT)} ...")
    cmd = ["cargo", "build", "--release", "--manifest-path", str(project / "Cargo.toml")]
    subprocess.run(cmd, stdout=sys.stderr, check=True)
    return project / "target" / "release" / binary


def python_answers(python: str, code: str) -> str | None:
    """What ``python -c code`` prints, or None if it fails (e.g. a module is missing)."""
    out = subprocess.run([python, "-c", code], capture_output=True, text=True, check=False)
    return out.stdout.strip() if out.returncode == 0 else None


def locked(project: Path, *crates: str) -> str:
    """The locked versions of some crates of a Cargo project, e.g. ``tonic 0.14.9``."""
    try:
        lock = tomllib.loads((project / "Cargo.lock").read_text())
    except (OSError, tomllib.TOMLDecodeError):
        return "?"
    versions = {p["name"]: p["version"] for p in lock.get("package", [])}
    return " / ".join(f"{c} {versions.get(c, '?')}" for c in crates)


def read_line(proc: subprocess.Popen[str], timeout: float) -> str | None:
    """The next line of a child's stdout, or None if it exits or stays silent for ``timeout``."""
    stream: IO[str] | None = proc.stdout
    assert stream is not None
    with selectors.DefaultSelector() as selector:
        selector.register(stream, selectors.EVENT_READ)
        if not selector.select(timeout):
            return None
    line = stream.readline()
    return line.strip() if line else None


def stop(proc: subprocess.Popen[str], timeout: float = 15.0) -> None:
    """Close its stdin (simagents exits then), SIGTERM, and SIGKILL only if it hangs."""
    if proc.stdin is not None:
        proc.stdin.close()
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout)
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout)


def measure(
    name: str, server_cmd: list[str], client: Path, args: argparse.Namespace
) -> dict[str, Any]:
    port = free_port()
    log(f"{name}: starting on 127.0.0.1:{port}")
    server = subprocess.Popen([*server_cmd, str(port)], stdout=subprocess.PIPE, text=True)
    agents: subprocess.Popen[str] | None = None
    try:
        line = read_line(server, 60)
        if line != "ready":
            raise RuntimeError(f"{name}: expected 'ready', got {line!r} (exit {server.poll()})")
        time.sleep(2)
        base = rss_kb(server.pid)
        started = time.monotonic()
        agents = subprocess.Popen(
            [
                str(client),
                "--target",
                f"http://127.0.0.1:{port}",
                "--agents",
                str(args.agents),
                "--token",
                "bare",
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        line = read_line(agents, args.timeout)
        connect_s = time.monotonic() - started
        words = (line or "").split()
        if len(words) != 4 or words[0] != "connected" or words[2] != "failed":
            raise RuntimeError(f"{name}: simagents said {line!r} (exit {agents.poll()})")
        connected, failed = int(words[1]), int(words[3])
        log(f"{name}: {line} in {connect_s:.1f} s; settling {args.settle:g} s")
        time.sleep(args.settle)
        if server.poll() is not None:
            raise RuntimeError(f"{name}: the server exited ({server.returncode}) under load")
        loaded = rss_kb(server.pid)
        client_kb = rss_kb(agents.pid)
    finally:
        if agents is not None:
            stop(agents)
        stop(server)
    return {
        "server": name,
        "agents": args.agents,
        "connected": connected,
        "failed": failed,
        "rss_base_mb": round(base / 1024, 1),
        "rss_loaded_mb": round(loaded / 1024, 1),
        "kb_per_stream": round((loaded - base) / max(connected, 1), 1),
        "connect_s": round(connect_s, 1),
        "client_kb_per_agent": round(client_kb / max(args.agents, 1), 1),
    }


def raise_nofile(agents: int) -> int:
    """Soft RLIMIT_NOFILE up to the hard limit (inherited by the server and the client: each
    holds one socket per agent)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    except (ValueError, OSError) as e:
        log(f"could not raise RLIMIT_NOFILE to {target}: {e}")
        target = soft
    if target < agents + 256:
        log(f"warning: RLIMIT_NOFILE is {target}, too low for {agents} agents")
    return target


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0] if __doc__ else None,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="servers: " + ", ".join(SPECS),
    )
    parser.add_argument("--agents", type=int, default=2000, help="simulated agents (2000)")
    parser.add_argument(
        "--servers",
        default="",
        help="comma-separated, from " + ",".join(SPECS) + " (default: all available)",
    )
    parser.add_argument(
        "--python",
        default=sys.executable,
        help="interpreter for the Python servers, with grpcio, protobuf and (for grpclib) "
        "grpclib installed (default: this one)",
    )
    parser.add_argument("--settle", type=float, default=10.0, help="wait after connecting, s (10)")
    parser.add_argument("--timeout", type=float, default=900.0, help="connect phase limit, s")
    args = parser.parse_args()
    if args.agents < 1:
        parser.error("--agents must be at least 1")

    has_cargo = shutil.which("cargo") is not None
    if not has_cargo:
        parser.error("cargo is needed (simagents, the client, is a Rust program)")
    grpc = python_answers(args.python, "import grpc; print(grpc.__version__)")
    grpclib = python_answers(
        args.python,
        "import grpclib, importlib.metadata as m; print(grpclib.__version__, m.version('h2'))",
    )
    available = {"grpcaio": grpc is not None, "grpclib": grpclib is not None}
    available |= {"tonic": True, "tonic-plain": True}
    if args.servers:
        names = [n.strip() for n in args.servers.split(",") if n.strip()]
        unknown = [n for n in names if n not in SPECS]
        if unknown:
            parser.error(f"unknown servers: {', '.join(unknown)} (known: {', '.join(SPECS)})")
        missing = [n for n in names if not available[n]]
        if missing:
            needs = ", ".join(f"{n} needs {SPECS[n].needs}" for n in missing)
            parser.error(f"not importable with {args.python}: {needs}")
    else:
        names = [n for n in SPECS if available[n]]
        for n in SPECS:
            if not available[n]:
                log(f"skipping {n}: {args.python} cannot import {SPECS[n].needs}")

    client = cargo_build(SIMAGENTS, "simagents")
    tonic = (
        cargo_build(TONIC_SERVER, "tonic-server")
        if any(n.startswith("tonic") for n in names)
        else None
    )
    bare = HERE / "bare"
    commands = {
        "grpcaio": [args.python, str(bare / "grpcaio_server.py")],
        "grpclib": [args.python, str(bare / "grpclib_server.py")],
        "tonic": [str(tonic)],
        "tonic-plain": [str(tonic), "--plain"],
    }
    h2_tonic = locked(TONIC_SERVER, "tonic", "hyper", "h2")
    stacks = {
        "grpcaio": f"grpcio {grpc}",
        "grpclib": "grpclib {} / h2 {}".format(*(grpclib or "? ?").split()),
        "tonic": h2_tonic,
        "tonic-plain": h2_tonic,
    }
    nofile = raise_nofile(args.agents)

    rows = []
    for name in names:
        try:
            row = measure(name, commands[name], client, args)
        except RuntimeError as e:  # one broken server must not lose the others' numbers
            log(str(e))
            row = {"server": name, "agents": args.agents, "connected": 0, "error": str(e)}
        row["stack"] = stacks[name]
        rows.append(row)
        log(f"{name}: {row.get('kb_per_stream', 'no')} KB/stream")

    print(table(rows, COLUMNS))
    payload = {
        "machine": machine(),
        "python_servers": python_answers(args.python, "import sys; print(sys.version)"),
        "client": {"simagents": locked(SIMAGENTS, "tonic", "hyper", "h2")},
        "rlimit_nofile": nofile,
        "settle_s": args.settle,
        "results": rows,
    }
    path = write_results("agent-floor", payload)
    print(f"\nwritten to {path}")
    print(json.dumps(rows))
    return 0 if all(r["connected"] == args.agents for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
