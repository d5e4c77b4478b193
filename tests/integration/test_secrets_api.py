"""Secrets over the API and in the store, on SQLite and PostgreSQL: values are stored only as
ciphertext and never answered; admins set and delete, readers see names; each limit answers its
problem and counts its metric; without MEDIC_SECRET_KEY secrets answer 409 and the rest works;
rotation moves every value to the first key so the old one can go."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from sqlalchemy import select

from conftest import auth, make_settings
from medic_core.app import Medic
from medic_core.audit import SYSTEM
from medic_core.clock import FakeClock
from medic_core.errors import NotFound
from medic_core.secrets import Box, Secrets, UnreadableSecret, generate_key
from medic_core.store.models import Secret

KEY_A = generate_key()
KEY_B = generate_key()
URL = "/api/v1/secrets"


@pytest.fixture
async def medic(db_url: str, tmp_path: Path, clock: FakeClock) -> AsyncIterator[Medic]:
    """The conftest Medic, with MEDIC_SECRET_KEY set and small limits to reach."""
    app = Medic(
        make_settings(db_url, tmp_path, secret_key=KEY_A, secret_max_bytes=64, secrets_max=3),
        clock=clock,
    )
    await app.start(monitor=False)
    try:
        yield app
    finally:
        await app.stop()


async def token(medic: Medic, scope: str) -> str:
    _, made = await medic.keys.create(name=f"{scope} key", scopes=[scope], actor=SYSTEM)
    return made


def refused(medic: Medic, reason: str) -> float:
    value = medic.metrics.registry.get_sample_value(
        "medic_secrets_refused_total", {"reason": reason}
    )
    return value or 0.0


async def rows(medic: Medic) -> dict[str, str]:
    async with medic.db.sessions() as session:
        return {s.name: s.ciphertext for s in (await session.scalars(select(Secret))).all()}


async def test_set_creates_then_replaces_and_no_answer_or_row_holds_the_value(
    client: TestClient[Any, Any], admin_token: str, medic: Medic
) -> None:
    first = await client.put(
        f"{URL}/DB_PASSWORD", json={"value": "first-value"}, headers=auth(admin_token)
    )
    assert first.status == 201, await first.text()
    body = await first.json()
    assert set(body) == {"name", "created_at", "updated_at", "updated_by"}
    assert body["name"] == "DB_PASSWORD" and body["updated_by"].startswith("key:")
    again = await client.put(
        f"{URL}/DB_PASSWORD", json={"value": "second-value"}, headers=auth(admin_token)
    )
    assert again.status == 200
    listed = await client.get(URL, headers=auth(admin_token))
    text = await listed.text()
    assert [item["name"] for item in (await listed.json())["items"]] == ["DB_PASSWORD"]
    for answer in (await first.text(), await again.text(), text):
        assert "first-value" not in answer and "second-value" not in answer
    stored = (await rows(medic))["DB_PASSWORD"]
    assert "second-value" not in stored and "first-value" not in stored
    assert await medic.secrets.resolve(["DB_PASSWORD"]) == {"DB_PASSWORD": "second-value"}
    deleted = await client.delete(f"{URL}/DB_PASSWORD", headers=auth(admin_token))
    assert deleted.status == 204
    assert (await client.delete(f"{URL}/DB_PASSWORD", headers=auth(admin_token))).status == 404
    assert await rows(medic) == {}


async def test_only_admin_keys_set_or_delete_and_read_keys_see_only_names(
    client: TestClient[Any, Any], admin_token: str, medic: Medic
) -> None:
    await medic.secrets.set("WEBHOOK_TOKEN", "token-value", actor=SYSTEM)
    for scope in ("read", "write", "heartbeat", "agent"):
        key = await token(medic, scope)
        put = await client.put(f"{URL}/WEBHOOK_TOKEN", json={"value": "stolen!"}, headers=auth(key))
        assert put.status == 403, scope
        assert (await client.delete(f"{URL}/WEBHOOK_TOKEN", headers=auth(key))).status == 403
    reader = await token(medic, "read")
    listed = await client.get(URL, headers=auth(reader))
    assert listed.status == 200 and "token-value" not in await listed.text()
    assert (await client.get(URL, headers=auth(await token(medic, "agent")))).status == 403
    assert await medic.secrets.resolve(["WEBHOOK_TOKEN"]) == {"WEBHOOK_TOKEN": "token-value"}


@pytest.mark.parametrize(
    ("name", "value", "status", "reason", "says"),
    [
        ("1STARTS_WITH_DIGIT", "long-enough", 422, "bad_name", "like an environment variable"),
        ("has-dash", "long-enough", 422, "bad_name", "not valid"),
        ("N" * 65, "long-enough", 422, "bad_name", "1 to 64"),
        ("SHORT", "abc", 422, "too_short", "at least 4 characters"),
        ("STARS", "******", 422, "too_short", "not only '*'"),
        ("BIG", "é" * 33, 413, "too_large", "66 bytes; at most 64"),
    ],
)
async def test_each_limit_answers_its_problem_and_counts_its_reason(
    client: TestClient[Any, Any],
    admin_token: str,
    medic: Medic,
    name: str,
    value: str,
    status: int,
    reason: str,
    says: str,
) -> None:
    before = refused(medic, reason)
    answer = await client.put(f"{URL}/{name}", json={"value": value}, headers=auth(admin_token))
    assert answer.status == status, await answer.text()
    problem = await answer.json()
    assert says in problem["detail"] and value not in problem["detail"]
    assert refused(medic, reason) == before + 1
    assert await rows(medic) == {}


async def test_the_number_of_secrets_is_bounded_but_replacing_one_is_not_refused(
    client: TestClient[Any, Any], admin_token: str, medic: Medic
) -> None:
    for name in ("ONE", "TWO", "THREE"):
        assert (
            await client.put(f"{URL}/{name}", json={"value": "a-value"}, headers=auth(admin_token))
        ).status == 201
    answer = await client.put(f"{URL}/FOUR", json={"value": "a-value"}, headers=auth(admin_token))
    assert answer.status == 409
    assert "MEDIC_SECRETS_MAX" in (await answer.json())["detail"]
    assert refused(medic, "too_many") == 1
    replace = await client.put(f"{URL}/ONE", json={"value": "b-value"}, headers=auth(admin_token))
    assert replace.status == 200


async def test_set_delete_and_rotate_are_audited_and_announced_by_name_only(
    client: TestClient[Any, Any], admin_token: str, medic: Medic
) -> None:
    seen: list[tuple[str, dict[str, Any]]] = []

    async def record(event: Any) -> None:
        if event.type.startswith("secret."):
            seen.append((event.type, dict(event.data)))

    medic.bus.subscribe("test", record)
    await client.put(f"{URL}/API_KEY", json={"value": "api-key-value"}, headers=auth(admin_token))
    await client.put(f"{URL}/API_KEY", json={"value": "api-key-value-2"}, headers=auth(admin_token))
    await client.delete(f"{URL}/API_KEY", headers=auth(admin_token))
    await medic.secrets.rotate(actor=SYSTEM)
    await medic.bus.drain()
    assert seen == [
        ("secret.changed", {"name": "API_KEY", "change": "created"}),
        ("secret.changed", {"name": "API_KEY", "change": "updated"}),
        ("secret.changed", {"name": "API_KEY", "change": "deleted"}),
    ]
    audit = (await medic.audit.list(resource_type="secret")).items
    assert sorted(entry["action"] for entry in audit) == [
        "secret.delete",
        "secret.rotate",
        "secret.set",
        "secret.set",
    ]
    assert "api-key-value" not in str(audit)


async def test_resolve_names_every_unknown_secret(medic: Medic) -> None:
    await medic.secrets.set("KNOWN", "known-value", actor=SYSTEM)
    with pytest.raises(NotFound, match="'MISSING_A', 'MISSING_B'"):
        await medic.secrets.resolve(["KNOWN", "MISSING_B", "MISSING_A"])
    assert await medic.secrets.resolve([]) == {}


async def test_rotation_moves_every_value_to_the_first_key_so_the_old_one_can_go(
    medic: Medic, clock: FakeClock
) -> None:
    values = {f"SECRET_{i}": f"value-number-{i}" for i in range(250)}  # three batches of 100
    store_a = medic.secrets
    store_a.max_count = 1000
    for name, value in values.items():
        await store_a.set(name, value, actor=SYSTEM)

    def store(keys: list[str]) -> Secrets:
        box = Box(keys)
        return Secrets(medic.db, clock, medic.bus, medic.metrics, box, max_bytes=64, max_count=1000)

    with pytest.raises(UnreadableSecret, match="SECRET_0"):
        await store([KEY_B]).resolve(["SECRET_0"])  # B alone cannot open what A wrote
    progress: list[int] = []
    assert await store([KEY_B, KEY_A]).rotate(actor=SYSTEM, on_batch=progress.append) == 250
    assert progress == [100, 200, 250]
    assert await store([KEY_B]).resolve(values) == values
    with pytest.raises(UnreadableSecret):
        await store([KEY_A]).resolve(["SECRET_0"])
    failures = medic.metrics.registry.get_sample_value("medic_secret_decrypt_failures_total")
    assert failures == 2


async def test_rotation_stops_at_a_secret_no_key_opens_and_names_it(
    medic: Medic, clock: FakeClock
) -> None:
    await medic.secrets.set("FINE", "fine-value", actor=SYSTEM)
    await medic.secrets.set("LOST", "lost-value", actor=SYSTEM)
    async with medic.db.transaction() as session:
        lost = await session.scalar(select(Secret).where(Secret.name == "LOST"))
        assert lost is not None
        lost.ciphertext = Box([KEY_B]).encrypt("lost-value")  # a key MEDIC_SECRET_KEY lacks
    with pytest.raises(UnreadableSecret) as caught:
        await medic.secrets.rotate(actor=SYSTEM)
    assert "'LOST'" in str(caught.value) and "lost-value" not in str(caught.value)


async def test_without_a_key_secrets_answer_409_and_everything_else_works(
    db_url: str, tmp_path: Path, clock: FakeClock
) -> None:
    from aiohttp.test_utils import TestServer

    from medic_core.server.http.app import build_app

    app = Medic(make_settings(db_url, tmp_path), clock=clock)
    await app.start(monitor=False)
    try:
        admin = await app.ensure_admin_key()
        assert admin is not None
        async with TestClient(TestServer(build_app(app))) as client:
            answer = await client.put(
                f"{URL}/X_TOKEN", json={"value": "a-value"}, headers=auth(admin)
            )
            assert answer.status == 409
            problem = await answer.json()
            assert problem["type"] == "urn:medic:problem:secrets-not-configured"
            assert "medic secret keygen" in problem["detail"]
            assert refused(app, "no_key") == 1
            assert (await client.get(URL, headers=auth(admin))).status == 200
            services = await client.get("/api/v1/services", headers=auth(admin))
            assert services.status == 200
        with pytest.raises(Exception, match="MEDIC_SECRET_KEY"):
            await app.secrets.resolve(["X_TOKEN"])
    finally:
        await app.stop()
