"""REST API v1: API keys (shown once, hashed, scoped, expiring, revocable), the audit log, and
the bootstrap admin key."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy import select

from conftest import auth, make_settings
from medic_core.app import Medic
from medic_core.audit import Actor
from medic_core.clock import FakeClock, isoformat
from medic_core.server.http.app import build_app
from medic_core.store.models import ApiKey, AuditEntry

PROBLEM = "application/problem+json"
KEYS = "/api/v1/api-keys"
AUDIT = "/api/v1/audit"


async def problem_of(response: Any, status: int) -> dict[str, Any]:
    assert response.status == status, await response.text()
    assert response.content_type == PROBLEM
    body = await response.json()
    assert body["status"] == status
    assert body["title"] and body["detail"]
    return body


async def get_json(client: TestClient, token: str, path: str) -> Any:
    response = await client.get(path, headers=auth(token))
    assert response.status == 200, await response.text()
    return await response.json()


async def new_key(
    client: TestClient, admin_token: str, scopes: list[str], **extra: Any
) -> dict[str, Any]:
    response = await client.post(
        KEYS, json={"name": f"{'+'.join(scopes)} key", "scopes": scopes, **extra},
        headers=auth(admin_token),
    )
    assert response.status == 201, await response.text()
    return await response.json()


def key_actor(token: str) -> str:
    return f"key:{token.split('_')[1]}"


SERVICE = {"slug": "svc", "expectation": {"kind": "interval", "period": 60}}


# -- creating and listing ------------------------------------------------------------------------


async def test_create_returns_the_token_once_and_never_again(
    client: TestClient, admin_token: str, clock: FakeClock
) -> None:
    created = await new_key(client, admin_token, ["read"])
    token = created["token"]
    assert token.startswith(f"medic_{created['key_id']}_")
    assert (created["name"], created["scopes"]) == ("read key", ["read"])
    assert created["created_at"] == isoformat(clock.now())
    assert created["created_by"] == key_actor(admin_token)
    assert (created["expires_at"], created["revoked_at"], created["last_used_at"]) == (
        None, None, None
    )

    listed = await get_json(client, admin_token, KEYS)
    one_by_id = await get_json(client, admin_token, f"{KEYS}/{created['id']}")
    one_by_key_id = await get_json(client, admin_token, f"{KEYS}/{created['key_id']}")
    secret = token.split("_", 2)[2]  # the secret itself may contain "_"
    for document in (listed, one_by_id, one_by_key_id):
        text = str(document)
        assert "token" not in text and "secret" not in text and "hash" not in text
        assert secret not in text
    assert one_by_id == one_by_key_id
    assert [k["key_id"] for k in listed["items"]] == [
        admin_token.split("_")[1], created["key_id"]
    ]
    assert listed["next_cursor"] is None


async def test_stored_hash_is_not_the_token(
    client: TestClient, medic: Medic, admin_token: str
) -> None:
    created = await new_key(client, admin_token, ["write"])
    secret = created["token"].split("_", 2)[2]
    async with medic.db.sessions() as session:
        row = await session.scalar(select(ApiKey).where(ApiKey.key_id == created["key_id"]))
        entries = (await session.scalars(select(AuditEntry))).all()
    assert row is not None
    assert row.secret_hash != secret and secret not in row.secret_hash
    assert len(row.secret_hash) == 64 and int(row.secret_hash, 16) >= 0  # a hex digest
    for column in (row.key_id, row.name, row.created_by, str(row.scopes)):
        assert secret not in (column or "")
    # Nor does the token reach the audit log.
    assert all(secret not in f"{e.before}{e.after}" and row.secret_hash not in f"{e.after}"
               for e in entries)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"name": "k", "scopes": []}, "scopes"),
        ({"name": "k", "scopes": ["root"]}, "scopes[0]"),
        ({"name": "k", "scopes": "read"}, "scopes"),
        ({"name": "k"}, "scopes"),
        ({"scopes": ["read"]}, "name"),
        ({"name": "  ", "scopes": ["read"]}, "name"),
        ({"name": "k", "scopes": ["read"], "expires_at": "2026-03-01T11:00:00Z"}, "expires_at"),
        ({"name": "k", "scopes": ["read"], "expires_at": "next week"}, "expires_at"),
    ],
)
async def test_invalid_key_is_a_422_naming_the_field(
    client: TestClient, admin_token: str, body: dict[str, Any], field: str
) -> None:
    response = await client.post(KEYS, json=body, headers=auth(admin_token))
    assert (await problem_of(response, 422))["field"] == field
    assert len((await get_json(client, admin_token, KEYS))["items"]) == 1  # the admin key only


async def test_key_with_unknown_field_is_a_422(client: TestClient, admin_token: str) -> None:
    response = await client.post(
        KEYS, json={"name": "k", "scopes": ["read"], "token": "medic_x_y"},
        headers=auth(admin_token),
    )
    assert "token" in (await problem_of(response, 422))["detail"]


async def test_unknown_key_is_a_404(client: TestClient, admin_token: str) -> None:
    for method in ("GET", "DELETE"):
        for ident in ("999", "deadbeef0000"):
            response = await client.request(method, f"{KEYS}/{ident}", headers=auth(admin_token))
            await problem_of(response, 404)


# -- scopes --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("scopes", "allowed", "refused"),
    [
        (["read"], [("GET", "/api/v1/services")],
         [("POST", "/api/v1/services"), ("POST", "/api/v1/heartbeats"), ("GET", KEYS)]),
        (["heartbeat"], [("POST", "/api/v1/heartbeats")],
         [("GET", "/api/v1/services"), ("POST", "/api/v1/services")]),
        (["write"], [("GET", "/api/v1/services"), ("POST", "/api/v1/services"),
                     ("POST", "/api/v1/heartbeats")],
         [("GET", KEYS), ("GET", AUDIT)]),
        (["admin"], [("GET", KEYS), ("POST", "/api/v1/services"), ("POST", "/api/v1/heartbeats")],
         []),
        (["read", "heartbeat"], [("GET", "/api/v1/services"), ("POST", "/api/v1/heartbeats")],
         [("POST", "/api/v1/services")]),
        (["agent"], [], [("GET", "/api/v1/services"), ("POST", "/api/v1/heartbeats")]),
    ],
)
async def test_new_key_works_within_its_scopes_only(
    client: TestClient,
    admin_token: str,
    scopes: list[str],
    allowed: list[tuple[str, str]],
    refused: list[tuple[str, str]],
) -> None:
    await client.post("/api/v1/services", json={**SERVICE, "slug": "existing"},
                      headers=auth(admin_token))
    token = (await new_key(client, admin_token, scopes))["token"]
    bodies = {"/api/v1/services": SERVICE, "/api/v1/heartbeats": {"service": "existing"}}
    for method, path in allowed:
        response = await client.request(method, path, json=bodies.get(path),
                                        headers=auth(token))
        assert response.status in (200, 201), (method, path, await response.text())
    for method, path in refused:
        response = await client.request(method, path, json=bodies.get(path),
                                        headers=auth(token))
        body = await problem_of(response, 403)
        assert "scope" in body["detail"]


async def test_keys_and_audit_are_admin_only(client: TestClient, admin_token: str) -> None:
    writer = (await new_key(client, admin_token, ["write"]))["token"]
    for method, path in (("GET", KEYS), ("POST", KEYS), ("GET", f"{KEYS}/1"),
                         ("DELETE", f"{KEYS}/1"), ("GET", AUDIT), ("GET", f"{AUDIT}/1")):
        await problem_of(await client.request(method, path, headers=auth(writer)), 403)
    # The writer could not revoke the admin key.
    assert (await client.get(KEYS, headers=auth(admin_token))).status == 200


# -- revocation, expiry, last use ---------------------------------------------------------------


async def test_revoked_key_is_refused_with_401(client: TestClient, admin_token: str) -> None:
    created = await new_key(client, admin_token, ["read"])
    token = created["token"]
    assert (await client.get("/api/v1/services", headers=auth(token))).status == 200
    response = await client.delete(f"{KEYS}/{created['key_id']}", headers=auth(admin_token))
    assert response.status == 200
    assert (await response.json())["revoked_at"] is not None

    refused = await client.get("/api/v1/services", headers=auth(token))
    await problem_of(refused, 401)
    assert refused.headers["WWW-Authenticate"].startswith("Bearer")
    # Gone from the default list, kept (for the audit trail) with include_revoked.
    active = await get_json(client, admin_token, KEYS)
    assert created["id"] not in [k["id"] for k in active["items"]]
    everything = await get_json(client, admin_token, f"{KEYS}?include_revoked=true")
    assert created["id"] in [k["id"] for k in everything["items"]]


async def test_revoking_by_an_all_digit_key_id_revokes_that_key(
    client: TestClient, medic: Medic, admin_token: str
) -> None:
    # Generated key ids are 12 hex digits: about 1 in 280 has no letter.
    digits = "000000000001"
    _, token = await medic.keys.create(
        name="digits", scopes=["read"], actor=Actor("test"), token=f"medic_{digits}_{'x' * 40}"
    )
    response = await client.delete(f"{KEYS}/{digits}", headers=auth(admin_token))
    assert response.status == 200
    assert (await response.json())["key_id"] == digits
    await problem_of(await client.get("/api/v1/services", headers=auth(token)), 401)
    assert (await client.get("/api/v1/services", headers=auth(admin_token))).status == 200


async def test_key_id_beyond_64_bits_is_a_404_not_a_500(
    client: TestClient, admin_token: str
) -> None:
    response = await client.get(f"{KEYS}/{10**20}", headers=auth(admin_token))
    await problem_of(response, 404)


async def test_revoking_twice_is_a_409(client: TestClient, admin_token: str) -> None:
    created = await new_key(client, admin_token, ["read"])
    assert (await client.delete(f"{KEYS}/{created['id']}", headers=auth(admin_token))).status \
        == 200
    response = await client.delete(f"{KEYS}/{created['id']}", headers=auth(admin_token))
    await problem_of(response, 409)


async def test_expired_key_is_refused_with_401(
    client: TestClient, admin_token: str, clock: FakeClock
) -> None:
    expires = clock.now() + timedelta(seconds=60)
    created = await new_key(client, admin_token, ["read"], expires_at=isoformat(expires))
    assert created["expires_at"] == isoformat(expires)
    clock.advance(59)
    assert (await client.get("/api/v1/services", headers=auth(created["token"]))).status == 200
    clock.advance(1)
    response = await client.get("/api/v1/services", headers=auth(created["token"]))
    assert "expired" in (await problem_of(response, 401))["detail"]


async def test_last_used_at_is_written_by_flush_at_most_once_a_minute(
    client: TestClient, medic: Medic, admin_token: str, clock: FakeClock
) -> None:
    created = await new_key(client, admin_token, ["read"])
    token = created["token"]
    path = f"{KEYS}/{created['id']}"
    first_use = clock.now()
    await client.get("/api/v1/services", headers=auth(token))
    assert (await get_json(client, admin_token, path))["last_used_at"] is None  # not yet flushed
    assert await medic.keys.flush_last_used() >= 1
    assert (await get_json(client, admin_token, path))["last_used_at"] == isoformat(first_use)

    clock.advance(30)
    await client.get("/api/v1/services", headers=auth(token))
    await medic.keys.flush_last_used()
    assert (await get_json(client, admin_token, path))["last_used_at"] == isoformat(first_use)

    clock.advance(30)  # a minute after the last write
    await client.get("/api/v1/services", headers=auth(token))
    await medic.keys.flush_last_used()
    assert (await get_json(client, admin_token, path))["last_used_at"] == isoformat(clock.now())


async def test_refused_calls_with_a_revoked_or_expired_key_do_not_count_as_use(
    client: TestClient, medic: Medic, admin_token: str, clock: FakeClock
) -> None:
    revoked = await new_key(client, admin_token, ["read"])
    expiring = await new_key(client, admin_token, ["read"],
                             expires_at=isoformat(clock.now() + timedelta(seconds=10)))
    await client.delete(f"{KEYS}/{revoked['id']}", headers=auth(admin_token))
    clock.advance(10)
    for token in (revoked["token"], expiring["token"]):
        await problem_of(await client.get("/api/v1/services", headers=auth(token)), 401)
    await medic.keys.flush_last_used()
    for key in (revoked, expiring):
        assert (await get_json(client, admin_token, f"{KEYS}/{key['id']}"))["last_used_at"] \
            is None


# -- audit ---------------------------------------------------------------------------------------


async def _audit_story(
    client: TestClient, admin_token: str, clock: FakeClock
) -> tuple[str, dict[str, str]]:
    """T0: admin creates a write key, a team and a service; T0+100: the writer renames it."""
    writer = (await new_key(client, admin_token, ["write"]))["token"]
    await client.post("/api/v1/teams", json={"slug": "sre"}, headers=auth(admin_token))
    await client.post("/api/v1/services", json=SERVICE, headers=auth(admin_token))
    clock.advance(100)
    response = await client.patch(
        "/api/v1/services/svc", json={"name": "Renamed"},
        headers={**auth(writer), "X-Request-Id": "req-rename-1"},
    )
    assert response.status == 200
    return writer, {"t0": isoformat(clock.now() - timedelta(seconds=100)) or "",
                    "t1": isoformat(clock.now()) or ""}


async def actions(client: TestClient, token: str, query: str) -> list[str]:
    body = await get_json(client, token, f"{AUDIT}{query}")
    return [e["action"] for e in body["items"]]


async def test_audit_list_is_newest_first_and_filters_by_action_and_resource(
    client: TestClient, admin_token: str, clock: FakeClock
) -> None:
    await _audit_story(client, admin_token, clock)
    assert await actions(client, admin_token, "") == [
        "service.update", "service.create", "team.create", "apikey.create", "apikey.create",
    ]
    assert await actions(client, admin_token, "?action=service.update") == ["service.update"]
    assert await actions(client, admin_token, "?resource_type=team") == ["team.create"]
    assert await actions(client, admin_token, "?resource_type=service&action=service.create") \
        == ["service.create"]
    assert await actions(client, admin_token, "?action=nothing.happened") == []


async def test_audit_list_filters_by_actor(
    client: TestClient, admin_token: str, clock: FakeClock
) -> None:
    writer, _ = await _audit_story(client, admin_token, clock)
    assert await actions(client, admin_token, f"?actor={key_actor(writer)}") == ["service.update"]
    assert await actions(client, admin_token, f"?actor={key_actor(admin_token)}") == [
        "service.create", "team.create", "apikey.create"
    ]
    assert await actions(client, admin_token, "?actor=system") == ["apikey.create"]  # bootstrap


async def test_audit_list_filters_by_time_range(
    client: TestClient, admin_token: str, clock: FakeClock
) -> None:
    _, at = await _audit_story(client, admin_token, clock)
    assert await actions(client, admin_token, f"?since={at['t1']}") == ["service.update"]
    assert await actions(client, admin_token, f"?until={at['t1']}") == [
        "service.create", "team.create", "apikey.create", "apikey.create"
    ]  # until is exclusive
    middle = isoformat(clock.now() - timedelta(seconds=50))
    assert await actions(client, admin_token, f"?since={at['t0']}&until={middle}") == [
        "service.create", "team.create", "apikey.create", "apikey.create"
    ]
    assert await actions(client, admin_token, f"?since={middle}&until={at['t1']}") == []


async def test_audit_list_pages_and_omits_documents(
    client: TestClient, admin_token: str, clock: FakeClock
) -> None:
    await _audit_story(client, admin_token, clock)
    first = await get_json(client, admin_token, f"{AUDIT}?limit=3")
    second = await get_json(client, admin_token, f"{AUDIT}?limit=3&cursor={first['next_cursor']}")
    ids = [e["id"] for e in first["items"] + second["items"]]
    assert ids == sorted(ids, reverse=True) and len(set(ids)) == 5
    assert second["next_cursor"] is None
    assert all("before" not in e and "after" not in e for e in first["items"])


async def test_audit_entry_has_before_after_and_request_id(
    client: TestClient, admin_token: str, clock: FakeClock
) -> None:
    writer, at = await _audit_story(client, admin_token, clock)
    [listed] = (await get_json(client, admin_token, f"{AUDIT}?action=service.update"))["items"]
    entry = await get_json(client, admin_token, f"{AUDIT}/{listed['id']}")
    assert (entry["actor"], entry["at"], entry["request_id"]) == (
        key_actor(writer), at["t1"], "req-rename-1"
    )
    assert (entry["resource_type"], entry["before"]["slug"]) == ("service", "svc")
    assert entry["resource_id"] == str(entry["before"]["id"])
    assert (entry["before"]["name"], entry["after"]["name"]) == ("svc", "Renamed")
    [created] = (await get_json(client, admin_token, f"{AUDIT}?action=service.create"))["items"]
    creation = await get_json(client, admin_token, f"{AUDIT}/{created['id']}")
    assert creation["before"] is None and creation["after"]["slug"] == "svc"
    assert creation["request_id"]  # generated when the client sends none


async def test_audit_rejects_bad_input_and_unknown_entries(
    client: TestClient, admin_token: str
) -> None:
    response = await client.get(f"{AUDIT}?since=last-tuesday", headers=auth(admin_token))
    assert (await problem_of(response, 422))["field"] == "since"
    response = await client.get(f"{AUDIT}?until=2026-03-01T00:00:00", headers=auth(admin_token))
    assert (await problem_of(response, 422))["field"] == "until"
    await problem_of(await client.get(f"{AUDIT}/99999", headers=auth(admin_token)), 404)
    response = await client.get(f"{AUDIT}/latest", headers=auth(admin_token))
    assert (await problem_of(response, 422))["field"] == "id"
    response = await client.get(f"{AUDIT}/{2**63}", headers=auth(admin_token))
    assert (await problem_of(response, 422))["field"] == "id"


async def test_key_lifecycle_is_audited(client: TestClient, admin_token: str) -> None:
    created = await new_key(client, admin_token, ["read"])
    await client.delete(f"{KEYS}/{created['id']}", headers=auth(admin_token))
    body = await get_json(client, admin_token,
                          f"{AUDIT}?resource_type=apikey&resource_id={created['id']}")
    assert [e["action"] for e in body["items"]] == ["apikey.revoke", "apikey.create"]
    revoke = await get_json(client, admin_token, f"{AUDIT}/{body['items'][0]['id']}")
    assert revoke["before"]["revoked_at"] is None and revoke["after"]["revoked_at"] is not None


# -- bootstrap -----------------------------------------------------------------------------------

SUPPLIED = "medic_ops0admin01_" + "s" * 40


@asynccontextmanager
async def running(medic: Medic) -> AsyncIterator[TestClient]:
    await medic.start(monitor=False)
    try:
        async with TestClient(TestServer(build_app(medic))) as client:
            yield client
    finally:
        await medic.stop()


async def test_supplied_admin_key_is_used_and_not_returned(
    db_url: str, tmp_path: Path, clock: FakeClock
) -> None:
    medic = Medic(make_settings(db_url, tmp_path, admin_key=SUPPLIED), clock=clock)
    async with running(medic) as client:
        assert await medic.ensure_admin_key() is None
        keys = await get_json(client, SUPPLIED, KEYS)
        assert [(k["key_id"], k["scopes"]) for k in keys["items"]] == [("ops0admin01", ["admin"])]
        assert await medic.ensure_admin_key() is None
        assert len((await get_json(client, SUPPLIED, KEYS))["items"]) == 1


async def test_generated_admin_key_is_returned_once_and_works(
    client: TestClient, medic: Medic
) -> None:
    token = await medic.ensure_admin_key()
    assert token is not None and token.startswith("medic_")
    keys = await get_json(client, token, KEYS)
    assert [k["scopes"] for k in keys["items"]] == [["admin"]]
    assert await medic.ensure_admin_key() is None
    assert len((await get_json(client, token, KEYS))["items"]) == 1


async def test_supplied_admin_key_is_ignored_once_keys_exist(
    db_url: str, tmp_path: Path, clock: FakeClock
) -> None:
    first = Medic(make_settings(db_url, tmp_path), clock=clock)
    async with running(first):
        generated = await first.ensure_admin_key()
    assert generated is not None
    later = Medic(make_settings(db_url, tmp_path, admin_key=SUPPLIED), clock=clock)
    async with running(later) as client:
        assert await later.ensure_admin_key() is None
        await problem_of(await client.get(KEYS, headers=auth(SUPPLIED)), 401)
        assert (await client.get(KEYS, headers=auth(generated))).status == 200



async def test_concurrent_requests_share_one_key_lookup_and_revocation_still_wins(
    medic: Medic, clock: FakeClock
) -> None:
    import asyncio

    from sqlalchemy import event

    from medic_core.auth import ApiKeys
    from medic_core.errors import Unauthorized

    keys = ApiKeys(medic.db, clock, cache_ttl=60.0)
    _, token = await keys.create(name="busy", scopes=["heartbeat"], actor=Actor("test"))
    lookups: list[str] = []

    def count(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if "FROM api_keys" in statement:
            lookups.append(statement)

    event.listen(medic.db.engine.sync_engine, "before_cursor_execute", count)
    try:
        principals = await asyncio.gather(*(keys.authenticate(token) for _ in range(50)))
        assert {p.name for p in principals} == {"busy"}
        assert len(lookups) == 1  # single flight: one query for fifty concurrent requests
        await keys.revoke(principals[0].id, actor=Actor("test"))
        with pytest.raises(Unauthorized):
            await keys.authenticate(token)  # the cached entry went with the revocation
    finally:
        event.remove(medic.db.engine.sync_engine, "before_cursor_execute", count)
