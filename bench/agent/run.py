"""The real agent: binary size, idle memory over TLS, dispatch -> accepted latency on loopback.

Builds ``medic-agent`` (``cargo build --release -p medic-agent`` in ``agent-rs``), starts the
real ``medic serve`` (SQLite in a temp dir) with its gRPC endpoint on TLS (a private CA and a
server certificate for 127.0.0.1/localhost made with ``trustme``), creates an ``agent``-scoped
key, and runs the real agent binary against it with a one-script allowlist, every file in a temp
dir owned by the current user (``--owner-uid``). Then:

1. **Binary size**: the release binary (the release profile strips it; a stripped copy is
   measured too), in bytes and MB.
2. **Idle memory**: once the agent is online, ONE execution runs to completion (the first RPC);
   then the agent's ``VmRSS``, ``RssAnon`` and ``RssFile`` (``/proc/<pid>/status``) are sampled
   every second for ``--idle-seconds`` while it stays connected and heartbeats; at the end,
   ``smaps_rollup`` (``Pss``, ``Private_Dirty``) and the resident size per mapped file.
3. **Dispatch latency**: ``--executions`` sequential ``POST /api/v1/agents/{id}/executions`` of a
   trivial script; for each, the time from sending the POST until the server recorded the
   agent's ``ACCEPTED``, and until ``succeeded``. The execution JSON has no accepted timestamp
   (``updated_at`` moves on to ``running`` within a millisecond), and the server exposes no event
   stream over HTTP, so the server runs with a tap on its in-process event bus: every
   ``execution.*`` event is appended to a file with the server's own timestamp of that
   transition (the ``now`` it writes as ``updated_at``). Server and client share the machine's
   clock. A second pass of ``--poll-executions`` measures the same from outside, polling
   ``GET /api/v1/executions/{id}`` every ``--poll-interval`` (2 ms), which bounds its resolution.
   The steps in between (the execution's ``created_at`` and ``last_sent_at``, the 201, the
   agent's own "execution started" log line) are reported too.

    .venv/bin/python bench/agent/run.py --idle-seconds 60 --executions 200
"""

from __future__ import annotations

import argparse
import hashlib
import http.client
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any, BinaryIO

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from bench.common import (
    LOOPS,
    ROOT,
    Server,
    cpu_seconds,
    machine,
    migrate,
    percentile,
    table,
    write_results,
)
from tests.support.postgres import free_port

AGENT_RS = ROOT / "agent-rs"
AGENT_BIN = AGENT_RS / "target" / "release" / "medic-agent"
FINAL = {"succeeded", "failed", "timed_out", "cancelled", "rejected"}
ACCEPTED_OR_LATER = {"accepted", "running", *FINAL}
SCRIPT = "#!/bin/sh\necho ok\n"

# `medic serve` as shipped, plus a tap on its event bus: each execution event is appended to
# MEDIC_BENCH_TAP with the server's timestamp of the transition (`at`, the `updated_at` it
# stored) and the wall clock when it was published (after the commit). Nothing else changes.
TAP = "tap"
LOOPS[TAP] = """
import json, os, time
from medic_core.events import bus as _bus
_fd = os.open(os.environ["MEDIC_BENCH_TAP"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
_publish = _bus.EventBus.publish
def _tapped(self, type_, at, **data):
    event = _publish(self, type_, at, **data)
    ex = data.get("execution")
    if type_.startswith("execution.") and isinstance(ex, dict):
        line = {"type": type_, "id": ex.get("id"), "state": ex.get("state"),
                "at": at.timestamp(), "published": time.time()}
        os.write(_fd, (json.dumps(line) + "\\n").encode())
    return event
_bus.EventBus.publish = _tapped
from medic_core.cli import main
main(["serve"])
"""


# -- 1. the binary -----------------------------------------------------------------------------


def cargo() -> str:
    found = shutil.which("cargo")
    if found:
        return found
    home = Path.home() / ".cargo" / "bin" / "cargo"
    if home.exists():
        return str(home)
    raise RuntimeError("cargo not found on PATH nor in ~/.cargo/bin")


def _out(cmd: list[str], cwd: Path = ROOT) -> str:
    try:
        done = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return "unavailable"
    return done.stdout.strip()


def build(no_build: bool) -> dict[str, Any]:
    cargo_bin = cargo()
    build_s = None
    if not no_build:
        started = time.monotonic()
        subprocess.run(
            [cargo_bin, "build", "--release", "-p", "medic-agent"], cwd=AGENT_RS, check=True
        )
        build_s = round(time.monotonic() - started, 1)
    if not AGENT_BIN.exists():
        raise RuntimeError(f"{AGENT_BIN} is missing (run without --no-build)")
    size = AGENT_BIN.stat().st_size
    stripped = size
    strip = shutil.which("strip")
    if strip:
        with tempfile.TemporaryDirectory(prefix="medic-bench-strip-") as tmp:
            copy = Path(tmp) / "medic-agent"
            shutil.copy2(AGENT_BIN, copy)
            subprocess.run([strip, str(copy)], check=True)
            stripped = copy.stat().st_size
    rustc = Path(cargo_bin).with_name("rustc")
    return {
        "path": str(AGENT_BIN.relative_to(ROOT)),
        "size_bytes": size,
        "stripped_size_bytes": stripped,
        "size_mb": round(stripped / 1e6, 2),
        "size_mib": round(stripped / 2**20, 2),
        "file": _out(["file", "-b", str(AGENT_BIN)]),
        "version": _out([str(AGENT_BIN), "--version"]),
        "rustc": _out([str(rustc) if rustc.exists() else "rustc", "--version"]),
        "build_s": build_s,
        "git_head": _out(["git", "rev-parse", "--short", "HEAD"]),
        "agent_rs_dirty": bool(_out(["git", "status", "--porcelain", "--", "agent-rs"])),
    }


# -- the setup: certificates, server, agent ----------------------------------------------------


def certificates(directory: Path) -> dict[str, Path]:
    import trustme

    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    paths = {
        "ca": directory / "ca.pem",
        "cert": directory / "server.pem",
        "key": directory / "server.key",
    }
    ca.cert_pem.write_to_path(str(paths["ca"]))
    cert.private_key_pem.write_to_path(str(paths["key"]))
    paths["cert"].write_bytes(b"".join(blob.bytes() for blob in cert.cert_chain_pems))
    paths["key"].chmod(0o600)
    return paths


def write_agent_files(root: Path, grpc_url: str, token: str, ca: Path) -> Path:
    """Script, allowlist, key and configuration, all owned by us and not group/other writable."""
    scripts = root / "scripts"
    scripts.mkdir(mode=0o755)
    script = scripts / "noop.sh"
    script.write_text(SCRIPT)
    script.chmod(0o755)
    digest = hashlib.sha256(script.read_bytes()).hexdigest()
    allowlist = root / "allowlist.toml"
    allowlist.write_text(
        f'version = 1\n\n[[script]]\nname = "noop"\npath = "{script}"\n'
        f'sha256 = "{digest}"\ntimeout = 30\n'
    )
    allowlist.chmod(0o644)
    key = root / "agent.key"
    key.write_text(token)
    key.chmod(0o600)
    config = root / "agent.toml"
    config.write_text(
        f'server = "{grpc_url}"\n'
        f'api_key_file = "{key}"\n'
        f'allowlist = "{allowlist}"\n'
        f'state_dir = "{root / "state"}"\n'
        f'kill_switch_file = "{root / "paused"}"\n'
        'metrics_listen = ""\n'
        'log_level = "info"\n\n'
        f'[tls]\nca = "{ca}"\n\n'
        '[labels]\nrole = "bench"\n'
    )
    config.chmod(0o600)
    return config


def start_agent(config: Path, log: Path) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MEDIC_")}
    with log.open("ab") as out:
        return subprocess.Popen(
            [str(AGENT_BIN), "run", "--config", str(config), "--owner-uid", str(os.getuid())],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=out,
        )


def wait_for(what: str, probe: Callable[[], Any], timeout: float, step: float = 0.1) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(step)


def proc_status(pid: int) -> dict[str, int]:
    """``VmRSS``, ``RssAnon``, ``RssFile``, ``RssShmem`` and ``VmHWM`` of a process, in kB."""
    wanted = {"VmRSS", "RssAnon", "RssFile", "RssShmem", "VmHWM"}
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, rest = line.partition(":")
        if name in wanted:
            out[name] = int(rest.split()[0])
    return out


def rss_by_mapping(pid: int) -> dict[str, int]:
    """Resident kB per mapped file (by name) and for anonymous memory, from ``smaps``."""
    out: dict[str, int] = {}
    name = ""
    for line in Path(f"/proc/{pid}/smaps").read_text().splitlines():
        first = line.split(maxsplit=5)
        if first and "-" in first[0] and not first[0].endswith(":"):
            name = Path(first[5]).name if len(first) > 5 else "[anon]"
        elif first and first[0] == "Rss:":
            out[name] = out.get(name, 0) + int(first[1])
    return dict(sorted(((k, v) for k, v in out.items() if v), key=lambda kv: -kv[1]))


def smaps_rollup(pid: int) -> dict[str, int]:
    """``Pss``, ``Private_Dirty`` and friends (kB) from ``/proc/<pid>/smaps_rollup``."""
    wanted = {"Rss", "Pss", "Pss_Anon", "Pss_File", "Shared_Clean", "Private_Clean"}
    wanted |= {"Private_Dirty", "Swap"}
    out = {}
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()[1:]:
        name, _, rest = line.partition(":")
        if name in wanted:
            out[name] = int(rest.split()[0])
    return out


def threads(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/task"))


def load() -> list[float]:
    return [round(v, 2) for v in os.getloadavg()]


# -- the REST client (one keep-alive connection) -----------------------------------------------


class Api:
    def __init__(self, port: int, token: str) -> None:
        self.port = port
        self.headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)

    def call(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        data = None if body is None else json.dumps(body).encode()
        for attempt in (1, 2):
            try:
                self.conn.request(method, path, body=data, headers=self.headers)
                resp = self.conn.getresponse()
                raw = resp.read()
                return resp.status, json.loads(raw) if raw else None
            except (http.client.HTTPException, ConnectionError):
                self.conn.close()
                self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def ok(self, method: str, path: str, body: Any = None) -> Any:
        status, payload = self.call(method, path, body)
        if status >= 300:
            raise RuntimeError(f"{method} {path}: {status} {payload}")
        return payload


class Tap:
    """Reads the server's execution events as the tap appends them."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.fh: BinaryIO | None = None
        self.partial = b""
        self.events: dict[str, dict[str, dict[str, float]]] = {}  # id -> state -> event

    def poll(self) -> None:
        if self.fh is None:
            try:
                self.fh = self.path.open("rb")
            except FileNotFoundError:
                return
        data = self.partial + self.fh.read()
        lines = data.split(b"\n")
        self.partial = lines.pop()
        for line in lines:
            event = json.loads(line)
            self.events.setdefault(event["id"], {}).setdefault(event["state"], event)

    def wait_final(self, execution_id: str, timeout: float) -> dict[str, dict[str, float]]:
        deadline = time.monotonic() + timeout
        while True:
            self.poll()
            states = self.events.get(execution_id, {})
            if FINAL & states.keys():
                return states
            if time.monotonic() > deadline:
                raise RuntimeError(f"execution {execution_id} did not end in {timeout}s: {states}")
            time.sleep(0.0005)


def ts(iso: str) -> float:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


def dispatch(api: Api, agent_id: str) -> tuple[float, float, dict[str, Any]]:
    """POST one execution; (wall clock just before sending, wall clock at the 201, body)."""
    sent = time.time()
    status, body = api.call("POST", f"/api/v1/agents/{agent_id}/executions", {"script": "noop"})
    answered = time.time()
    if status != 201:
        raise RuntimeError(f"dispatch: {status} {body}")
    return sent, answered, body


def run_tapped(api: Api, tap: Tap, agent_id: str, count: int) -> list[dict[str, Any]]:
    rows = []
    for _ in range(count):
        sent, answered, body = dispatch(api, agent_id)
        states = tap.wait_final(body["id"], 30)
        final = next(s for s in states if s in FINAL)
        accepted = states.get("accepted") or states.get("running") or states[final]
        rows.append(
            {
                "id": body["id"],
                "sent": sent,
                "delivery": body.get("delivery"),
                "final": final,
                "created": ts(body["created_at"]) - sent,
                "created_committed": states["pending"]["published"] - sent
                if "pending" in states
                else None,
                "last_sent": ts(body["last_sent_at"]) - sent if body.get("last_sent_at") else None,
                "answered": answered - sent,
                "accepted": accepted["at"] - sent,
                "accepted_committed": accepted["published"] - sent,
                "running": states["running"]["at"] - sent if "running" in states else None,
                "final_at": states[final]["at"] - sent,
                "saw_accepted": "accepted" in states,
            }
        )
    return rows


def run_polled(api: Api, agent_id: str, count: int, interval: float) -> list[dict[str, Any]]:
    rows = []
    for _ in range(count):
        sent, answered, body = dispatch(api, agent_id)
        path = f"/api/v1/executions/{body['id']}"
        seen_accepted = None
        polls = 0
        deadline = time.monotonic() + 30
        while True:
            polls += 1
            execution = api.ok("GET", path)
            now = time.time()
            if seen_accepted is None and execution["state"] in ACCEPTED_OR_LATER:
                seen_accepted = now
            if execution["state"] in FINAL:
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"execution {body['id']} did not end in 30s")
            time.sleep(interval)
        assert seen_accepted is not None
        rows.append(
            {
                "final": execution["state"],
                "answered": answered - sent,
                "accepted_seen": seen_accepted - sent,
                "final_seen": now - sent,
                "final_server": ts(execution["finished_at"]) - sent,
                "polls": polls,
            }
        )
    return rows


def agent_started(log: Path) -> dict[str, float]:
    """When the agent logged "execution started" (ACCEPTED recorded, process spawned), per id."""
    out = {}
    for line in log.read_text(errors="replace").splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if entry.get("message") == "execution started":
            out[entry["execution_id"]] = ts(entry["timestamp"])
    return out


def stats_ms(values: list[float]) -> dict[str, float]:
    ordered = sorted(v * 1000 for v in values)
    if not ordered:
        return dict.fromkeys(("p50", "p90", "p99", "max", "min"), float("nan"))
    return {
        "p50": round(percentile(ordered, 50), 2),
        "p90": round(percentile(ordered, 90), 2),
        "p99": round(percentile(ordered, 99), 2),
        "max": round(ordered[-1], 2),
        "min": round(ordered[0], 2),
    }


# -- the run -----------------------------------------------------------------------------------


def run(args: argparse.Namespace) -> dict[str, Any]:
    result: dict[str, Any] = {"load_start": load()}
    result["binary"] = build(args.no_build)

    workdir = Path(tempfile.mkdtemp(prefix="medic-bench-agent-"))
    os.chmod(workdir, 0o755)
    agent_root = workdir / "agent"
    agent_root.mkdir(mode=0o755)
    certs = certificates(workdir)
    url = f"sqlite:///{workdir / 'medic.db'}"
    migrate(url)
    grpc_port = free_port()
    tap_path = workdir / "events.jsonl"
    server = Server(
        url,
        workdir / "server",
        loop=TAP,
        env_extra={
            "MEDIC_GRPC_PORT": str(grpc_port),
            "MEDIC_GRPC_TLS_CERT": str(certs["cert"]),
            "MEDIC_GRPC_TLS_KEY": str(certs["key"]),
            "MEDIC_AGENT_HEARTBEAT_INTERVAL": str(args.heartbeat_interval),
            "MEDIC_BENCH_TAP": str(tap_path),
        },
    )
    agent: subprocess.Popen[bytes] | None = None
    failed = True
    try:
        server.start()
        key = server.request("POST", "/api/v1/api-keys", {"name": "bench", "scopes": ["agent"]})
        grpc_url = f"https://{args.tls_host}:{grpc_port}"
        config = write_agent_files(agent_root, grpc_url, key["token"], certs["ca"])
        api = Api(server.port, server.token)
        tap = Tap(tap_path)

        started = time.monotonic()
        agent = start_agent(config, workdir / "agent.log")

        def online() -> str | None:
            if agent is not None and agent.poll() is not None:
                raise RuntimeError(f"the agent exited ({agent.returncode}); see agent.log")
            items = api.ok("GET", "/api/v1/agents?status=online")["items"]
            return items[0]["id"] if items else None

        agent_id = wait_for("the agent to come online", online, 60, 0.02)
        online_s = time.monotonic() - started
        before_first = proc_status(agent.pid)

        # 2. the first RPC, then idle memory.
        first = run_tapped(api, tap, agent_id, 1)[0]
        if first["final"] != "succeeded":
            raise RuntimeError(f"the first execution ended {first['final']}")
        result["load_before_idle"] = load()
        samples = []
        cpu0 = cpu_seconds([agent.pid])
        t0 = time.monotonic()
        for n in range(args.idle_seconds + 1):
            time.sleep(max(0.0, t0 + n - time.monotonic()))
            if agent.poll() is not None:
                raise RuntimeError("the agent exited while idle; see agent.log")
            samples.append({"t": n, **proc_status(agent.pid)})
        idle_cpu = cpu_seconds([agent.pid]) - cpu0
        status = api.ok("GET", f"/api/v1/agents/{agent_id}")
        rss = [s["VmRSS"] for s in samples]
        result["idle"] = {
            "tls": grpc_url,
            "online_after_s": round(online_s, 2),
            "rss_before_first_rpc_kb": before_first["VmRSS"],
            "idle_seconds": args.idle_seconds,
            "heartbeat_interval_s": args.heartbeat_interval,
            "rss_first_kb": rss[0],
            "rss_last_kb": rss[-1],
            "rss_max_kb": max(rss),
            "rss_min_kb": min(rss),
            "rss_anon_first_kb": samples[0]["RssAnon"],
            "rss_anon_last_kb": samples[-1]["RssAnon"],
            "rss_anon_max_kb": max(s["RssAnon"] for s in samples),
            "rss_file_last_kb": samples[-1]["RssFile"],
            "rss_file_max_kb": max(s["RssFile"] for s in samples),
            "rss_shmem_last_kb": samples[-1].get("RssShmem"),
            "vm_hwm_kb": samples[-1]["VmHWM"],
            "rss_by_mapping_kb": rss_by_mapping(agent.pid),
            "smaps_rollup_kb": smaps_rollup(agent.pid),
            "threads": threads(agent.pid),
            "cpu_s": round(idle_cpu, 3),
            "still_online": status["status"] == "online",
            "session_unchanged": True,  # checked below against the session after the run
            "samples": samples,
        }
        session = status.get("session_id")

        # 3. dispatch -> accepted, timed by the server's own event timestamps.
        result["load_before_dispatch"] = load()
        tapped = run_tapped(api, tap, agent_id, args.executions)
        # The same from outside: GET every --poll-interval.
        polled = run_polled(api, agent_id, args.poll_executions, args.poll_interval)
        after = proc_status(agent.pid)
        status = api.ok("GET", f"/api/v1/agents/{agent_id}")
        result["idle"]["session_unchanged"] = status.get("session_id") == session
        result["load_end"] = load()

        ok = [r for r in tapped if r["final"] == "succeeded"]
        started_at = agent_started(workdir / "agent.log")
        for r in tapped:
            r["agent_started"] = started_at[r["id"]] - r["sent"] if r["id"] in started_at else None
        spawned = [r for r in tapped if r["agent_started"] is not None]
        result["dispatch"] = {
            "executions": len(tapped),
            "succeeded": len(ok),
            "not_succeeded": len(tapped) - len(ok),
            "accepted_state_recorded": sum(r["saw_accepted"] for r in tapped),
            "first_execution_ms": {
                "accepted": round(first["accepted"] * 1000, 2),
                "succeeded": round(first["final_at"] * 1000, 2),
            },
            "post_to_created_at_ms": stats_ms([r["created"] for r in tapped]),
            "post_to_created_committed_ms": stats_ms(
                [r["created_committed"] for r in tapped if r["created_committed"] is not None]
            ),
            "post_to_last_sent_at_ms": stats_ms(
                [r["last_sent"] for r in tapped if r["last_sent"] is not None]
            ),
            "post_to_201_ms": stats_ms([r["answered"] for r in tapped]),
            "post_to_accepted_ms": stats_ms([r["accepted"] for r in tapped]),
            "post_to_accepted_committed_ms": stats_ms([r["accepted_committed"] for r in tapped]),
            "created_at_to_accepted_ms": stats_ms([r["accepted"] - r["created"] for r in tapped]),
            "post_to_succeeded_ms": stats_ms([r["final_at"] for r in ok]),
            "post_to_agent_started_ms": stats_ms([r["agent_started"] for r in spawned]),
            "agent_started_to_server_accepted_ms": stats_ms(
                [r["accepted"] - r["agent_started"] for r in spawned]
            ),
            "rss_after_kb": after["VmRSS"],
            "rss_anon_after_kb": after["RssAnon"],
        }
        p_ok = [r for r in polled if r["final"] == "succeeded"]
        result["dispatch_rows"] = [
            {
                (f"{k}_ms" if isinstance(v, float) and k != "sent" else k): (
                    round(v * 1000, 3) if isinstance(v, float) and k != "sent" else v
                )
                for k, v in r.items()
            }
            for r in tapped
        ]
        result["polled"] = {
            "executions": len(polled),
            "succeeded": len(p_ok),
            "poll_interval_ms": args.poll_interval * 1000,
            "post_to_accepted_seen_ms": stats_ms([r["accepted_seen"] for r in polled]),
            "post_to_succeeded_seen_ms": stats_ms([r["final_seen"] for r in p_ok]),
            "post_to_finished_at_ms": stats_ms([r["final_server"] for r in p_ok]),
            "mean_polls": round(sum(r["polls"] for r in polled) / len(polled), 1),
        }
        failed = False
    finally:
        if agent is not None and agent.poll() is None:
            agent.send_signal(signal.SIGTERM)
            try:
                agent.wait(30)
            except subprocess.TimeoutExpired:
                agent.kill()
                agent.wait(10)
        result["agent_exit"] = None if agent is None else agent.returncode
        server.stop()
        if args.keep or failed:
            print(f"kept {workdir} (agent.log, server/server.log, events.jsonl)")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    return result


def report(result: dict[str, Any]) -> str:
    b, i, d, p = result["binary"], result["idle"], result["dispatch"], result["polled"]

    def pcts(s: dict[str, float]) -> str:
        return f"{s['p50']} / {s['p90']} / {s['p99']} / {s['max']} ms"

    def mib(kb: int) -> str:
        return f"{kb / 1024:.2f}"

    size = f"{b['stripped_size_bytes']:,} B = {b['size_mb']} MB ({b['size_mib']} MiB)"
    idle = (
        f"{mib(i['rss_first_kb'])} / {mib(i['rss_last_kb'])} / {mib(i['rss_max_kb'])} MiB"
        f" (max {i['rss_max_kb'] * 1024 / 1e6:.2f} MB)"
    )
    anon = f"{mib(i['rss_anon_last_kb'])} / {mib(i['rss_file_last_kb'])} MiB"
    roll = i["smaps_rollup_kb"]
    pss = f"{mib(roll.get('Pss', 0))} / {mib(roll.get('Private_Dirty', 0))} MiB"
    poll = f"poll {p['poll_interval_ms']:g} ms"
    rows = [
        ("binary size (stripped)", size, "< 5 MB (aim 3 MB)"),
        (f"idle VmRSS first/last/max over {i['idle_seconds']} s, TLS", idle, "< 5 MB (aim 4 MB)"),
        ("idle RssAnon / RssFile (last)", anon, ""),
        ("idle Pss / Private_Dirty (end of idle)", pss, ""),
        ("POST -> accepted p50/p90/p99/max (server)", pcts(d["post_to_accepted_ms"]), ""),
        ("POST -> succeeded p50/p90/p99/max (server)", pcts(d["post_to_succeeded_ms"]), ""),
        (f"POST -> accepted seen, {poll}", pcts(p["post_to_accepted_seen_ms"]), ""),
        (f"POST -> succeeded seen, {poll}", pcts(p["post_to_succeeded_seen_ms"]), ""),
    ]
    out = table(
        [{"measure": m, "value": v, "target": t} for m, v, t in rows],
        ["measure", "value", "target"],
    )
    steps = [
        ("POST -> created_at (server)", d["post_to_created_at_ms"]),
        ("POST -> execution.created published", d["post_to_created_committed_ms"]),
        ("POST -> last_sent_at (server)", d["post_to_last_sent_at_ms"]),
        ("POST -> 201 received", d["post_to_201_ms"]),
        ("POST -> agent logged 'execution started'", d["post_to_agent_started_ms"]),
        ("POST -> accepted (server timestamp)", d["post_to_accepted_ms"]),
        ("POST -> accepted committed (server)", d["post_to_accepted_committed_ms"]),
        ("POST -> succeeded (server timestamp)", d["post_to_succeeded_ms"]),
        ("POST -> finished_at, polled run", p["post_to_finished_at_ms"]),
    ]
    columns = ["step (ms)", "p50", "p90", "p99", "max"]
    breakdown = table([{"step (ms)": name, **s} for name, s in steps], columns)
    return f"{out}\n\n{breakdown}\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--idle-seconds", type=int, default=60, help="sample RSS for, s (60)")
    parser.add_argument("--executions", type=int, default=200, help="timed dispatches (200)")
    parser.add_argument(
        "--poll-executions", type=int, default=200, help="dispatches timed by polling (200)"
    )
    parser.add_argument("--poll-interval", type=float, default=0.002, help="GET every, s (0.002)")
    parser.add_argument(
        "--heartbeat-interval", type=int, default=30, help="server's heartbeat interval, s (30)"
    )
    parser.add_argument(
        "--tls-host", default="127.0.0.1", choices=["127.0.0.1", "localhost"], help="agent URL"
    )
    parser.add_argument("--no-build", action="store_true", help="use the existing release binary")
    parser.add_argument("--keep", action="store_true", help="keep the temp dir (logs, database)")
    args = parser.parse_args()
    result = run(args)
    print(report(result))
    samples = result["idle"].pop("samples")
    rows = result.pop("dispatch_rows")
    summary = json.dumps(result, default=str)
    result["idle"]["samples"] = samples
    result["dispatch_rows"] = rows
    path = write_results("agent", {"machine": machine(), "args": vars(args), "result": result})
    print(f"\nwritten to {path}")
    print(summary)
    return 0 if result["dispatch"]["not_succeeded"] == 0 and result["idle"]["still_online"] else 1


if __name__ == "__main__":
    sys.exit(main())
