"""The rules of executions that need no server: request shapes and the state order."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from medic_core.agent.execution_requests import ExecutionRequest
from medic_core.agent.execution_values import FINAL, STATES, moves, reason_label, stored_text
from medic_core.errors import ValidationError

ORDER = {"pending": 0, "accepted": 1, "running": 2, **{state: 3 for state in FINAL}}
AGENT_STATES = [s for s in STATES if s != "pending"] + ["unspecified"]


def test_a_request_defaults_to_no_arguments_no_environment_and_the_entry_timeout() -> None:
    request = ExecutionRequest.of("rotate-logs", None, None, None)
    assert (request.args, request.env, request.timeout_seconds) == ((), {}, None)
    assert ExecutionRequest.of("x", ("a",), {"A": "b"}, 5).args == ("a",)


@pytest.mark.parametrize(
    ("args", "env", "field"),
    [
        (["ok", "nul\x00byte"], {}, "args[1]"),
        ([], {"NAME": "nul\x00"}, "env.NAME"),
        ([], {3: "x"}, "env"),
        (["x" * 4097], {}, "args[0]"),
    ],
)
def test_values_are_bounded_strings_without_nul(
    args: list[object], env: dict[object, object], field: str
) -> None:
    with pytest.raises(ValidationError) as info:
        ExecutionRequest.of("x", args, env, None)
    assert info.value.field == field


def test_a_value_of_exactly_4096_bytes_is_accepted() -> None:
    assert ExecutionRequest.of("x", ["é" * 2048], {"V": "v" * 4096}, 86_400).timeout_seconds


@given(st.lists(st.sampled_from(AGENT_STATES), max_size=12))
def test_updates_only_ever_move_forward_and_a_final_state_never_changes(
    updates: list[str],
) -> None:
    state = "pending"
    for new in updates:
        before = state
        if moves(state, new):
            assert ORDER[new] > ORDER[state]
            assert new != "rejected" or state == "pending"
            state = new
        if before in FINAL:
            assert state == before
        elif new in FINAL and new != "rejected":
            assert state == new  # a final report always lands on an unfinished execution


@pytest.mark.parametrize(
    ("current", "new", "progress"),
    [
        ("pending", "rejected", True),
        ("accepted", "rejected", False),
        ("pending", "succeeded", True),
        ("running", "accepted", False),
        ("succeeded", "failed", False),
        ("running", "pending", False),
        ("pending", "unspecified", False),
    ],
)
def test_state_order(current: str, new: str, progress: bool) -> None:
    assert moves(current, new) is progress


def test_agent_text_is_bounded_and_storable_and_reason_labels_are_bounded() -> None:
    assert stored_text("a\x00b", 10) == "a\ufffdb"
    assert stored_text("x" * 50, 10) == "x" * 10
    assert stored_text("", 10) is None
    assert reason_label("arg_not_allowed") == "arg_not_allowed"
    assert reason_label("Free text, from a buggy agent") == "other"
    assert reason_label(None) == "other"
