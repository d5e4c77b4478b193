"""REST API v1: alerts (list, get, acknowledge, resolve), teams and maintenance windows."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from conftest import START, auth
from medic_core.app import Medic
from medic_core.audit import Actor
from medic_core.clock import FakeClock, isoformat
from medic_core.heartbeats import HeartbeatIn

PROBLEM = "application/problem+json"
ALERTS = "/api/v1/alerts"
TEAMS = "/api/v1/teams"
WINDOWS = "/api/v1/maintenance-windows"
ME = Actor("test")


async def problem_of(response: Any, status: int) -> dict[str, Any]:
    assert response.status == status, await response.text()
    assert response.content_type == PROBLEM
    body = await response.json()
    assert body["status"] == status
    assert body["title"] and body["detail"]
    return body


async def add_service(medic: Medic, slug: str, **extra: Any) -> dict[str, Any]:
    data = {"slug": slug, "expectation": {"kind": "interval", "period": 60}, **extra}
    return await medic.services.create(data, actor=ME)


async def beat(medic: Medic, slug: str, status: str = "ok") -> None:
    await medic.writer.submit(HeartbeatIn(slug, status))


async def get_json(client: TestClient, token: str, path: str) -> Any:
    response = await client.get(path, headers=auth(token))
    assert response.status == 200, await response.text()
    return await response.json()


def key_actor(token: str) -> str:
    return f"key:{token.split('_')[1]}"


# -- alerts --------------------------------------------------------------------------------------


async def _alert_zoo(medic: Medic, clock: FakeClock) -> dict[str, int]:
    """db: missed (open); etl: failed (open); web: missed (resolved by a heartbeat)."""
    for slug in ("db", "etl", "web"):
        await add_service(medic, slug)
    await beat(medic, "db")
    await beat(medic, "etl", "fail")
    clock.advance(1)
    await beat(medic, "web")  # web's deadline is a second after db's: db's alert comes first
    clock.advance(61)
    await beat(medic, "etl", "fail")  # keeps etl from also missing
    assert (await medic.monitor.run_once()).missed == 2  # db and web
    await beat(medic, "web")
    ids: dict[str, int] = {}
    for alert in (await medic.alerts.list()).items:
        ids[alert["service"]["slug"]] = alert["id"]
    return ids


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("", ["web", "db", "etl"]),  # newest first
        ("?state=open", ["db", "etl"]),
        ("?state=resolved", ["web"]),
        ("?cause=missed", ["web", "db"]),
        ("?cause=failed", ["etl"]),
        ("?service=db", ["db"]),
        ("?unresolved=true", ["db", "etl"]),
        ("?unresolved=false", ["web"]),
        ("?cause=missed&unresolved=true", ["db"]),
        ("?service=nobody", []),
    ],
)
async def test_alert_list_filters(
    client: TestClient,
    medic: Medic,
    admin_token: str,
    clock: FakeClock,
    query: str,
    expected: list[str],
) -> None:
    await _alert_zoo(medic, clock)
    body = await get_json(client, admin_token, f"{ALERTS}{query}")
    assert [a["service"]["slug"] for a in body["items"]] == expected
    assert body["next_cursor"] is None


@pytest.mark.parametrize(
    ("query", "field"),
    [("?state=closed", "state"), ("?cause=boredom", "cause"), ("?unresolved=maybe", "unresolved"),
     ("?cursor=zzz", "cursor"), ("?limit=0", "limit")],
)
async def test_alert_list_rejects_bad_filters_with_422(
    client: TestClient, admin_token: str, query: str, field: str
) -> None:
    response = await client.get(f"{ALERTS}{query}", headers=auth(admin_token))
    assert (await problem_of(response, 422))["field"] == field


async def test_alert_list_pages_with_a_cursor(
    client: TestClient, medic: Medic, admin_token: str, clock: FakeClock
) -> None:
    await _alert_zoo(medic, clock)
    first = await get_json(client, admin_token, f"{ALERTS}?limit=2")
    second = await get_json(client, admin_token, f"{ALERTS}?limit=2&cursor={first['next_cursor']}")
    assert [a["service"]["slug"] for a in first["items"] + second["items"]] == ["web", "db", "etl"]
    assert second["next_cursor"] is None


async def test_get_alert_returns_its_details(
    client: TestClient, medic: Medic, admin_token: str, clock: FakeClock
) -> None:
    ids = await _alert_zoo(medic, clock)
    alert = await get_json(client, admin_token, f"{ALERTS}/{ids['db']}")
    assert alert["id"] == ids["db"]
    assert (alert["cause"], alert["state"], alert["priority"]) == ("missed", "open", "p3")
    assert alert["service"]["slug"] == "db"
    assert alert["opened_at"] == isoformat(clock.now())
    assert alert["details"]["last_heartbeat_at"] is not None


async def test_unknown_alert_is_a_404_and_a_non_numeric_id_a_422(
    client: TestClient, admin_token: str
) -> None:
    for method, path in (("GET", f"{ALERTS}/999"), ("POST", f"{ALERTS}/999/ack"),
                         ("POST", f"{ALERTS}/999/resolve")):
        response = await client.request(method, path, headers=auth(admin_token))
        await problem_of(response, 404)
    response = await client.get(f"{ALERTS}/abc", headers=auth(admin_token))
    assert (await problem_of(response, 422))["field"] == "id"


@pytest.mark.parametrize(
    ("method", "path"),
    [("GET", f"{ALERTS}/{2**64}"), ("POST", f"{ALERTS}/{2**63}/ack"),
     ("GET", f"{WINDOWS}/{10**20}"), ("DELETE", f"{WINDOWS}/{2**63}"),
     ("GET", f"{ALERTS}/0"), ("GET", f"{WINDOWS}/-1")],
)
async def test_id_outside_positive_64_bits_is_a_422_not_a_500(
    client: TestClient, admin_token: str, method: str, path: str
) -> None:
    response = await client.request(method, path, headers=auth(admin_token))
    assert (await problem_of(response, 422))["field"] == "id"


async def test_ack_marks_the_alert_acknowledged_by_the_caller(
    client: TestClient, medic: Medic, admin_token: str, clock: FakeClock
) -> None:
    ids = await _alert_zoo(medic, clock)
    clock.advance(30)
    response = await client.post(f"{ALERTS}/{ids['db']}/ack", headers=auth(admin_token))
    assert response.status == 200
    body = await response.json()
    assert (body["state"], body["acknowledged_by"], body["acknowledged_at"]) == (
        "acknowledged", key_actor(admin_token), isoformat(clock.now())
    )
    listed = await get_json(client, admin_token, f"{ALERTS}?state=acknowledged")
    assert [a["id"] for a in listed["items"]] == [ids["db"]]


async def test_ack_of_an_acknowledged_or_resolved_alert_is_a_409(
    client: TestClient, medic: Medic, admin_token: str, clock: FakeClock
) -> None:
    ids = await _alert_zoo(medic, clock)
    assert (await client.post(f"{ALERTS}/{ids['db']}/ack", headers=auth(admin_token))).status \
        == 200
    again = await client.post(f"{ALERTS}/{ids['db']}/ack", headers=auth(admin_token))
    assert "acknowledged" in (await problem_of(again, 409))["detail"]
    resolved = await client.post(f"{ALERTS}/{ids['web']}/ack", headers=auth(admin_token))
    assert "resolved" in (await problem_of(resolved, 409))["detail"]
    alert = await get_json(client, admin_token, f"{ALERTS}/{ids['web']}")
    assert (alert["state"], alert["acknowledged_at"]) == ("resolved", None)


async def test_resolve_by_hand_records_who_and_the_note(
    client: TestClient, medic: Medic, admin_token: str, clock: FakeClock
) -> None:
    ids = await _alert_zoo(medic, clock)
    response = await client.post(
        f"{ALERTS}/{ids['etl']}/resolve", json={"note": "rotated the disk"},
        headers=auth(admin_token),
    )
    assert response.status == 200
    body = await response.json()
    assert (body["state"], body["resolved_by"], body["resolution"], body["resolved_at"]) == (
        "resolved", key_actor(admin_token), "rotated the disk", isoformat(clock.now())
    )


async def test_resolve_without_body_uses_a_default_note(
    client: TestClient, medic: Medic, admin_token: str, clock: FakeClock
) -> None:
    ids = await _alert_zoo(medic, clock)
    await client.post(f"{ALERTS}/{ids['db']}/ack", headers=auth(admin_token))
    response = await client.post(f"{ALERTS}/{ids['db']}/resolve", headers=auth(admin_token))
    assert response.status == 200  # an acknowledged alert can be resolved
    body = await response.json()
    assert body["state"] == "resolved"
    assert key_actor(admin_token) in body["resolution"]


async def test_resolve_of_a_resolved_alert_is_a_409(
    client: TestClient, medic: Medic, admin_token: str, clock: FakeClock
) -> None:
    ids = await _alert_zoo(medic, clock)
    response = await client.post(f"{ALERTS}/{ids['web']}/resolve", headers=auth(admin_token))
    await problem_of(response, 409)


async def test_resolve_with_bad_body_is_a_422_and_leaves_the_alert_open(
    client: TestClient, medic: Medic, admin_token: str, clock: FakeClock
) -> None:
    ids = await _alert_zoo(medic, clock)
    for body in ({"note": "x" * 501}, {"reason": "fixed"}, {"note": 5}):
        response = await client.post(f"{ALERTS}/{ids['db']}/resolve", json=body,
                                      headers=auth(admin_token))
        await problem_of(response, 422)
    assert (await get_json(client, admin_token, f"{ALERTS}/{ids['db']}"))["state"] == "open"


async def test_alert_transitions_need_write_scope_not_read(
    client: TestClient, medic: Medic, admin_token: str, clock: FakeClock
) -> None:
    ids = await _alert_zoo(medic, clock)
    _, reader = await medic.keys.create(name="viewer", scopes=["read"], actor=ME)
    assert (await client.get(f"{ALERTS}/{ids['db']}", headers=auth(reader))).status == 200
    response = await client.post(f"{ALERTS}/{ids['db']}/ack", headers=auth(reader))
    await problem_of(response, 403)
    assert (await get_json(client, admin_token, f"{ALERTS}/{ids['db']}"))["state"] == "open"


# -- teams ---------------------------------------------------------------------------------------


async def test_team_crud(client: TestClient, admin_token: str, clock: FakeClock) -> None:
    response = await client.post(
        TEAMS, json={"slug": "payments", "name": "Payments", "description": "money"},
        headers=auth(admin_token),
    )
    assert response.status == 201
    created = await response.json()
    assert (created["slug"], created["name"], created["description"]) == (
        "payments", "Payments", "money"
    )
    assert created["created_at"] == isoformat(clock.now())
    assert await get_json(client, admin_token, f"{TEAMS}/payments") == created

    clock.advance(60)
    response = await client.patch(
        f"{TEAMS}/payments", json={"name": "Payments & Billing"}, headers=auth(admin_token)
    )
    assert response.status == 200
    updated = await response.json()
    assert (updated["name"], updated["description"]) == ("Payments & Billing", "money")
    assert updated["updated_at"] == isoformat(clock.now())

    response = await client.delete(f"{TEAMS}/payments", headers=auth(admin_token))
    assert response.status == 204
    await problem_of(await client.get(f"{TEAMS}/payments", headers=auth(admin_token)), 404)


async def test_team_name_defaults_to_slug(client: TestClient, admin_token: str) -> None:
    response = await client.post(TEAMS, json={"slug": "sre"}, headers=auth(admin_token))
    assert (await response.json())["name"] == "sre"


async def test_duplicate_team_is_a_409(client: TestClient, admin_token: str) -> None:
    assert (await client.post(TEAMS, json={"slug": "sre"}, headers=auth(admin_token))).status \
        == 201
    response = await client.post(TEAMS, json={"slug": "sre"}, headers=auth(admin_token))
    await problem_of(response, 409)


@pytest.mark.parametrize(
    ("body", "field"),
    [({"slug": "Not Valid"}, "slug"), ({}, "slug"), ({"slug": "sre", "name": ""}, "name"),
     ({"slug": "sre", "name": "x" * 201}, "name")],
)
async def test_invalid_team_is_a_422_naming_the_field(
    client: TestClient, admin_token: str, body: dict[str, Any], field: str
) -> None:
    response = await client.post(TEAMS, json=body, headers=auth(admin_token))
    assert (await problem_of(response, 422))["field"] == field
    assert (await get_json(client, admin_token, TEAMS))["items"] == []


async def test_team_slug_cannot_be_changed(client: TestClient, admin_token: str) -> None:
    await client.post(TEAMS, json={"slug": "sre"}, headers=auth(admin_token))
    response = await client.patch(f"{TEAMS}/sre", json={"slug": "ops"}, headers=auth(admin_token))
    await problem_of(response, 422)
    assert (await get_json(client, admin_token, f"{TEAMS}/sre"))["slug"] == "sre"


async def test_deleting_a_team_that_owns_services_is_a_409(
    client: TestClient, medic: Medic, admin_token: str
) -> None:
    await client.post(TEAMS, json={"slug": "sre"}, headers=auth(admin_token))
    await add_service(medic, "pager", team="sre")
    response = await client.delete(f"{TEAMS}/sre", headers=auth(admin_token))
    body = await problem_of(response, 409)
    assert "1 service" in body["detail"]
    assert (await get_json(client, admin_token, f"{TEAMS}/sre"))["slug"] == "sre"
    # Once the service moves away, the team can go.
    await client.patch("/api/v1/services/pager", json={"team": None}, headers=auth(admin_token))
    assert (await client.delete(f"{TEAMS}/sre", headers=auth(admin_token))).status == 204


@pytest.mark.parametrize("method", ["GET", "PATCH", "DELETE"])
async def test_unknown_team_is_a_404(client: TestClient, admin_token: str, method: str) -> None:
    kwargs: dict[str, Any] = {"json": {"name": "x"}} if method == "PATCH" else {}
    response = await client.request(method, f"{TEAMS}/ghosts", headers=auth(admin_token), **kwargs)
    await problem_of(response, 404)


async def test_team_list_pages_oldest_first(client: TestClient, admin_token: str) -> None:
    for slug in ("t1", "t2", "t3"):
        await client.post(TEAMS, json={"slug": slug}, headers=auth(admin_token))
    first = await get_json(client, admin_token, f"{TEAMS}?limit=2")
    second = await get_json(client, admin_token, f"{TEAMS}?limit=2&cursor={first['next_cursor']}")
    assert [t["slug"] for t in first["items"]] == ["t1", "t2"]
    assert [t["slug"] for t in second["items"]] == ["t3"]
    assert second["next_cursor"] is None


# -- maintenance windows -------------------------------------------------------------------------


def window(name: str = "upgrade", **extra: Any) -> dict[str, Any]:
    return {
        "name": name,
        "selector": {"all": True},
        "starts_at": isoformat(START - timedelta(hours=1)),
        "ends_at": isoformat(START + timedelta(hours=1)),
        **extra,
    }


async def create_window(client: TestClient, token: str, body: dict[str, Any]) -> dict[str, Any]:
    response = await client.post(WINDOWS, json=body, headers=auth(token))
    assert response.status == 201, await response.text()
    return await response.json()


async def test_window_crud(client: TestClient, admin_token: str, clock: FakeClock) -> None:
    created = await create_window(
        client, admin_token, window(reason="postgres 17", selector={"tags": ["db"]})
    )
    assert created["name"] == "upgrade"
    assert created["selector"] == {"tags": ["db"]}
    assert (created["timezone"], created["recurrence"], created["duration"]) == ("UTC", None, None)
    assert created["active"] is True
    assert created["current_occurrence_ends_at"] == isoformat(START + timedelta(hours=1))
    assert await get_json(client, admin_token, f"{WINDOWS}/{created['id']}") == created

    response = await client.patch(
        f"{WINDOWS}/{created['id']}",
        json={"ends_at": isoformat(START + timedelta(hours=3)), "name": "longer upgrade"},
        headers=auth(admin_token),
    )
    assert response.status == 200
    updated = await response.json()
    assert updated["name"] == "longer upgrade"
    assert updated["current_occurrence_ends_at"] == isoformat(START + timedelta(hours=3))
    assert updated["selector"] == {"tags": ["db"]}  # untouched fields are kept

    response = await client.delete(f"{WINDOWS}/{created['id']}", headers=auth(admin_token))
    assert response.status == 204
    await problem_of(
        await client.get(f"{WINDOWS}/{created['id']}", headers=auth(admin_token)), 404
    )


async def test_recurring_window_is_active_only_during_its_occurrences(
    client: TestClient, admin_token: str, clock: FakeClock
) -> None:
    # Every day 12:30 Paris time (11:30 UTC in March) for 45 minutes, for a month.
    body = window(
        "nightly vacuum",
        starts_at=isoformat(START - timedelta(days=1)),
        ends_at=isoformat(START + timedelta(days=30)),
        timezone="Europe/Paris",
        recurrence="30 12 * * *",
        duration=2700,
    )
    created = await create_window(client, admin_token, body)
    assert (created["recurrence"], created["duration"], created["timezone"]) == (
        "30 12 * * *", 2700, "Europe/Paris"
    )
    assert created["active"] is True  # 12:00 UTC is inside 11:30-12:15 UTC
    assert created["current_occurrence_ends_at"] == "2026-03-01T12:15:00Z"
    clock.advance(15 * 60)  # 12:15 UTC: this occurrence just ended
    fetched = await get_json(client, admin_token, f"{WINDOWS}/{created['id']}")
    assert (fetched["active"], fetched["current_occurrence_ends_at"]) == (False, None)
    clock.set(START + timedelta(days=1))  # next day 12:00 UTC: inside again
    fetched = await get_json(client, admin_token, f"{WINDOWS}/{created['id']}")
    assert fetched["current_occurrence_ends_at"] == "2026-03-02T12:15:00Z"


async def test_active_filter_lists_only_windows_covering_now(
    client: TestClient, admin_token: str
) -> None:
    hour = timedelta(hours=1)
    now_one_off = await create_window(client, admin_token, window("now"))
    await create_window(client, admin_token, window(
        "past", starts_at=isoformat(START - 3 * hour), ends_at=isoformat(START - 2 * hour)))
    await create_window(client, admin_token, window(
        "future", starts_at=isoformat(START + 2 * hour), ends_at=isoformat(START + 3 * hour)))
    # Inside its date range but between occurrences (every day at 02:00 UTC for an hour).
    await create_window(client, admin_token, window(
        "between", starts_at=isoformat(START - 48 * hour), ends_at=isoformat(START + 48 * hour),
        recurrence="0 2 * * *", duration=3600))
    now_recurring = await create_window(client, admin_token, window(
        "recurring-now", starts_at=isoformat(START - 48 * hour),
        ends_at=isoformat(START + 48 * hour), recurrence="0 * * * *", duration=600))

    active = await get_json(client, admin_token, f"{WINDOWS}?active=true")
    assert [w["id"] for w in active["items"]] == [now_recurring["id"], now_one_off["id"]]
    assert all(w["active"] for w in active["items"])
    everything = await get_json(client, admin_token, WINDOWS)
    assert [w["name"] for w in everything["items"]] == [
        "recurring-now", "between", "future", "past", "now"  # newest first
    ]


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"name": None}, "name"),
        ({"selector": None}, "selector"),
        ({"starts_at": None}, "starts_at"),
        ({"name": ""}, "name"),
        ({"ends_at": isoformat(START - timedelta(hours=2))}, "ends_at"),  # before starts_at
        ({"starts_at": "yesterday"}, "starts_at"),
        ({"ends_at": "2026-03-01T13:00:00"}, "ends_at"),  # no offset
        ({"ends_at": "9999-12-31T23:59:59-01:00"}, "ends_at"),  # past the calendar in UTC
        ({"timezone": "Atlantis/Capital"}, "timezone"),
        ({"selector": {}}, "selector"),
        ({"selector": {"all": True, "tags": ["db"]}}, "selector"),
        ({"selector": {"services": []}}, "selector"),
        ({"selector": {"colour": "red"}}, "selector"),
        ({"selector": {"services": ["Bad Slug"]}}, "selector.services[0]"),
        ({"recurrence": "0 2 * * *"}, "duration"),  # recurrence needs a duration
        ({"duration": 600}, "duration"),  # a duration needs a recurrence
        ({"recurrence": "every night", "duration": 600}, "recurrence"),
        ({"recurrence": "", "duration": 600}, "recurrence"),
        ({"recurrence": "0 2 * * *", "duration": 0}, "duration"),
        ({"recurrence": "0 * * * *", "duration": 3600}, "duration"),  # occurrences would touch
        ({"recurrence": "0 2 30 2 *", "duration": 60}, "recurrence"),  # 30 Feb: never fires
    ],
)
async def test_invalid_window_is_a_422_naming_the_field(
    client: TestClient, admin_token: str, changes: dict[str, Any], field: str
) -> None:
    body = {**window(), **changes}
    response = await client.post(WINDOWS, json=body, headers=auth(admin_token))
    assert (await problem_of(response, 422))["field"] == field
    assert (await get_json(client, admin_token, WINDOWS))["items"] == []


async def test_window_with_unknown_field_is_a_422(client: TestClient, admin_token: str) -> None:
    response = await client.post(WINDOWS, json=window(owner="me"), headers=auth(admin_token))
    assert "owner" in (await problem_of(response, 422))["detail"]


async def test_invalid_patch_leaves_the_window_unchanged(
    client: TestClient, admin_token: str
) -> None:
    created = await create_window(client, admin_token, window())
    response = await client.patch(
        f"{WINDOWS}/{created['id']}", json={"name": "renamed", "duration": 60},
        headers=auth(admin_token),
    )
    assert (await problem_of(response, 422))["field"] == "duration"
    assert await get_json(client, admin_token, f"{WINDOWS}/{created['id']}") == created


@pytest.mark.parametrize("method", ["GET", "PATCH", "DELETE"])
async def test_unknown_window_is_a_404(client: TestClient, admin_token: str, method: str) -> None:
    kwargs: dict[str, Any] = {"json": {"name": "x"}} if method == "PATCH" else {}
    response = await client.request(method, f"{WINDOWS}/4242", headers=auth(admin_token), **kwargs)
    await problem_of(response, 404)


async def test_window_suppresses_alerts_of_the_services_it_selects(
    client: TestClient, medic: Medic, admin_token: str, clock: FakeClock
) -> None:
    await add_service(medic, "pg", tags=["db"])
    await add_service(medic, "web")
    await create_window(client, admin_token, window(selector={"tags": ["db"]}))
    await beat(medic, "pg")
    await beat(medic, "web")
    clock.advance(61)
    await medic.monitor.run_once()
    listed = await get_json(client, admin_token, f"{ALERTS}?cause=missed")
    by_slug = {a["service"]["slug"]: a for a in listed["items"]}
    assert by_slug["pg"]["suppressed"] is True
    assert by_slug["pg"]["suppressed_reason"] == "maintenance: upgrade"
    assert by_slug["web"]["suppressed"] is False


async def test_window_changes_need_write_scope(
    client: TestClient, medic: Medic, admin_token: str
) -> None:
    _, reader = await medic.keys.create(name="viewer", scopes=["read"], actor=ME)
    response = await client.post(WINDOWS, json=window(), headers=auth(reader))
    await problem_of(response, 403)
    assert (await client.get(WINDOWS, headers=auth(reader))).status == 200


async def test_active_filter_pages_through_every_active_window(
    client: TestClient, admin_token: str
) -> None:
    hour = timedelta(hours=1)
    oldest = await create_window(client, admin_token, window("now"))
    await create_window(client, admin_token, window(
        "between", starts_at=isoformat(START - 48 * hour), ends_at=isoformat(START + 48 * hour),
        recurrence="0 2 * * *", duration=3600))
    newest = await create_window(client, admin_token, window("also-now"))
    seen: list[int] = []
    cursor = None
    for _ in range(5):
        query = "?active=true&limit=1" + (f"&cursor={cursor}" if cursor else "")
        page = await get_json(client, admin_token, f"{WINDOWS}{query}")
        seen += [w["id"] for w in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == [newest["id"], oldest["id"]]
