"""The medic_allowlist module's Python surface: types, errors and the edge of Python text."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from collections import OrderedDict
from pathlib import Path
from types import MappingProxyType

import medic_allowlist
import pytest
from medic_allowlist import LoadError, Refusal, Rules, SummaryError

HASH = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
ALLOWLIST = f"""
version = 1

[[script]]
name = "restart-service"
path = "/opt/medic/scripts/restart-service.sh"
sha256 = "{HASH}"
timeout = 120
args = [{{ fixed = "--graceful" }}, {{ one_of = ["nginx", "php-fpm"] }}]
rest = {{ pattern = "(?s).*", max_count = 1 }}
env = ["LOG_LEVEL"]
"""


@pytest.fixture
def rules() -> Rules:
    return Rules.from_summary(medic_allowlist.summary_from_toml(ALLOWLIST))


def test_rules_expose_the_allowlist_hash_and_sorted_names() -> None:
    text = ALLOWLIST + (
        f'\n[[script]]\nname = "a-first"\npath = "/opt/a"\nsha256 = "{HASH}"\ntimeout = 1\n'
    )
    rules = Rules.from_summary(medic_allowlist.summary_from_toml(text))
    assert rules.sha256 == hashlib.sha256(text.encode()).hexdigest()
    assert rules.names() == ["a-first", "restart-service"]
    assert len(rules) == 2
    assert "a-first" in rules
    assert "nope" not in rules
    assert repr(rules) == f"<Rules sha256={rules.sha256} scripts=2>"


def test_an_allowed_request_gives_none_and_a_refused_one_its_reason(rules: Rules) -> None:
    assert rules.check("restart-service", ["--graceful", "nginx"], {}) is None
    assert rules.check("restart-service", ("--graceful", "nginx", "x"), {"LOG_LEVEL": "1"}) is None
    refusal = rules.check("restart-service", ["--graceful", "apache"], {})
    assert refusal is not None
    assert refusal == Refusal("arg_not_allowed", refusal.detail)
    assert refusal.reason == "arg_not_allowed"
    assert "argument 2" in refusal.detail
    assert str(refusal) == f"arg_not_allowed: {refusal.detail}"
    assert repr(refusal).startswith("Refusal(reason='arg_not_allowed', detail=")


def test_any_mapping_and_any_sequence_will_do(rules: Rules) -> None:
    env = MappingProxyType({"LOG_LEVEL": "debug"})
    assert rules.check("restart-service", iter(["--graceful", "nginx"]), env) is None
    summary = OrderedDict(medic_allowlist.summary_from_toml(ALLOWLIST))
    assert Rules.from_summary(MappingProxyType(summary)).names() == ["restart-service"]


def test_timeouts_and_expected_hashes_follow_the_protocol(rules: Rules) -> None:
    ok = ["--graceful", "nginx"]
    assert rules.check("restart-service", ok, {}, timeout_seconds=0) is None
    assert rules.check("restart-service", ok, {}, timeout_seconds=120) is None
    refusal = rules.check("restart-service", ok, {}, timeout_seconds=121)
    assert refusal is not None and refusal.reason == "timeout_too_long"
    refusal = rules.check("restart-service", ok, {}, timeout_seconds=10**30)
    assert refusal is not None and refusal.reason == "timeout_too_long"
    assert rules.check("restart-service", ok, {}, expected_sha256="") is None
    assert rules.check("restart-service", ok, {}, expected_sha256=HASH.upper()) is None
    refusal = rules.check("restart-service", ok, {}, expected_sha256="0" * 64)
    assert refusal is not None and refusal.reason == "expected_hash_mismatch"


def test_arguments_of_the_wrong_type_raise(rules: Rules) -> None:
    with pytest.raises(TypeError, match="args must be a sequence of str"):
        rules.check("restart-service", "--graceful", {})
    with pytest.raises(TypeError, match=r"args\[1\] must be a str"):
        rules.check("restart-service", ["--graceful", 1], {})
    with pytest.raises(TypeError, match="env must be a mapping"):
        rules.check("restart-service", [], [("LOG_LEVEL", "1")])
    with pytest.raises(TypeError, match="env value must be a str"):
        rules.check("restart-service", [], {"LOG_LEVEL": 1})
    with pytest.raises(TypeError, match="script must be a str"):
        rules.check(b"restart-service", [], {})  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="timeout_seconds must be an int"):
        rules.check("restart-service", [], {}, timeout_seconds=True)
    with pytest.raises(ValueError, match="must not be negative"):
        rules.check("restart-service", [], {}, timeout_seconds=-1)
    with pytest.raises(ValueError, match="64 hexadecimal digits"):
        rules.check("restart-service", [], {}, expected_sha256="abc")


def test_text_that_utf8_cannot_hold_is_refused_at_its_own_step(rules: Rules) -> None:
    lone = "\ud800"
    cases = [
        ((lone, ["--graceful", "nginx"], {}), "not_allowlisted"),
        (("restart-service", ["--graceful", "nginx", lone], {}), "arg_not_allowed"),
        (("restart-service", ["--graceful", "nginx"], {lone: "1"}), "env_not_allowed"),
        (("restart-service", ["--graceful", "nginx"], {"LOG_LEVEL": lone}), "env_value_invalid"),
        # The count is checked before each argument, as always.
        (("restart-service", [lone], {}), "missing_args"),
    ]
    for (script, args, env), reason in cases:
        refusal = rules.check(script, args, env)
        assert refusal is not None and refusal.reason == reason, (script, args, env)


def test_summary_errors_are_value_errors_with_a_code() -> None:
    with pytest.raises(SummaryError) as raised:
        Rules.from_summary({"sha256": HASH, "scripts": [{"name": "x", "bogus": 1}]})
    assert isinstance(raised.value, ValueError)
    assert raised.value.code == "invalid_summary"
    assert "summary.scripts[0]" in str(raised.value)
    assert "bogus" in str(raised.value)
    with pytest.raises(SummaryError) as raised:
        Rules.from_summary(["not", "a", "mapping"])  # type: ignore[arg-type]
    assert raised.value.code == "invalid_summary"
    with pytest.raises(SummaryError) as raised:
        Rules.from_summary({1: HASH})  # type: ignore[dict-item]
    assert raised.value.code == "invalid_summary"
    with pytest.raises(SummaryError) as raised:
        Rules.from_summary({"sha256": "\ud800"})
    assert raised.value.code == "invalid_summary"


def test_summary_errors_in_an_entry_name_the_entry_and_the_rule() -> None:
    script = {
        "name": "x",
        "sha256": HASH,
        "timeout_seconds": 1,
        "args": [{"fixed": "a"}, {"pattern": {"regex": "(", "max_len": 4}}],
    }
    with pytest.raises(SummaryError) as raised:
        Rules.from_summary({"sha256": HASH, "scripts": [script]})
    assert raised.value.code == "invalid_pattern"
    assert 'script entry 1 ("x"): argument 2: invalid pattern' in str(raised.value)


def test_none_means_the_default_as_in_protobuf() -> None:
    summary = {
        "sha256": HASH,
        "scripts": [
            {"name": "x", "sha256": HASH, "timeout_seconds": 1, "args": None, "rest": None}
        ],
    }
    rules = Rules.from_summary(summary)
    assert rules.to_summary()["scripts"][0] == {
        "name": "x",
        "sha256": HASH,
        "args": [],
        "env": [],
        "timeout_seconds": 1,
    }


def test_load_errors_carry_the_format_code() -> None:
    with pytest.raises(LoadError) as raised:
        medic_allowlist.summary_from_toml("version = 2\n")
    assert isinstance(raised.value, ValueError)
    assert raised.value.code == "unsupported_version"
    with pytest.raises(LoadError) as raised:
        medic_allowlist.summary_from_toml("version = 1\n# \ud800\n")
    assert raised.value.code == "invalid_toml"
    with pytest.raises(TypeError):
        medic_allowlist.summary_from_toml(b"version = 1\n")  # type: ignore[arg-type]


def test_refusals_are_values_and_only_known_codes_make_one() -> None:
    assert Refusal("hash_mismatch", "x") == Refusal("hash_mismatch", "x")
    assert hash(Refusal("hash_mismatch", "x")) == hash(Refusal("hash_mismatch", "x"))
    assert Refusal("hash_mismatch", "x") != Refusal("hash_mismatch", "y")
    with pytest.raises(ValueError, match="unknown reason code"):
        Refusal("paused", "agent codes are not the verifier's")


def test_the_code_lists_are_consistent() -> None:
    assert len(set(medic_allowlist.REASON_CODES)) == len(medic_allowlist.REASON_CODES) == 29
    assert medic_allowlist.REASON_CODES[:8] == medic_allowlist.CHECK_REASON_CODES
    # The file-only codes of the interpreter checks and the sealed copy: an agent may report
    # them, so the server knows them (Refusal accepts them), though check() never gives them.
    for code in ("setuid", "script_too_large", "exec_copy_failed", "interpreter_untrusted"):
        assert code in medic_allowlist.REASON_CODES
        assert Refusal(code, "x").reason == code
    assert "invalid_toml" in medic_allowlist.LOAD_ERROR_CODES
    assert set(medic_allowlist.SUMMARY_ERROR_CODES) - {"invalid_summary"} <= set(
        medic_allowlist.LOAD_ERROR_CODES
    )
    assert medic_allowlist.__version__


def test_the_type_stubs_describe_the_module_exactly(tmp_path: Path) -> None:
    allowlist = tmp_path / "stubtest-allowlist"
    # maturin's package re-exports the extension module; the package's stub describes both.
    allowlist.write_text("medic_allowlist.medic_allowlist\n")
    result = subprocess.run(
        [sys.executable, "-m", "mypy.stubtest", "medic_allowlist", "--allowlist", str(allowlist)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
