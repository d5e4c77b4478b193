"""The shared allowlist vectors (tests/vectors/allowlist), through the medic_allowlist bindings.

The Rust crate runs the same files (agent-rs/medic-allowlist/tests/vectors.rs); here every
request goes the way the server checks it: the allowlist text becomes the summary its agent
advertises (``summary_from_toml``), the summary becomes ``Rules`` (``Rules.from_summary``, after a
JSON round trip, as the server stores it), and ``Rules.check`` gives the verdict.
"""

from __future__ import annotations

import json
import tomllib
from pathlib import Path
from typing import Any

import medic_allowlist
import pytest
from google.protobuf.json_format import MessageToDict, ParseDict

from medic_core.server.grpc.proto import agent_pb2

VECTORS = Path(__file__).resolve().parents[1] / "vectors" / "allowlist"
FILE_ONLY_LOAD_ERRORS = {"untrusted_file", "unreadable"}


def _text(value: Any) -> str:
    """A text of the vectors: a string, ``{repeat, times}`` or ``{concat = [...]}``."""
    if isinstance(value, str):
        return value
    if "repeat" in value:
        return str(value["repeat"]) * int(value["times"])
    return "".join(_text(part) for part in value["concat"])


def _files(kind: str) -> list[tuple[str, dict[str, Any]]]:
    paths = sorted((VECTORS / kind).glob("*.toml"))
    assert paths, f"no vectors in {VECTORS / kind}"
    return [(path.name, tomllib.loads(path.read_text(encoding="utf-8"))) for path in paths]


def _cases(kind: str) -> list[Any]:
    return [
        pytest.param(file, case, id=f"{name}: {case['name']}")
        for name, file in _files(kind)
        for case in file["case"]
    ]


def _stored(summary: dict[str, Any]) -> dict[str, Any]:
    """The summary as the server reads it back from its database (JSON)."""
    loaded: dict[str, Any] = json.loads(json.dumps(summary))
    return loaded


def _proto_dict(summary: dict[str, Any]) -> dict[str, Any]:
    """What the server stores for this summary once it went through the protocol."""
    message = ParseDict(summary, agent_pb2.AllowlistSummary())
    return MessageToDict(
        message, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
    )


def _rules(allowlist: str) -> medic_allowlist.Rules:
    return medic_allowlist.Rules.from_summary(_stored(medic_allowlist.summary_from_toml(allowlist)))


def _verdict(rules: medic_allowlist.Rules, case: dict[str, Any]) -> str:
    refusal = rules.check(
        case["script"],
        [_text(arg) for arg in case.get("args", [])],
        {name: _text(value) for name, value in case.get("env", {}).items()},
        timeout_seconds=case.get("timeout_seconds"),
        expected_sha256=case.get("expected_sha256"),
    )
    return "ok" if refusal is None else refusal.reason


@pytest.mark.parametrize(("file", "case"), _cases("check"))
def test_check_vector_gets_its_verdict_through_the_advertised_summary(
    file: dict[str, Any], case: dict[str, Any]
) -> None:
    assert _verdict(_rules(_text(file["allowlist"])), case) == case["expect"]


@pytest.mark.parametrize("file", [pytest.param(file, id=name) for name, file in _files("check")])
def test_summary_from_toml_is_exactly_what_the_protocol_carries_and_the_server_stores(
    file: dict[str, Any],
) -> None:
    summary = medic_allowlist.summary_from_toml(_text(file["allowlist"]))
    assert _proto_dict(summary) == summary
    assert medic_allowlist.Rules.from_summary(_proto_dict(summary)).to_summary() == summary


@pytest.mark.parametrize(("file", "case"), _cases("load"))
def test_load_vector_gets_its_verdict(file: dict[str, Any], case: dict[str, Any]) -> None:
    text = _text(case["allowlist"])
    try:
        summary = medic_allowlist.summary_from_toml(text)
    except medic_allowlist.LoadError as error:
        assert error.code == case["expect"], str(error)
        assert isinstance(error, ValueError)
        return
    assert case["expect"] == "ok"
    # A valid allowlist's summary is a valid summary, and round-trips.
    rules = medic_allowlist.Rules.from_summary(_stored(summary))
    assert rules.to_summary() == summary


@pytest.mark.parametrize(("file", "case"), _cases("summary"))
def test_summary_vector_gets_its_verdict(file: dict[str, Any], case: dict[str, Any]) -> None:
    summary = dict(case["summary"])
    if "repeat_scripts" in case:
        summary["scripts"] = summary["scripts"] * case["repeat_scripts"]
    try:
        rules = medic_allowlist.Rules.from_summary(summary)
    except medic_allowlist.SummaryError as error:
        assert error.code == case["expect"], str(error)
        assert str(error).startswith("invalid allowlist summary: ")
        return
    assert case["expect"] == "ok"
    assert medic_allowlist.Rules.from_summary(rules.to_summary()).to_summary() == rules.to_summary()


def _expected(kind: str) -> set[str]:
    return {case["expect"] for _, file in _files(kind) for case in file["case"]}


def test_check_vectors_cover_every_reason_code_the_rule_check_can_give() -> None:
    codes = set(medic_allowlist.CHECK_REASON_CODES)
    assert codes <= set(medic_allowlist.REASON_CODES)
    assert _expected("check") == codes | {"ok"}


def test_load_vectors_cover_every_load_error_code_text_can_cause() -> None:
    codes = set(medic_allowlist.LOAD_ERROR_CODES) - FILE_ONLY_LOAD_ERRORS
    assert _expected("load") == codes | {"ok"}


def test_summary_vectors_cover_every_summary_error_code() -> None:
    assert _expected("summary") == set(medic_allowlist.SUMMARY_ERROR_CODES) | {"ok"}
