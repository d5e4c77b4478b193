"""How a ``script`` step reads its ended agent executions: which count as failures and what the
error says, the bounded tails of output, and execution ids that never change for an attempt."""

from __future__ import annotations

from typing import Any

from medic_plugins.steps.script import _problem, _result, execution_id


def view(**fields: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "id": "e1",
        "agent_id": "web-1",
        "state": "succeeded",
        "exit_code": 0,
        "reason": None,
        "detail": None,
        "output": {"stdout": "", "stderr": ""},
    }
    return {**base, **fields}


def test_execution_ids_are_stable_per_run_step_attempt_and_agent() -> None:
    # A fixed value: a release that changed it would start a second run on re-attach.
    assert execution_id(7, "fix", 1, "web-1") == "1cbc7b2f-f581-5a08-8195-9943b49b956e"
    ids = {
        execution_id(7, "fix", 1, "web-1"),
        execution_id(7, "fix", 2, "web-1"),
        execution_id(7, "fix", 1, "web-2"),
        execution_id(8, "fix", 1, "web-1"),
        execution_id(7, "other", 1, "web-1"),
    }
    assert len(ids) == 5


def test_only_a_zero_exit_succeeds_and_each_failure_says_why() -> None:
    assert _problem("restart", view()) is None
    failed = view(state="failed", exit_code=3, output={"stderr": "warn\nunit not found\n"})
    assert _problem("restart", failed) == (
        "script 'restart' on agent web-1 exited with code 3: unit not found"
    )
    killed = view(state="failed", exit_code=None, reason="signal", detail="killed by signal 9")
    assert _problem("restart", killed) == (
        "script 'restart' on agent web-1 ended failed (signal): killed by signal 9"
    )
    slow = view(state="timed_out", exit_code=None, detail="ran past 30 s")
    assert _problem("restart", slow) == (
        "script 'restart' on agent web-1 timed out at the agent (ran past 30 s)"
    )
    tampered = view(state="rejected", exit_code=None, reason="hash_mismatch", detail="changed")
    assert _problem("restart", tampered) == (
        "agent web-1 rejected script 'restart' (hash_mismatch): changed"
    )
    lost = view(state="failed", exit_code=None, reason="lost", detail=None)
    assert _problem("restart", lost) == "script 'restart' on agent web-1 ended failed (lost): lost"


def test_output_keeps_bounded_tails_and_says_when_it_cut() -> None:
    long = view(output={"stdout": "a" * 100 + "END", "stderr": "err"}, output_truncated=False)
    result = _result(long, 10)
    assert (result["stdout"], result["stderr"], result["truncated"]) == ("aaaaaaaEND", "err", True)
    short = _result(view(output={"stdout": "ok\n", "stderr": ""}), 10)
    assert (short["stdout"], short["truncated"]) == ("ok\n", False)
    assert _result(view(output_truncated=True), 10)["truncated"] is True
