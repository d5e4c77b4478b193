"""The real agent binary and two real ``medic serve`` replicas on one PostgreSQL: the agent's
stream is on replica A, every request goes through replica B.

What is proven: the agent advertises how many executions it runs at once (16, its default) and
the replicas never send it more. Of 40 executions requested through B while the first ones are
still running, 16 run and 24 wait on the server (``pending``, never sent), then go out as
slots free up; all 40 succeed, and the agent refuses none ``too_many_running``. Before the
server knew the agent's capacity, replica A sent all 40 in one pass and the agent refused 24.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from support.agent import FINAL, Host, request, scrape, wait_for
from support.postgres import free_port
from support.server import ServerProcess, fresh_postgres_url

#: The agent's default limit of concurrent executions (``max_concurrent``).
CAPACITY = 16
REQUESTS = 40

# Runs until the test opens the gate, so that the agent's slots stay taken while the requests
# arrive; each run leaves a line, so runs are counted from outside.
GATE = """#!/bin/sh
echo run >> "{runs}"
while [ ! -e "{gate}" ]; do sleep 0.05; done
echo done
"""


@dataclass
class Replicas:
    a: ServerProcess  # holds the agent's stream
    b: ServerProcess  # takes the requests
    host: Host


def api(server: ServerProcess, method: str, path: str, body: Any = None) -> Any:
    status, answer = request(method, f"{server.url}{path}", server.headers, body)
    assert status in (200, 201), (status, answer)
    return answer


@pytest.fixture
def replicas(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Replicas]:
    url = fresh_postgres_url(request.getfixturevalue("pg_cluster"), "capacity")
    env = {"MEDIC_AGENT_HEARTBEAT_INTERVAL": "1"}
    a = ServerProcess(
        tmp_path / "a", database_url=url, env={**env, "MEDIC_GRPC_PORT": str(free_port())}
    )
    a.start()  # first: it migrates the database and stores the admin key
    b = ServerProcess(
        tmp_path / "b",
        database_url=url,
        admin_key=a.admin_key,
        env={**env, "MEDIC_GRPC_PORT": str(free_port())},
    )
    host: Host | None = None
    try:
        b.start()
        key = api(a, "POST", "/api/v1/api-keys", {"name": "host-agent", "scopes": ["agent"]})
        host = Host(tmp_path / "host", a, int(a.extra_env["MEDIC_GRPC_PORT"]), key["token"])
        host.configure()
        host.add_script(
            "gate", GATE.format(runs=tmp_path / "runs", gate=tmp_path / "open"), timeout=120
        )
        host.allowlist()
        host.start()
        yield Replicas(a, b, host)
    finally:
        if host is not None:
            host.stop()
        b.close()
        a.close()


def test_forty_executions_through_the_replica_without_the_stream_all_succeed(
    replicas: Replicas, tmp_path: Path
) -> None:
    a, b = replicas.a, replicas.b

    def online() -> Any:
        items = api(b, "GET", "/api/v1/agents?status=online")["items"]
        return items[0] if items else None

    agent = wait_for("the agent to come online", online)
    assert agent["max_concurrent_executions"] == CAPACITY
    path = f"/api/v1/agents/{agent['id']}/executions"
    ids = [api(b, "POST", path, {"script": "gate"})["id"] for _ in range(REQUESTS)]

    def states() -> list[dict[str, Any]]:
        return [api(b, "GET", f"/api/v1/executions/{eid}") for eid in ids]

    def full() -> list[dict[str, Any]] | None:
        now = states()
        return now if sum(e["state"] == "running" for e in now) == CAPACITY else None

    # The agent's slots are all taken and the gate is shut: nothing more can be sent now.
    now = wait_for("the agent to run as many as it can", full)
    assert [e for e in now if e["state"] in FINAL] == []
    waiting = [e for e in now if e["state"] == "pending"]
    assert len(waiting) == REQUESTS - CAPACITY
    assert all(e["sent_count"] == 0 for e in waiting), waiting

    (tmp_path / "open").touch()

    def done() -> list[dict[str, Any]] | None:
        now = states()
        return now if all(e["state"] in FINAL for e in now) else None

    finished = wait_for("every execution to end", done, timeout=120)
    assert [(e["state"], e["reason"]) for e in finished] == [("succeeded", None)] * REQUESTS
    assert [e["sent_count"] for e in finished] == [1] * REQUESTS
    assert len((tmp_path / "runs").read_text().splitlines()) == REQUESTS
    skips = replicas.host.metrics()
    assert not [name for name in skips if "too_many_running" in name], skips
    for server in (a, b):
        assert scrape(f"{server.url}/metrics")["medic_agent_execution_requeues_total"] == 0
