"""Property: any valid playbook reads back as it was written -- YAML -> PUT -> GET -> YAML,
semantically equal -- on SQLite and PostgreSQL (JSONB reorders keys, and keeps a number's
decimal value, not Python's int/float: 1.969231553049395e+16 reads back as 19692315530493950,
the same JSON number; so numbers are compared as decimals)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import yaml
from aiohttp.test_utils import TestClient, TestServer
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from conftest import auth, make_settings
from medic_core.app import Medic
from medic_core.clock import FakeClock
from medic_core.playbooks.definition import dump_yaml
from medic_core.server.http.app import build_app

NAMES = st.from_regex(r"[a-z][a-z0-9_-]{0,10}", fullmatch=True)
TEXT = st.text(
    st.characters(blacklist_categories=("Cs", "Cc"), blacklist_characters="{}%#"), max_size=40
)
SCALAR = st.one_of(
    st.booleans(),
    st.integers(-(2**53), 2**53),
    TEXT,
    st.floats(allow_nan=False, allow_infinity=False, width=32),
)
BODY = st.recursive(
    SCALAR,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(NAMES, inner, max_size=3),
    max_leaves=8,
)


@st.composite
def steps(draw: st.DrawFn) -> list[dict[str, Any]]:
    names = draw(st.lists(NAMES, min_size=1, max_size=5, unique=True))
    made = []
    for name in names:
        kind = draw(st.sampled_from(["wait", "webhook", "notify"]))
        if kind == "wait":
            params: dict[str, Any] = {"seconds": draw(st.integers(1, 604_800))}
        elif kind == "webhook":
            params = {"url": "https://example.org/" + draw(NAMES), "body": draw(BODY)}
        else:
            params = {"target": draw(NAMES), "message": draw(TEXT.filter(bool))}
        step: dict[str, Any] = {"name": name, "type": kind, "params": params}
        if draw(st.booleans()):
            step["on_failure"] = draw(
                st.sampled_from(["stop", "continue", *[f"goto {n}" for n in names if n != name]])
            )
        if draw(st.booleans()):
            step["timeout"] = draw(st.integers(1, 86_400))
        made.append(step)
    return made


PLAYBOOKS = st.fixed_dictionaries(
    {"slug": st.from_regex(r"[a-z0-9][a-z0-9._-]{0,20}", fullmatch=True), "steps": steps()},
    optional={
        "name": TEXT.filter(bool),
        "description": TEXT,
        "cancel_on_resolve": st.booleans(),
        "variables": st.dictionaries(
            st.from_regex(r"[a-z_][a-z0-9_]{0,8}", fullmatch=True),
            st.just({"type": "integer", "default": 3}) | st.just({"type": "boolean"}),
            max_size=3,
        ),
        "triggers": st.lists(
            st.just({"kind": "manual"}) | st.just({"kind": "webhook"}), max_size=2
        ),
    },
)


@pytest.fixture
def served(db_url: str, tmp_path: Path) -> Iterator[tuple[asyncio.AbstractEventLoop, Any, str]]:
    """A served app on a loop of its own, so the (synchronous) property test can drive it."""
    loop = asyncio.new_event_loop()
    medic = Medic(make_settings(db_url, tmp_path), clock=FakeClock())

    async def start() -> tuple[TestClient[Any, Any], str]:
        await medic.start(monitor=False)
        token = await medic.ensure_admin_key()
        assert token is not None
        client = TestClient(TestServer(build_app(medic)))
        await client.start_server()
        return client, token

    client, token = loop.run_until_complete(start())
    try:
        yield loop, client, token
    finally:
        loop.run_until_complete(client.close())
        loop.run_until_complete(medic.stop())
        loop.close()


def as_json_numbers(value: Any) -> Any:
    """``value`` with every number a ``Decimal`` of its JSON text (booleans left alone)."""
    if isinstance(value, dict):
        return {key: as_json_numbers(child) for key, child in value.items()}
    if isinstance(value, list):
        return [as_json_numbers(child) for child in value]
    if isinstance(value, float):
        return Decimal(repr(value))
    if isinstance(value, int) and not isinstance(value, bool):
        return Decimal(value)
    return value


@settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(playbook=PLAYBOOKS)
@example(  # JSONB gives this float back as the integer 19692315530493950 (the same number)
    playbook={
        "slug": "0",
        "steps": [
            {
                "name": "a",
                "type": "webhook",
                "params": {"url": "https://example.org/a", "body": 1.969231553049395e16},
            }
        ],
    }
)
@example(  # JSONB prints this float as 301 digits: read back as an integer, no answer held it
    playbook={
        "slug": "big",
        "steps": [
            {
                "name": "a",
                "type": "webhook",
                "params": {"url": "https://example.org/a", "body": [1e300, -3.4e38]},
            }
        ],
    }
)
def test_a_playbook_reads_back_as_written(
    served: tuple[asyncio.AbstractEventLoop, Any, str], playbook: dict[str, Any]
) -> None:
    loop, client, token = served
    text = dump_yaml(playbook)

    async def round_trip() -> dict[str, Any]:
        headers = {**auth(token), "Content-Type": "application/yaml"}
        put = await client.put(f"/api/v1/playbooks/{playbook['slug']}", data=text, headers=headers)
        assert put.status in (200, 201), await put.text()
        got = await client.get(f"/api/v1/playbooks/{playbook['slug']}", headers=auth(token))
        assert got.status == 200, await got.text()
        definition: dict[str, Any] = (await got.json())["definition"]
        return definition

    stored = loop.run_until_complete(round_trip())
    assert yaml.safe_load(text) == playbook
    assert as_json_numbers(yaml.safe_load(dump_yaml(stored))) == as_json_numbers(playbook)
