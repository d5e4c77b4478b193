"""The server's allowlist check: the real verifier (``medic_allowlist``), its cache, its gaps."""

from __future__ import annotations

import sys
from typing import Any

import pytest

from medic_core.agent.verify import AllowlistVerifier, Refusal, script_sha256
from medic_core.errors import Unavailable

SHA = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"


def summary(file_sha: str = "ab" * 32, **script: Any) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "name": "restart-service",
        "sha256": SHA,
        "args": [{"one_of": {"values": ["nginx", "php-fpm"]}}],
        "env": ["LOG_LEVEL"],
        "timeout_seconds": 120,
    }
    entry.update(script)
    return {"sha256": file_sha, "scripts": [entry]}


async def test_an_allowed_request_passes_and_a_refused_one_names_its_reason() -> None:
    verifier = AllowlistVerifier()
    allowed = await verifier.check(summary(), "restart-service", ["nginx"], {"LOG_LEVEL": "x"}, 60)
    assert allowed is None
    refusal = await verifier.check(summary(), "restart-service", ["apache"], {}, None)
    assert isinstance(refusal, Refusal) and refusal.reason == "arg_not_allowed"
    assert "apache" not in refusal.detail  # details never carry values
    unknown = await verifier.check(summary(), "nope", [], {}, None)
    assert unknown is not None and unknown.reason == "not_allowlisted"


async def test_compiled_rules_are_cached_per_hash_but_never_shared_across_contents() -> None:
    verifier = AllowlistVerifier()
    first = await verifier._rules(summary())
    assert await verifier._rules(summary()) is first
    # Same advertised hash, other rules (a lying or confused agent): compiled afresh.
    looser = summary(args=[{"pattern": {"regex": "[a-z]+", "max_len": 16}}])
    assert await verifier._rules(looser) is not first
    assert await verifier.check(looser, "restart-service", ["apache"], {}, None) is None
    assert await verifier.check(summary(), "restart-service", ["apache"], {}, None) is not None


async def test_the_cache_is_bounded() -> None:
    verifier = AllowlistVerifier(cache_size=2)
    for digit in "123":
        await verifier._rules(summary(digit * 64))
    assert list(verifier._cache) == ["2" * 64, "3" * 64]


async def test_a_summary_the_verifier_cannot_read_refuses_with_allowlist_unavailable() -> None:
    refusal = await AllowlistVerifier().check(
        summary(sha256="not-hex"), "restart-service", ["nginx"], {}, None
    )
    assert refusal is not None and refusal.reason == "allowlist_unavailable"
    assert "invalid_sha256" in refusal.detail
    empty = await AllowlistVerifier().check({}, "restart-service", [], {}, None)
    assert empty is not None and empty.reason == "allowlist_unavailable"


async def test_without_the_bindings_nothing_is_checked_so_nothing_may_be_sent(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "medic_allowlist", None)  # as if not installed
    with pytest.raises(Unavailable, match="make install"):
        await AllowlistVerifier().check(summary(), "restart-service", ["nginx"], {}, None)


def test_script_sha256_is_the_advertised_hash_of_the_entry() -> None:
    assert script_sha256(summary(), "restart-service") == SHA
    assert script_sha256(summary(), "other") == ""
    assert script_sha256({"scripts": None}, "restart-service") == ""
