"""The real ``medic-agent`` binary beside a real ``medic serve``: the harness of the tests that run
them together (``tests/integration/test_agent_binary*.py``).

``rig`` (a pytest fixture; import it into a test module) starts ``medic serve`` (SQLite, the gRPC
endpoint on a free port), creates an ``agent``-scoped key, and starts the agent binary built from
``agent-rs`` (``make agent-bin``; a clear failure names it when missing) with an allowlist of
real shell scripts in a temporary directory. The agent trusts files owned by the user running the
tests (``--owner-uid``). ``Host.entries`` lists the allowlist's entries: tests add their own
(``Host.add_script``) and rewrite the allowlist (``Host.allowlist``) before or while the agent
runs. Everything is observed from outside: the REST API, the audit log, both ``/metrics`` and
files the scripts write.
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
from contextlib import contextmanager
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


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


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
    #: name -> (script path, TOML of the entry's rules)
    entries: dict[str, tuple[Path, str]] = field(default_factory=dict)
    #: TOML appended to the allowlist file (e.g. tables other than scripts)
    allowlist_extra: str = ""
    #: lines appended to the agent's configuration file
    config_extra: str = ""

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

    def add_script(self, name: str, body: str, rules: str = "", *, timeout: int = 30) -> Path:
        """Write an executable script and list it in the allowlist (``allowlist()`` writes the
        file). ``rules``: more TOML for the entry (``args = [...]``, ``env = [...]``)."""
        path = self.write_script(f"{name}.sh", body)
        self.entries[name] = (path, f"timeout = {timeout}\n{rules}")
        return path

    def allowlist(self) -> None:
        """Write the allowlist file from ``entries`` (hashes read from the scripts now)."""
        text = "version = 1\n"
        for name, (path, rules) in self.entries.items():
            text += f'\n[[script]]\nname = "{name}"\npath = "{path}"\n'
            text += f'sha256 = "{digest(path)}"\n{rules}'
        text += self.allowlist_extra
        (self.root / "allowlist.toml").write_text(text)

    def configure(self) -> None:
        self.scripts.mkdir(parents=True, mode=0o755)
        self.add_script("hello", HELLO, 'args = [{ one_of = ["world", "there"] }]\n')
        self.add_script("sleeper", SLEEPER, 'env = ["PIDFILE"]\n', timeout=60)
        self.add_script("counter", COUNTER, 'env = ["COUNTFILE"]\n', timeout=60)
        self.allowlist()
        key = self.root / "agent.key"
        key.write_text(self.token)
        key.chmod(0o600)
        self.write_config()

    def write_config(self) -> None:
        """Write the agent's configuration file, ``config_extra`` included (restart the agent
        for settings it reads only at start, such as ``containment``)."""
        key = self.root / "agent.key"
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

{self.config_extra}
[labels]
role = "test"
"""
        )
        config.chmod(0o600)

    def start(self, pass_fds: tuple[int, ...] = ()) -> None:
        """Start the agent; ``pass_fds``: descriptors it inherits (as from a careless parent)."""
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
            pass_fds=pass_fds,
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


@contextmanager
def started_rig(
    tmp_path: Path, *, database_url: str = "", env: dict[str, str] | None = None
) -> Iterator[Rig]:
    """A server (SQLite unless ``database_url``; more ``MEDIC_*`` in ``env``) and one agent."""
    grpc_port = free_port()
    server = ServerProcess(
        tmp_path / "server",
        port=free_port(),
        database_url=database_url,
        env={
            "MEDIC_GRPC_PORT": str(grpc_port),
            "MEDIC_AGENT_HEARTBEAT_INTERVAL": "1",
            **(env or {}),
        },
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


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[Rig]:
    with started_rig(tmp_path) as started:
        yield started
