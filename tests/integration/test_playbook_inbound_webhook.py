"""A playbook's inbound webhook over HTTP, on SQLite and PostgreSQL: a request signed with the
playbook's secret starts a run with the body's variables and no API key; unsigned, wrongly
signed, stale, replayed and oversized requests are refused (401/413) and counted; the secret is
made by an admin only, shown once and stored encrypted; variables are checked (422)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp.test_utils import TestClient
from sqlalchemy import select

from conftest import auth, make_settings
from medic_core.app import Medic
from medic_core.audit import SYSTEM
from medic_core.clock import FakeClock
from medic_core.errors import Unauthorized
from medic_core.playbooks.webhooks import sign
from medic_core.secrets import Box, Secrets, SecretsNotConfigured, UnreadableSecret, generate_key
from medic_core.store.models import Playbook

KEY = generate_key()
HOOK = "/api/v1/playbooks/heal/webhook"
SECRET_URL = "/api/v1/playbooks/heal/webhook-secret"
DEFINITION = {
    "slug": "heal",
    "triggers": [{"kind": "webhook"}],
    "variables": {"host": {"type": "string", "required": True}},
    "steps": [{"name": "pause", "type": "wait", "params": {"seconds": 600}}],
}


@pytest.fixture
async def medic(db_url: str, tmp_path: Path, clock: FakeClock) -> AsyncIterator[Medic]:
    app = Medic(
        make_settings(
            db_url,
            tmp_path,
            secret_key=KEY,
            playbook_webhook_window=60,
            playbook_webhook_max_bytes=512,
        ),
        clock=clock,
    )
    await app.start(monitor=False)
    try:
        yield app
    finally:
        await app.stop()


async def secret(client: TestClient[Any, Any], admin_token: str, medic: Medic) -> str:
    await medic.playbooks.apply(DEFINITION, actor=SYSTEM)
    answer = await client.post(SECRET_URL, headers=auth(admin_token))
    assert answer.status == 200, await answer.text()
    assert answer.headers["Cache-Control"] == "no-store"
    value: str = (await answer.json())["secret"]
    return value


def signed(key: str, body: bytes, at: int, **override: str) -> dict[str, str]:
    stamp = str(at)
    return {
        "X-Medic-Timestamp": stamp,
        "X-Medic-Signature": sign(key, stamp, body),
        "Content-Type": "application/json",
        **override,
    }


def refused(medic: Medic, reason: str) -> float:
    value = medic.metrics.registry.get_sample_value(
        "medic_playbook_webhooks_refused_total", {"reason": reason}
    )
    return value or 0.0


async def test_a_signed_request_starts_a_run_with_its_variables_and_no_api_key(
    client: TestClient[Any, Any], admin_token: str, medic: Medic, clock: FakeClock
) -> None:
    key = await secret(client, admin_token, medic)
    body = orjson.dumps({"variables": {"host": "db-2"}})
    answer = await client.post(
        HOOK, data=body, headers=signed(key, body, int(clock.now().timestamp()))
    )
    assert answer.status == 201, await answer.text()
    run = await answer.json()
    assert run["trigger"] == "webhook"
    assert run["variables"] == {"host": "db-2"}
    assert run["created_by"] == "webhook:heal"
    # The secret is stored encrypted, never in clear.
    async with medic.db.sessions() as session:
        stored = await session.scalar(select(Playbook.webhook_secret))
    assert stored is not None and key not in stored


@pytest.mark.parametrize(
    ("case", "reason"),
    [
        ("no-headers", "unsigned"),
        ("malformed", "unsigned"),
        ("wrong-key", "bad_signature"),
        ("other-body", "bad_signature"),
        ("old", "stale"),
        ("future", "stale"),
        ("no-trigger", "not_enabled"),
        ("unknown-playbook", "not_enabled"),
    ],
)
async def test_a_request_not_signed_right_is_refused_401_and_counted(
    client: TestClient[Any, Any],
    admin_token: str,
    medic: Medic,
    clock: FakeClock,
    case: str,
    reason: str,
) -> None:
    key = await secret(client, admin_token, medic)
    body = orjson.dumps({"variables": {"host": "db-2"}})
    now = int(clock.now().timestamp())
    url = HOOK
    headers = signed(key, body, now)
    if case == "no-headers":
        headers = {}
    elif case == "malformed":
        headers["X-Medic-Signature"] = "md5=abc"
    elif case == "wrong-key":
        headers = signed(key + "x", body, now)
    elif case == "other-body":
        headers = signed(key, b'{"variables": {"host": "web-1"}}', now)
    elif case == "old":
        headers = signed(key, body, now - 61)
    elif case == "future":
        headers = signed(key, body, now + 61)
    elif case == "no-trigger":
        await medic.playbooks.apply({**DEFINITION, "triggers": [{"kind": "manual"}]}, actor=SYSTEM)
    elif case == "unknown-playbook":
        url = "/api/v1/playbooks/nope/webhook"
    answer = await client.post(url, data=body, headers=headers)
    assert answer.status == 401, await answer.text()
    assert refused(medic, reason) == 1
    assert (await medic.runs.list()).items == []


async def test_a_replayed_request_is_refused_within_the_window(
    client: TestClient[Any, Any], admin_token: str, medic: Medic, clock: FakeClock
) -> None:
    key = await secret(client, admin_token, medic)
    body = orjson.dumps({"variables": {"host": "db-2"}})
    headers = signed(key, body, int(clock.now().timestamp()))
    first = await client.post(HOOK, data=body, headers=headers)
    assert first.status == 201, await first.text()
    await medic.runs.cancel((await first.json())["id"], actor=SYSTEM)
    clock.advance(30)
    again = await client.post(HOOK, data=body, headers=headers)
    assert again.status == 401
    assert refused(medic, "replayed") == 1
    assert len((await medic.runs.list()).items) == 1


async def test_an_oversized_body_is_refused_413_before_its_signature_is_checked(
    client: TestClient[Any, Any], admin_token: str, medic: Medic, clock: FakeClock
) -> None:
    key = await secret(client, admin_token, medic)
    body = orjson.dumps({"variables": {"host": "x" * 600}})
    answer = await client.post(
        HOOK, data=body, headers=signed(key, body, int(clock.now().timestamp()))
    )
    assert answer.status == 413
    assert refused(medic, "too_large") == 1


async def test_variables_of_a_signed_request_are_checked(
    client: TestClient[Any, Any], admin_token: str, medic: Medic, clock: FakeClock
) -> None:
    key = await secret(client, admin_token, medic)
    now = int(clock.now().timestamp())
    for body in (b"{}", orjson.dumps({"variables": {"host": 3}}), orjson.dumps({"other": 1})):
        answer = await client.post(HOOK, data=body, headers=signed(key, body, now))
        assert answer.status == 422, await answer.text()
    assert (await medic.runs.list()).items == []


async def test_rotating_the_secret_needs_admin_and_retires_the_old_one(
    client: TestClient[Any, Any], admin_token: str, medic: Medic, clock: FakeClock
) -> None:
    old = await secret(client, admin_token, medic)
    _, writer = await medic.keys.create(name="w", scopes=["write"], actor=SYSTEM)
    assert (await client.post(SECRET_URL, headers=auth(writer))).status == 403
    assert (await client.post(SECRET_URL)).status == 401
    new = (await (await client.post(SECRET_URL, headers=auth(admin_token))).json())["secret"]
    assert new != old
    body = orjson.dumps({"variables": {"host": "db-2"}})
    now = int(clock.now().timestamp())
    assert (await client.post(HOOK, data=body, headers=signed(old, body, now))).status == 401
    assert (await client.post(HOOK, data=body, headers=signed(new, body, now))).status == 201


@pytest.mark.parametrize(
    ("body", "status"),
    [(b"{not json", 400), (b"[1]", 400), (b'{"variables": [1]}', 422)],
    ids=["not-json", "not-an-object", "variables-not-an-object"],
)
async def test_a_signed_body_that_is_not_a_variables_object_is_refused(
    client: TestClient[Any, Any],
    admin_token: str,
    medic: Medic,
    clock: FakeClock,
    body: bytes,
    status: int,
) -> None:
    key = await secret(client, admin_token, medic)
    headers = signed(key, body, int(clock.now().timestamp()))
    answer = await client.post(HOOK, data=body, headers=headers)
    assert answer.status == status, await answer.text()
    assert (await medic.runs.list()).items == []


async def test_without_a_secret_key_no_webhook_secret_is_made_and_the_webhook_refuses(
    db_url: str, tmp_path: Path, clock: FakeClock
) -> None:
    app = Medic(make_settings(db_url, tmp_path), clock=clock)
    await app.start(monitor=False)
    try:
        await app.playbooks.apply(DEFINITION, actor=SYSTEM)
        with pytest.raises(SecretsNotConfigured):
            await app.webhooks.rotate_secret("heal", actor=SYSTEM)
        body = b"{}"
        now = str(int(clock.now().timestamp()))
        with pytest.raises(Unauthorized):
            await app.webhooks.receive("heal", now, sign("guess", now, body), body)
        assert refused(app, "not_enabled") == 1
    finally:
        await app.stop()


@pytest.mark.parametrize(("window", "size"), [(5, 512), (60, 100)])
async def test_the_webhook_settings_are_bounded(
    db_url: str, tmp_path: Path, clock: FakeClock, window: float, size: int
) -> None:
    settings = make_settings(
        db_url, tmp_path, playbook_webhook_window=window, playbook_webhook_max_bytes=size
    )
    with pytest.raises(ValueError, match="MEDIC_PLAYBOOK_WEBHOOK"):
        Medic(settings, clock=clock)


async def test_secret_rotation_moves_webhook_secrets_to_the_first_key_too(
    client: TestClient[Any, Any], admin_token: str, medic: Medic, clock: FakeClock
) -> None:
    value = await secret(client, admin_token, medic)
    new_key = generate_key()
    store = Secrets(
        medic.db, clock, medic.bus, medic.metrics, Box([new_key, KEY]), max_bytes=64, max_count=10
    )
    assert await store.rotate(actor=SYSTEM) == 1
    async with medic.db.sessions() as session:
        token = await session.scalar(select(Playbook.webhook_secret).where(Playbook.slug == "heal"))
    assert token is not None
    assert Box([new_key]).decrypt("webhook of heal", token) == value  # the old key can go
    with pytest.raises(UnreadableSecret):
        Box([KEY]).decrypt("webhook of heal", token)
