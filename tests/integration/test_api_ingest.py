"""REST API v1, heartbeat ingest: JSON, batch, the curl-friendly ping form, history, back-pressure.

A 2xx from an ingest route promises the heartbeat is committed; these tests read it back through
the API (and, where the promise itself is the point, straight from the database).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy import func, select

from conftest import auth, make_settings
from medic_core.app import Medic
from medic_core.audit import Actor
from medic_core.clock import FakeClock, isoformat
from medic_core.heartbeats import HeartbeatIn
from medic_core.server.http.app import build_app
from medic_core.store.models import Heartbeat

PROBLEM = "application/problem+json"
HEARTBEATS = "/api/v1/heartbeats"
BATCH = "/api/v1/heartbeats:batch"
ME = Actor("test")


async def add_service(medic: Medic, slug: str = "backup", **extra: Any) -> None:
    data = {"slug": slug, "expectation": {"kind": "interval", "period": 60}, **extra}
    await medic.services.create(data, actor=ME)


@pytest.fixture
async def beat_token(medic: Medic, admin_token: str) -> str:
    """A key that may only send heartbeats (what a cron host holds).

    Created after the bootstrap admin key, which is only made while no key exists."""
    _, token = await medic.keys.create(name="cron host", scopes=["heartbeat"], actor=ME)
    return token


async def problem_of(response: Any, status: int) -> dict[str, Any]:
    assert response.status == status, await response.text()
    assert response.content_type == PROBLEM
    body = await response.json()
    assert body["status"] == status
    assert body["title"] and body["detail"]
    return body


async def history(client: TestClient, token: str, slug: str = "backup") -> list[dict[str, Any]]:
    response = await client.get(f"/api/v1/services/{slug}/heartbeats", headers=auth(token))
    assert response.status == 200, await response.text()
    return (await response.json())["items"]


async def runs(client: TestClient, token: str, slug: str = "backup") -> list[dict[str, Any]]:
    response = await client.get(f"/api/v1/services/{slug}/runs", headers=auth(token))
    assert response.status == 200, await response.text()
    return (await response.json())["items"]


async def alerts(client: TestClient, token: str, slug: str = "backup") -> list[dict[str, Any]]:
    response = await client.get(f"/api/v1/alerts?service={slug}", headers=auth(token))
    assert response.status == 200, await response.text()
    return (await response.json())["items"]


async def stored_count(medic: Medic) -> int:
    async with medic.db.sessions() as session:
        return int(await session.scalar(select(func.count()).select_from(Heartbeat)) or 0)


# -- POST /api/v1/heartbeats ---------------------------------------------------------------------


async def test_heartbeat_answers_201_once_committed(
    client: TestClient, medic: Medic, beat_token: str, admin_token: str, clock: FakeClock
) -> None:
    await add_service(medic)
    response = await client.post(
        HEARTBEATS, json={"service": "backup", "message": "nightly done"}, headers=auth(beat_token)
    )
    assert response.status == 201, await response.text()
    body = await response.json()
    assert body == {
        "id": body["id"],
        "service": "backup",
        "status": "ok",
        "received_at": isoformat(clock.now()),
        "service_state": "up",
        "message_truncated": False,
    }
    assert isinstance(body["id"], int)
    assert await stored_count(medic) == 1  # on disk before the answer
    [stored] = await history(client, admin_token)
    assert stored["id"] == body["id"]
    assert stored["message"] == "nightly done"
    assert stored["source"] == "127.0.0.1"
    service = await medic.services.get("backup")
    assert (service["state"], service["last_heartbeat_at"]) == ("up", isoformat(clock.now()))


async def test_exit_code_alone_stands_for_success_or_fail(
    client: TestClient, medic: Medic, beat_token: str
) -> None:
    await add_service(medic)
    ok = await client.post(HEARTBEATS, json={"service": "backup", "exit_code": 0},
                           headers=auth(beat_token))
    bad = await client.post(HEARTBEATS, json={"service": "backup", "exit_code": 2},
                            headers=auth(beat_token))
    assert (await ok.json())["status"] == "success"
    body = await bad.json()
    assert (body["status"], body["service_state"]) == ("fail", "down")


async def test_heartbeat_for_unknown_service_is_a_404_problem(
    client: TestClient, medic: Medic, beat_token: str
) -> None:
    response = await client.post(HEARTBEATS, json={"service": "ghost"}, headers=auth(beat_token))
    body = await problem_of(response, 404)
    assert "ghost" in body["detail"]
    assert await stored_count(medic) == 0


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"service": "backup", "status": "great"}, "status"),
        ({"service": "backup", "status": 1}, "status"),
        ({"service": "Not A Slug"}, "service"),
        ({}, "service"),
        ({"service": "backup", "exit_code": "1"}, "exit_code"),
        ({"service": "backup", "exit_code": 2**31}, "exit_code"),
        ({"service": "backup", "exit_code": True}, "exit_code"),
        ({"service": "backup", "run_id": ""}, "run_id"),
        ({"service": "backup", "run_id": "r" * 201}, "run_id"),
        ({"service": "backup", "message": ["not", "text"]}, "message"),
    ],
)
async def test_invalid_heartbeat_is_a_422_naming_the_field(
    client: TestClient, medic: Medic, beat_token: str, body: dict[str, Any], field: str
) -> None:
    await add_service(medic)
    response = await client.post(HEARTBEATS, json=body, headers=auth(beat_token))
    assert (await problem_of(response, 422))["field"] == field
    assert await stored_count(medic) == 0


async def test_heartbeat_with_unknown_field_is_a_422(
    client: TestClient, medic: Medic, beat_token: str
) -> None:
    await add_service(medic)
    response = await client.post(
        HEARTBEATS, json={"service": "backup", "host": "web-1"}, headers=auth(beat_token)
    )
    assert "host" in (await problem_of(response, 422))["detail"]
    assert await stored_count(medic) == 0


@pytest.mark.parametrize(
    ("data", "content_type"),
    [
        (b'{"service": "backup"', "application/json"),  # truncated JSON
        (b"service=backup", "application/json"),
        (b"", "application/json"),
        (b'["backup"]', "application/json"),  # JSON, but not an object
        (b'{"service": "backup"}', "text/plain"),
        (b"service=backup", "application/x-www-form-urlencoded"),
    ],
)
async def test_unreadable_heartbeat_body_is_a_400_problem(
    client: TestClient, medic: Medic, beat_token: str, data: bytes, content_type: str
) -> None:
    await add_service(medic)
    response = await client.post(
        HEARTBEATS, data=data, headers={**auth(beat_token), "Content-Type": content_type}
    )
    await problem_of(response, 400)
    assert await stored_count(medic) == 0


async def test_long_message_is_cut_to_4000_characters_and_flagged(
    client: TestClient, medic: Medic, beat_token: str, admin_token: str
) -> None:
    await add_service(medic)
    message = "x" * 3999 + "yz"
    response = await client.post(
        HEARTBEATS, json={"service": "backup", "message": message}, headers=auth(beat_token)
    )
    assert (await response.json())["message_truncated"] is True
    [stored] = await history(client, admin_token)
    assert stored["message"] == message[:4000]
    assert stored["message_truncated"] is True


async def test_message_of_exactly_4000_characters_is_not_flagged(
    client: TestClient, medic: Medic, beat_token: str, admin_token: str
) -> None:
    await add_service(medic)
    message = "é" * 4000
    response = await client.post(
        HEARTBEATS, json={"service": "backup", "message": message}, headers=auth(beat_token)
    )
    assert (await response.json())["message_truncated"] is False
    assert (await history(client, admin_token))[0]["message"] == message


# -- POST /api/v1/heartbeats:batch --------------------------------------------------------------


async def test_batch_answers_per_item_for_mixed_valid_invalid_and_unknown(
    client: TestClient, medic: Medic, beat_token: str, admin_token: str
) -> None:
    await add_service(medic, "backup")
    await add_service(medic, "etl")
    items = [
        {"service": "backup"},
        {"service": "backup", "status": "sideways"},
        {"service": "ghost"},
        {"service": "etl", "status": "start", "run_id": "r1"},
        "not an object",
        {"service": "backup", "status": "fail", "exit_code": 3},
    ]
    response = await client.post(BATCH, json={"heartbeats": items}, headers=auth(beat_token))
    assert response.status == 200, await response.text()
    body = await response.json()
    assert (body["accepted"], body["rejected"]) == (3, 3)
    results = body["results"]
    assert [r["index"] for r in results] == list(range(6))
    assert [r["ok"] for r in results] == [True, False, False, True, False, True]
    assert results[0]["heartbeat"]["service"] == "backup"
    assert results[3]["heartbeat"]["status"] == "start"
    assert results[5]["heartbeat"]["status"] == "fail"
    assert results[1]["error"] == {
        "status": 422,
        "title": "Invalid input",
        "detail": results[1]["error"]["detail"],
        "field": "heartbeats[1].status",
    }
    assert results[2]["error"]["status"] == 404
    assert "ghost" in results[2]["error"]["detail"]
    assert results[4]["error"]["status"] == 422
    assert await stored_count(medic) == 3
    assert [h["status"] for h in await history(client, admin_token, "backup")] == ["fail", "ok"]
    assert [r["status"] for r in await runs(client, admin_token, "etl")] == ["running"]


async def test_batch_of_1000_is_accepted(
    client: TestClient, medic: Medic, beat_token: str
) -> None:
    await add_service(medic)
    response = await client.post(
        BATCH, json={"heartbeats": [{"service": "backup"}] * 1000}, headers=auth(beat_token)
    )
    assert response.status == 200
    assert (await response.json())["accepted"] == 1000
    assert await stored_count(medic) == 1000


async def test_batch_over_1000_items_is_a_422_and_stores_nothing(
    client: TestClient, medic: Medic, beat_token: str
) -> None:
    await add_service(medic)
    response = await client.post(
        BATCH, json={"heartbeats": [{"service": "backup"}] * 1001}, headers=auth(beat_token)
    )
    body = await problem_of(response, 422)
    assert body["field"] == "heartbeats"
    assert "1001" in body["detail"]
    assert await stored_count(medic) == 0


@pytest.mark.parametrize(
    "payload", [{"heartbeats": []}, {"heartbeats": {"service": "backup"}}, {}]
)
async def test_batch_without_a_list_of_heartbeats_is_a_422(
    client: TestClient, medic: Medic, beat_token: str, payload: object
) -> None:
    response = await client.post(BATCH, json=payload, headers=auth(beat_token))
    assert (await problem_of(response, 422))["field"] == "heartbeats"


async def test_batch_with_malformed_json_or_wrong_type_is_a_400(
    client: TestClient, medic: Medic, beat_token: str
) -> None:
    broken = await client.post(
        BATCH, data=b'{"heartbeats": [', headers={**auth(beat_token),
                                                   "Content-Type": "application/json"}
    )
    await problem_of(broken, 400)
    wrong_type = await client.post(
        BATCH, data=b'{"heartbeats": []}', headers={**auth(beat_token),
                                                     "Content-Type": "text/plain"}
    )
    await problem_of(wrong_type, 400)
    # Not an object, as on POST /api/v1/heartbeats: the body cannot be read as a batch.
    a_list = await client.post(BATCH, json=[{"x": 1}], headers=auth(beat_token))
    assert "JSON object" in (await problem_of(a_list, 400))["detail"]


# -- the ping form -------------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["GET", "POST"])
async def test_ping_answers_ok_and_records_a_heartbeat(
    client: TestClient, medic: Medic, beat_token: str, admin_token: str, method: str
) -> None:
    await add_service(medic)
    response = await client.request(method, "/api/v1/ping/backup", headers=auth(beat_token))
    assert response.status == 200
    assert response.content_type == "text/plain"
    assert await response.text() == "OK\n"
    [stored] = await history(client, admin_token)
    assert (stored["status"], stored["message"]) == ("ok", None)
    assert (await medic.services.get("backup"))["state"] == "up"


async def test_ping_with_x_api_key_header(
    client: TestClient, medic: Medic, beat_token: str
) -> None:
    await add_service(medic)
    response = await client.get("/api/v1/ping/backup", headers={"X-Api-Key": beat_token})
    assert response.status == 200
    assert await stored_count(medic) == 1


async def test_ping_start_then_success_records_a_run_with_its_duration(
    client: TestClient, medic: Medic, beat_token: str, admin_token: str, clock: FakeClock
) -> None:
    await add_service(medic)
    started = clock.now()
    assert (await client.get("/api/v1/ping/backup/start", headers=auth(beat_token))).status == 200
    [running] = await runs(client, admin_token)
    assert (running["status"], running["started_at"]) == ("running", isoformat(started))
    clock.advance(95)
    assert (await client.get("/api/v1/ping/backup/success",
                             headers=auth(beat_token))).status == 200
    [run] = await runs(client, admin_token)
    assert run["id"] == running["id"]
    assert (run["status"], run["duration"], run["finished_at"]) == (
        "succeeded", 95, isoformat(clock.now())
    )
    assert [h["status"] for h in await history(client, admin_token)] == ["success", "start"]


async def test_ping_run_id_ties_start_to_its_own_end(
    client: TestClient, medic: Medic, beat_token: str, admin_token: str, clock: FakeClock
) -> None:
    await add_service(medic)
    await client.get("/api/v1/ping/backup/start?run_id=a", headers=auth(beat_token))
    clock.advance(10)
    await client.get("/api/v1/ping/backup/start?run_id=b", headers=auth(beat_token))
    clock.advance(10)
    await client.get("/api/v1/ping/backup/success?run_id=a", headers=auth(beat_token))
    by_id = {r["run_id"]: r for r in await runs(client, admin_token)}
    assert (by_id["a"]["status"], by_id["a"]["duration"]) == ("succeeded", 20)
    assert by_id["b"]["status"] == "running"


async def test_ping_fail_closes_the_run_and_opens_a_failed_alert(
    client: TestClient, medic: Medic, beat_token: str, admin_token: str
) -> None:
    await add_service(medic)
    await client.get("/api/v1/ping/backup/start", headers=auth(beat_token))
    response = await client.get("/api/v1/ping/backup/fail", headers=auth(beat_token))
    assert (response.status, await response.text()) == (200, "OK\n")
    [run] = await runs(client, admin_token)
    assert run["status"] == "failed"
    assert [(a["cause"], a["state"]) for a in await alerts(client, admin_token)] == [
        ("failed", "open")
    ]


async def test_ping_exit_code_zero_is_success(
    client: TestClient, medic: Medic, beat_token: str, admin_token: str
) -> None:
    await add_service(medic)
    response = await client.post("/api/v1/ping/backup/0", headers=auth(beat_token))
    assert (response.status, await response.text()) == (200, "OK\n")
    [run] = await runs(client, admin_token)
    assert (run["status"], run["exit_code"]) == ("succeeded", 0)
    assert await alerts(client, admin_token) == []


@pytest.mark.parametrize("code", [1, 3, 137, -1])
async def test_ping_non_zero_exit_code_opens_a_failed_alert(
    client: TestClient, medic: Medic, beat_token: str, admin_token: str, code: int
) -> None:
    await add_service(medic)
    response = await client.get(f"/api/v1/ping/backup/{code}", headers=auth(beat_token))
    assert (response.status, await response.text()) == (200, "OK\n")
    [alert] = await alerts(client, admin_token)
    assert (alert["cause"], alert["state"], alert["details"]["exit_code"]) == (
        "failed", "open", code
    )
    [stored] = await history(client, admin_token)
    assert (stored["status"], stored["exit_code"]) == ("fail", code)
    assert (await medic.services.get("backup"))["state"] == "down"


async def test_ping_success_after_fail_resolves_the_failed_alert(
    client: TestClient, medic: Medic, beat_token: str, admin_token: str
) -> None:
    await add_service(medic)
    await client.get("/api/v1/ping/backup/1", headers=auth(beat_token))
    await client.get("/api/v1/ping/backup/0", headers=auth(beat_token))
    [alert] = await alerts(client, admin_token)
    assert alert["state"] == "resolved"


@pytest.mark.parametrize("signal", ["abc", "finish", "1.5", "0x1"])
async def test_ping_with_unknown_signal_is_a_400(
    client: TestClient, medic: Medic, beat_token: str, signal: str
) -> None:
    await add_service(medic)
    response = await client.get(f"/api/v1/ping/backup/{signal}", headers=auth(beat_token))
    body = await problem_of(response, 400)
    assert signal in body["detail"]
    assert await stored_count(medic) == 0


async def test_ping_with_exit_code_beyond_32_bits_is_a_422(
    client: TestClient, medic: Medic, beat_token: str
) -> None:
    await add_service(medic)
    response = await client.get(f"/api/v1/ping/backup/{2**31}", headers=auth(beat_token))
    assert (await problem_of(response, 422))["field"] == "signal"


async def test_ping_unknown_service_is_a_404_problem_not_ok(
    client: TestClient, medic: Medic, beat_token: str
) -> None:
    for path in ("/api/v1/ping/ghost", "/api/v1/ping/ghost/start", "/api/v1/ping/ghost/0"):
        response = await client.get(path, headers=auth(beat_token))
        assert "ghost" in (await problem_of(response, 404))["detail"]


async def test_ping_invalid_slug_or_run_id_is_a_422(
    client: TestClient, medic: Medic, beat_token: str
) -> None:
    await add_service(medic)
    response = await client.get("/api/v1/ping/Not_A_Slug", headers=auth(beat_token))
    assert (await problem_of(response, 422))["field"] == "slug"
    response = await client.get(f"/api/v1/ping/backup?run_id={'r' * 201}",
                                headers=auth(beat_token))
    assert (await problem_of(response, 422))["field"] == "run_id"
    assert await stored_count(medic) == 0


async def test_ping_post_body_becomes_the_message(
    client: TestClient, medic: Medic, beat_token: str, admin_token: str
) -> None:
    await add_service(medic)
    log_tail = "rsync: 1532 files\nexit 0\n"
    response = await client.post(
        "/api/v1/ping/backup/success", data=log_tail.encode(),
        headers={**auth(beat_token), "Content-Type": "text/plain"},
    )
    assert response.status == 200
    [stored] = await history(client, admin_token)
    assert (stored["message"], stored["message_truncated"]) == (log_tail, False)


async def test_ping_post_body_over_4000_characters_is_truncated_and_flagged(
    client: TestClient, medic: Medic, beat_token: str, admin_token: str
) -> None:
    await add_service(medic)
    body = ("0123456789" * 450).encode()  # 4500 characters
    response = await client.post("/api/v1/ping/backup", data=body, headers=auth(beat_token))
    assert response.status == 200
    [stored] = await history(client, admin_token)
    assert stored["message"] == body.decode()[:4000]
    assert stored["message_truncated"] is True


async def test_ping_post_body_sent_in_pieces_is_read_whole(
    client: TestClient, medic: Medic, beat_token: str, admin_token: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    await add_service(medic)
    submitted = asyncio.Event()
    submit = medic.writer.submit

    async def spy(hb: HeartbeatIn) -> Any:
        submitted.set()
        return await submit(hb)

    monkeypatch.setattr(medic.writer, "submit", spy)

    async def body() -> AsyncIterator[bytes]:
        yield b"first piece;"
        # Hold the rest back until the server stores the heartbeat (it read too little) or a
        # short while passes (it is waiting for the rest, as it should). A slow server can only
        # make this pass wrongly, never fail wrongly.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(submitted.wait(), timeout=0.3)
        yield b"second piece"

    response = await client.post("/api/v1/ping/backup", data=body(), headers=auth(beat_token))
    assert response.status == 200
    [stored] = await history(client, admin_token)
    assert (stored["message"], stored["message_truncated"]) == (
        "first piece;second piece", False
    )


async def test_ping_post_body_with_nul_or_invalid_utf8_is_stored_with_replacements(
    client: TestClient, medic: Medic, beat_token: str, admin_token: str
) -> None:
    await add_service(medic)
    response = await client.post("/api/v1/ping/backup/1", data=b"core\x00dump \xff!",
                                 headers=auth(beat_token))
    assert (response.status, await response.text()) == (200, "OK\n")
    [stored] = await history(client, admin_token)
    assert stored["message"] == "core\ufffddump \ufffd!"


async def test_nul_character_in_a_json_heartbeat_is_a_422_not_a_500(
    client: TestClient, medic: Medic, beat_token: str
) -> None:
    await add_service(medic)
    response = await client.post(
        HEARTBEATS, json={"service": "backup", "message": "a\x00b"}, headers=auth(beat_token)
    )
    assert (await problem_of(response, 422))["field"] == "message"
    assert await stored_count(medic) == 0


async def test_nul_character_in_one_batch_item_rejects_only_that_item(
    client: TestClient, medic: Medic, beat_token: str
) -> None:
    await add_service(medic)
    items = [{"service": "backup"}, {"service": "backup", "run_id": "r\x00", "status": "start"},
             {"service": "backup", "message": "fine"}]
    response = await client.post(BATCH, json={"heartbeats": items}, headers=auth(beat_token))
    assert response.status == 200
    results = (await response.json())["results"]
    assert [r["ok"] for r in results] == [True, False, True]
    assert results[1]["error"]["field"] == "heartbeats[1].run_id"
    assert await stored_count(medic) == 2


# -- history ------------------------------------------------------------------------------------


async def test_heartbeat_history_pages_newest_first_each_once(
    client: TestClient, medic: Medic, beat_token: str, admin_token: str, clock: FakeClock
) -> None:
    await add_service(medic)
    sent = []
    for i in range(5):
        response = await client.post(
            HEARTBEATS, json={"service": "backup", "message": f"m{i}"}, headers=auth(beat_token)
        )
        sent.append((await response.json())["id"])
        clock.advance(1)
    seen: list[int] = []
    sizes: list[int] = []
    cursor = None
    for _ in range(10):
        query = "?limit=2" + (f"&cursor={cursor}" if cursor else "")
        response = await client.get(f"/api/v1/services/backup/heartbeats{query}",
                                    headers=auth(admin_token))
        page = await response.json()
        sizes.append(len(page["items"]))
        seen += [h["id"] for h in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert sizes == [2, 2, 1]
    assert seen == list(reversed(sent))


async def test_heartbeat_history_filters_by_status(
    client: TestClient, medic: Medic, beat_token: str, admin_token: str
) -> None:
    await add_service(medic)
    for signal in ("start", "success", "start", "fail"):
        await client.get(f"/api/v1/ping/backup/{signal}", headers=auth(beat_token))
    response = await client.get("/api/v1/services/backup/heartbeats?status=start",
                                headers=auth(admin_token))
    assert [h["status"] for h in (await response.json())["items"]] == ["start", "start"]
    bad = await client.get("/api/v1/services/backup/heartbeats?status=meh",
                           headers=auth(admin_token))
    assert (await problem_of(bad, 422))["field"] == "status"


async def test_run_history_pages_newest_first_and_filters_by_status(
    client: TestClient, medic: Medic, beat_token: str, admin_token: str, clock: FakeClock
) -> None:
    await add_service(medic)
    for i in range(3):
        await client.get(f"/api/v1/ping/backup/start?run_id=r{i}", headers=auth(beat_token))
        clock.advance(5)
        end = "success" if i != 1 else "fail"
        await client.get(f"/api/v1/ping/backup/{end}?run_id=r{i}", headers=auth(beat_token))
    await client.get("/api/v1/ping/backup/start?run_id=r3", headers=auth(beat_token))

    first = await (await client.get("/api/v1/services/backup/runs?limit=3",
                                    headers=auth(admin_token))).json()
    second = await (await client.get(
        f"/api/v1/services/backup/runs?limit=3&cursor={first['next_cursor']}",
        headers=auth(admin_token))).json()
    assert [r["run_id"] for r in first["items"]] == ["r3", "r2", "r1"]
    assert [r["run_id"] for r in second["items"]] == ["r0"]
    assert second["next_cursor"] is None

    failed = await (await client.get("/api/v1/services/backup/runs?status=failed",
                                     headers=auth(admin_token))).json()
    assert [r["run_id"] for r in failed["items"]] == ["r1"]
    bad = await client.get("/api/v1/services/backup/runs?status=done", headers=auth(admin_token))
    assert (await problem_of(bad, 422))["field"] == "status"


@pytest.mark.parametrize("what", ["heartbeats", "runs"])
async def test_history_of_unknown_service_is_a_404(
    client: TestClient, admin_token: str, what: str
) -> None:
    response = await client.get(f"/api/v1/services/ghost/{what}", headers=auth(admin_token))
    await problem_of(response, 404)


async def test_history_with_bad_cursor_is_a_422(
    client: TestClient, medic: Medic, admin_token: str
) -> None:
    await add_service(medic)
    response = await client.get("/api/v1/services/backup/heartbeats?cursor=garbage",
                                headers=auth(admin_token))
    assert (await problem_of(response, 422))["field"] == "cursor"


# -- back-pressure -------------------------------------------------------------------------------


@asynccontextmanager
async def stalled_medic(
    db_url: str, tmp_path: Path, clock: FakeClock
) -> AsyncIterator[tuple[Medic, TestClient, str, asyncio.Task[Any]]]:
    """A Medic whose one-slot writer queue is full: its writer task is stopped and one
    heartbeat waits in the queue. On exit the writer restarts and drains that heartbeat."""
    medic = Medic(make_settings(db_url, tmp_path, writer_queue=1), clock=clock)
    await medic.start(monitor=False)
    _, token = await medic.keys.create(name="cron", scopes=["heartbeat", "read"], actor=ME)
    await add_service(medic)
    writer_task = medic.writer._task
    assert writer_task is not None
    writer_task.cancel()  # nothing consumes the queue any more
    await asyncio.gather(writer_task, return_exceptions=True)
    waiting = asyncio.create_task(medic.writer.submit(HeartbeatIn("backup", message="queued")))
    await asyncio.sleep(0)  # submit() enqueues synchronously, then waits for its commit
    assert not waiting.done()
    try:
        async with TestClient(TestServer(build_app(medic))) as client:
            yield medic, client, token, waiting
    finally:
        if medic.writer._task is None or medic.writer._task.done():
            await medic.writer.start()  # drain the queued heartbeat, so stop() does not wait
        await asyncio.wait_for(waiting, timeout=10)
        await medic.stop()


async def test_full_writer_queue_answers_503_with_retry_after(
    db_url: str, tmp_path: Path, clock: FakeClock
) -> None:
    async with stalled_medic(db_url, tmp_path, clock) as (medic, client, token, waiting):
        requests = [
            client.post(HEARTBEATS, json={"service": "backup"}, headers=auth(token)),
            client.get("/api/v1/ping/backup", headers=auth(token)),
            client.post(BATCH, json={"heartbeats": [{"service": "backup"}]},
                        headers=auth(token)),
        ]
        for request in requests:
            response = await request
            body = await problem_of(response, 503)
            assert response.headers["Retry-After"] == "1"
            assert "writer queue full" in body["detail"]
            assert "NOT stored" in body["detail"]
        assert await stored_count(medic) == 0
    # The writer restarted on exit: the queued heartbeat is stored, the refused ones are not.
    stored = await waiting
    assert stored.service == "backup"


async def test_ingest_resumes_when_the_writer_queue_drains(
    db_url: str, tmp_path: Path, clock: FakeClock
) -> None:
    async with stalled_medic(db_url, tmp_path, clock) as (medic, client, token, waiting):
        refused = await client.post(HEARTBEATS, json={"service": "backup"}, headers=auth(token))
        assert refused.status == 503
        await medic.writer.start()
        await waiting
        accepted = await client.post(HEARTBEATS, json={"service": "backup"},
                                     headers=auth(token))
        assert accepted.status == 201
        messages = [h["message"] for h in await history(client, token)]
        assert messages == [None, "queued"]
