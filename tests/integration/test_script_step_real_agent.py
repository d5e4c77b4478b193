"""A playbook's ``script`` step with the real ``medic serve`` and the real ``medic-agent`` binary
(``support.agent``), on SQLite and PostgreSQL:

- an allow-listed script runs through the step and the run records its output;
- a script the agent's allowlist does not list is refused when the playbook is saved;
- the server is SIGKILLed while the step's script runs on the host; after the restart the step
  re-attaches to the same agent execution by id and the run succeeds -- and the script ran
  exactly once on the host (it appends a line to a file per run).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from support.agent import Rig, started_rig, wait_for
from support.server import fresh_postgres_url

ENDED = {"succeeded", "failed", "cancelled", "timed_out"}


@pytest.fixture(params=["sqlite", "postgresql"])
def script_rig(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Rig]:
    url = ""
    if request.param == "postgresql":
        url = fresh_postgres_url(request.getfixturevalue("pg_cluster"), "script_step")
    # The shortest lease: the killed server's run is taken over 5 s after its last renewal.
    with started_rig(tmp_path, database_url=url, env={"MEDIC_PLAYBOOK_LEASE": "5"}) as rig:
        yield rig


def playbook(agent: str, script: str, **params: Any) -> dict[str, Any]:
    return {
        "slug": "fix-host",
        "steps": [
            {
                "name": "fix",
                "type": "script",
                "timeout": 120,
                "params": {"agents": {"ids": [agent]}, "script": script, **params},
            }
        ],
    }


def run_to_end(rig: Rig, definition: dict[str, Any]) -> dict[str, Any]:
    status, applied = rig.api("PUT", f"/api/v1/playbooks/{definition['slug']}", definition)
    assert status in (200, 201), applied
    assert applied["warnings"] == []
    status, run = rig.api("POST", f"/api/v1/playbooks/{definition['slug']}/runs", {})
    assert status in (200, 201), run
    return ended(rig, run["id"])


def ended(rig: Rig, run_id: int) -> dict[str, Any]:
    def done() -> dict[str, Any] | None:
        status, body = rig.api("GET", f"/api/v1/playbook-runs/{run_id}")
        return body if status == 200 and body["state"] in ENDED else None

    try:
        return dict(wait_for(f"playbook run {run_id} to end", done, timeout=90))
    except AssertionError as exc:
        raise AssertionError(f"{exc}\nagent log:\n{rig.host.log()[-4000:]}") from None


def executions(rig: Rig) -> list[dict[str, Any]]:
    status, page = rig.api("GET", "/api/v1/executions")
    assert status == 200, page
    return list(page["items"])


def test_a_script_step_runs_an_allowlisted_script_and_records_its_output(
    script_rig: Rig,
) -> None:
    agent = script_rig.agent_id()
    run = run_to_end(script_rig, playbook(agent, "hello", args=["world"]))
    assert run["state"] == "succeeded", run
    [step] = run["steps"]
    output = step["output"]
    assert (output["agent"], output["state"], output["exit_code"]) == (agent, "succeeded", 0)
    assert (output["stdout"], output["stderr"]) == ("hello world\n", "to stderr\n")
    assert output["output_complete"] is True
    [execution] = executions(script_rig)
    assert execution["id"] == output["execution_id"]
    assert execution["requested_by"] == f"playbook-run:{run['id']}:fix"


def test_a_script_the_agent_does_not_allow_is_refused_when_saved(script_rig: Rig) -> None:
    agent = script_rig.agent_id()
    definition = playbook(agent, "wipe-disk")
    status, problem = script_rig.api("PUT", "/api/v1/playbooks/fix-host", definition)
    assert status == 422, problem
    assert problem["field"] == "steps[0].params.script"
    assert f"agent {agent} refuses (not_allowlisted)" in problem["detail"]
    status, problem = script_rig.api(
        "PUT", "/api/v1/playbooks/fix-host", playbook(agent, "hello", args=["everyone"])
    )
    assert status == 422, problem
    assert "(arg_not_allowed)" in problem["detail"]
    assert executions(script_rig) == []


def test_a_server_killed_mid_script_reattaches_by_id_and_the_script_runs_once(
    script_rig: Rig,
) -> None:
    rig = script_rig
    agent = rig.agent_id()
    countfile = rig.host.root / "runs.txt"
    definition = playbook(agent, "counter", env={"COUNTFILE": str(countfile)})
    status, _ = rig.api("PUT", "/api/v1/playbooks/fix-host", definition)
    assert status == 201
    status, run = rig.api("POST", "/api/v1/playbooks/fix-host/runs", {})
    assert status in (200, 201), run
    running = wait_for(
        "the step's script to run on the host",
        lambda: [e for e in executions(rig) if e["state"] == "running"],
    )
    rig.server.kill()  # SIGKILL while the script runs (it sleeps 4 s)
    wait_for("the script to start on the host", countfile.exists)
    rig.server.start()
    done = ended(rig, run["id"])
    assert done["state"] == "succeeded", done
    output = done["steps"][-1]["output"]
    assert (output["execution_id"], output["exit_code"]) == (running[0]["id"], 0)
    # Output chunks are sent once: what the script printed while no server listened is lost,
    # and the output says so (docs/agent-protocol.md).
    assert output["stdout"] in ("done\n", "")
    assert output["output_complete"] is (output["stdout"] == "done\n")
    # One agent execution, never a second one, and the script ran once on the host.
    assert [e["id"] for e in executions(rig)] == [running[0]["id"]]
    assert countfile.read_text() == "run\n"
