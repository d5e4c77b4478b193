"""REST API v1, services: CRUD, validation, list filters, cursor paging, mute/pause, deadlines.

Everything goes through HTTP (aiohttp TestClient) against a real database (SQLite and
PostgreSQL); time moves only through the FakeClock and ``medic.monitor.run_once()``.
"""

from __future__ import annotations

import base64
from datetime import timedelta
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from conftest import auth
from medic_core.app import Medic
from medic_core.clock import FakeClock, isoformat

PROBLEM = "application/problem+json"
SERVICES = "/api/v1/services"


async def create(
    client: TestClient, token: str, slug: str, *, period: int = 60, **extra: Any
) -> dict[str, Any]:
    body = {"slug": slug, "expectation": {"kind": "interval", "period": period}, **extra}
    response = await client.post(SERVICES, json=body, headers=auth(token))
    assert response.status == 201, await response.text()
    return await response.json()


async def ping(client: TestClient, token: str, slug: str) -> None:
    response = await client.post(
        "/api/v1/heartbeats", json={"service": slug}, headers=auth(token)
    )
    assert response.status == 201, await response.text()


async def problem_of(response: Any, status: int) -> dict[str, Any]:
    assert response.status == status, await response.text()
    assert response.content_type == PROBLEM
    body = await response.json()
    assert body["status"] == status
    assert body["title"] and body["detail"]
    return body


async def slugs(client: TestClient, token: str, query: str = "") -> list[str]:
    response = await client.get(f"{SERVICES}{query}", headers=auth(token))
    assert response.status == 200, await response.text()
    return [s["slug"] for s in (await response.json())["items"]]


# -- CRUD --------------------------------------------------------------------------------------


async def test_create_returns_201_with_defaults_and_get_returns_the_same_service(
    client: TestClient, admin_token: str, clock: FakeClock
) -> None:
    created = await create(client, admin_token, "nightly-backup", grace=30)
    assert created["slug"] == "nightly-backup"
    assert created["name"] == "nightly-backup"  # name defaults to the slug
    assert created["priority"] == "p3"
    assert created["tags"] == []
    assert created["team"] is None
    assert created["state"] == "new"
    assert created["next_due"] is None  # a new service has no deadline until it checks in
    assert created["expectation"] == {"kind": "interval", "period": 60}
    assert created["grace"] == 30
    assert created["muted"] is False
    assert created["created_at"] == isoformat(clock.now())

    response = await client.get(f"{SERVICES}/nightly-backup", headers=auth(admin_token))
    assert response.status == 200
    assert await response.json() == created


async def test_patch_changes_fields_and_answers_200(
    client: TestClient, admin_token: str, clock: FakeClock
) -> None:
    await create(client, admin_token, "etl")
    clock.advance(5)
    response = await client.patch(
        f"{SERVICES}/etl",
        json={"name": "Nightly ETL", "priority": "p1", "tags": ["db", "batch"]},
        headers=auth(admin_token),
    )
    assert response.status == 200, await response.text()
    body = await response.json()
    assert (body["name"], body["priority"], body["tags"]) == ("Nightly ETL", "p1", ["batch", "db"])
    assert body["updated_at"] == isoformat(clock.now())
    fetched = await (await client.get(f"{SERVICES}/etl", headers=auth(admin_token))).json()
    assert fetched["name"] == "Nightly ETL"


async def test_delete_answers_204_and_the_service_is_gone(
    client: TestClient, admin_token: str
) -> None:
    await create(client, admin_token, "old-job")
    await ping(client, admin_token, "old-job")
    response = await client.delete(f"{SERVICES}/old-job", headers=auth(admin_token))
    assert response.status == 204
    assert await response.read() == b""
    await problem_of(await client.get(f"{SERVICES}/old-job", headers=auth(admin_token)), 404)
    history = await client.get(f"{SERVICES}/old-job/heartbeats", headers=auth(admin_token))
    await problem_of(history, 404)


async def test_duplicate_slug_is_a_409_conflict(client: TestClient, admin_token: str) -> None:
    await create(client, admin_token, "api")
    response = await client.post(
        SERVICES,
        json={"slug": "api", "expectation": {"kind": "interval", "period": 30}},
        headers=auth(admin_token),
    )
    body = await problem_of(response, 409)
    assert "api" in body["detail"]
    assert await slugs(client, admin_token) == ["api"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"slug": "Bad Slug!", "expectation": {"kind": "interval", "period": 60}}, "slug"),
        ({"slug": "-leading-dash", "expectation": {"kind": "interval", "period": 60}}, "slug"),
        ({"expectation": {"kind": "interval", "period": 60}}, "slug"),
        ({"slug": "svc", "expectation": {"kind": "interval", "period": 60}, "priority": "p9"},
         "priority"),
        ({"slug": "svc"}, "expectation"),
        ({"slug": "svc", "expectation": "every minute"}, "expectation"),
        ({"slug": "svc", "expectation": {"kind": "hourly"}}, "expectation.kind"),
        ({"slug": "svc", "expectation": {"kind": "interval"}}, "expectation.period"),
        ({"slug": "svc", "expectation": {"kind": "interval", "period": 0}}, "expectation.period"),
        ({"slug": "svc", "expectation": {"kind": "cron", "expression": "61 * * * *"}},
         "expectation.expression"),
        ({"slug": "svc", "expectation": {"kind": "cron", "expression": "0 3 * * *",
                                         "timezone": "Mars/Olympus"}}, "expectation.timezone"),
        ({"slug": "svc", "expectation": {"kind": "interval", "period": 60, "every": 5}},
         "expectation.every"),
        ({"slug": "svc", "expectation": {"kind": "interval", "period": 60}, "grace": -1}, "grace"),
        ({"slug": "svc", "expectation": {"kind": "interval", "period": 60}, "team": "ghosts"},
         "team"),
        ({"slug": "svc", "expectation": {"kind": "interval", "period": 60},
          "runbook_url": "ftp://x"}, "runbook_url"),
        ({"slug": "svc", "expectation": {"kind": "interval", "period": 60}, "tags": ["Bad Tag"]},
         "tags[0]"),
    ],
)
async def test_invalid_service_is_a_422_naming_the_field(
    client: TestClient, admin_token: str, body: dict[str, Any], field: str
) -> None:
    response = await client.post(SERVICES, json=body, headers=auth(admin_token))
    problem = await problem_of(response, 422)
    assert problem["field"] == field
    assert await slugs(client, admin_token) == []  # nothing was created


async def test_unknown_field_is_a_422_naming_the_field(
    client: TestClient, admin_token: str
) -> None:
    body = {"slug": "svc", "expectation": {"kind": "interval", "period": 60}, "colour": "red"}
    problem = await problem_of(
        await client.post(SERVICES, json=body, headers=auth(admin_token)), 422
    )
    assert "colour" in problem["detail"]
    assert problem.get("field") == "colour"


async def test_patch_rejects_changing_the_slug(client: TestClient, admin_token: str) -> None:
    await create(client, admin_token, "svc")
    response = await client.patch(
        f"{SERVICES}/svc", json={"slug": "renamed"}, headers=auth(admin_token)
    )
    await problem_of(response, 422)
    assert await slugs(client, admin_token) == ["svc"]


async def test_invalid_patch_changes_nothing(client: TestClient, admin_token: str) -> None:
    await create(client, admin_token, "svc", priority="p2")
    response = await client.patch(
        f"{SERVICES}/svc", json={"name": "New name", "priority": "urgent"},
        headers=auth(admin_token),
    )
    assert (await problem_of(response, 422))["field"] == "priority"
    fetched = await (await client.get(f"{SERVICES}/svc", headers=auth(admin_token))).json()
    assert (fetched["name"], fetched["priority"]) == ("svc", "p2")


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/api/v1/services/ghost"),
        ("PATCH", "/api/v1/services/ghost"),
        ("DELETE", "/api/v1/services/ghost"),
        ("POST", "/api/v1/services/ghost/mute"),
        ("POST", "/api/v1/services/ghost/unmute"),
        ("POST", "/api/v1/services/ghost/pause"),
        ("POST", "/api/v1/services/ghost/resume"),
    ],
)
async def test_unknown_service_is_a_404_problem(
    client: TestClient, admin_token: str, method: str, path: str
) -> None:
    kwargs: dict[str, Any] = {"json": {"name": "x"}} if method == "PATCH" else {}
    response = await client.request(method, path, headers=auth(admin_token), **kwargs)
    body = await problem_of(response, 404)
    assert "ghost" in body["detail"]


# -- list filters --------------------------------------------------------------------------------


async def _one_service_per_state(
    client: TestClient, token: str, medic: Medic, clock: FakeClock
) -> None:
    await create(client, token, "s-new")
    await create(client, token, "s-up", period=3600)
    await create(client, token, "s-late", period=60, grace=600)
    await create(client, token, "s-down", period=60)
    await create(client, token, "s-paused", period=3600)
    for slug in ("s-up", "s-late", "s-down", "s-paused"):
        await ping(client, token, slug)
    response = await client.post(f"{SERVICES}/s-paused/pause", headers=auth(token))
    assert response.status == 200
    clock.advance(120)  # s-late is past expected_at but inside grace; s-down past its deadline
    assert (await medic.monitor.run_once()).missed == 1


@pytest.mark.parametrize(
    ("state", "expected"),
    [
        ("new", ["s-new"]),
        ("up", ["s-up"]),
        ("late", ["s-late"]),
        ("down", ["s-down"]),
        ("paused", ["s-paused"]),
    ],
)
async def test_state_filter_returns_exactly_the_services_in_that_state(
    client: TestClient,
    admin_token: str,
    medic: Medic,
    clock: FakeClock,
    state: str,
    expected: list[str],
) -> None:
    await _one_service_per_state(client, admin_token, medic, clock)
    response = await client.get(f"{SERVICES}?state={state}", headers=auth(admin_token))
    items = (await response.json())["items"]
    assert [s["slug"] for s in items] == expected
    assert all(s["state"] == state for s in items)


async def test_late_is_derived_from_expected_at_not_stored(
    client: TestClient, admin_token: str, clock: FakeClock
) -> None:
    await create(client, admin_token, "svc", period=60, grace=60)
    await ping(client, admin_token, "svc")
    clock.advance(59)
    assert await slugs(client, admin_token, "?state=up") == ["svc"]
    clock.advance(1)  # exactly at expected_at: late, no monitor pass needed
    assert await slugs(client, admin_token, "?state=late") == ["svc"]
    assert await slugs(client, admin_token, "?state=up") == []
    fetched = await (await client.get(f"{SERVICES}/svc", headers=auth(admin_token))).json()
    assert fetched["state"] == "late"


async def test_invalid_state_filter_is_a_422(client: TestClient, admin_token: str) -> None:
    response = await client.get(f"{SERVICES}?state=sleeping", headers=auth(admin_token))
    assert (await problem_of(response, 422))["field"] == "state"


async def test_team_filter(client: TestClient, admin_token: str) -> None:
    for team in ("payments", "search"):
        response = await client.post(
            "/api/v1/teams", json={"slug": team}, headers=auth(admin_token)
        )
        assert response.status == 201
    await create(client, admin_token, "billing", team="payments")
    await create(client, admin_token, "ledger", team="payments")
    await create(client, admin_token, "indexer", team="search")
    await create(client, admin_token, "orphan")
    assert await slugs(client, admin_token, "?team=payments") == ["billing", "ledger"]
    assert await slugs(client, admin_token, "?team=search") == ["indexer"]
    assert await slugs(client, admin_token, "?team=nobody") == []
    billing = await (await client.get(f"{SERVICES}/billing", headers=auth(admin_token))).json()
    assert billing["team"] == "payments"


async def test_tag_filter_matches_whole_tags_only(client: TestClient, admin_token: str) -> None:
    await create(client, admin_token, "pg-main", tags=["db", "prod"])
    await create(client, admin_token, "pg-replica", tags=["db-replica", "prod"])
    await create(client, admin_token, "web", tags=["prod"])
    assert await slugs(client, admin_token, "?tag=db") == ["pg-main"]
    assert await slugs(client, admin_token, "?tag=prod") == ["pg-main", "pg-replica", "web"]
    assert await slugs(client, admin_token, "?tag=staging") == []


async def test_q_filter_matches_slug_or_name_case_insensitively(
    client: TestClient, admin_token: str
) -> None:
    await create(client, admin_token, "backup-db", name="Postgres backup")
    await create(client, admin_token, "cleanup", name="Temp cleanup")
    await create(client, admin_token, "reports", name="Weekly BACKUP report")
    assert await slugs(client, admin_token, "?q=backup") == ["backup-db", "reports"]
    assert await slugs(client, admin_token, "?q=TEMP") == ["cleanup"]
    assert await slugs(client, admin_token, "?q=nothing-matches") == []


async def test_q_filter_treats_underscore_and_percent_literally(
    client: TestClient, admin_token: str
) -> None:
    await create(client, admin_token, "db_backup")
    await create(client, admin_token, "db-backup")
    await create(client, admin_token, "cleanup")
    assert await slugs(client, admin_token, "?q=db_backup") == ["db_backup"]
    assert await slugs(client, admin_token, "?q=%25") == []


async def test_muted_filter_follows_mute_expiry(
    client: TestClient, admin_token: str, clock: FakeClock
) -> None:
    await create(client, admin_token, "forever")
    await create(client, admin_token, "briefly")
    await create(client, admin_token, "loud")
    r1 = await client.post(f"{SERVICES}/forever/mute", headers=auth(admin_token))
    until = isoformat(clock.now() + timedelta(seconds=60))
    r2 = await client.post(
        f"{SERVICES}/briefly/mute", json={"until": until}, headers=auth(admin_token)
    )
    assert (r1.status, r2.status) == (200, 200)
    assert await slugs(client, admin_token, "?muted=true") == ["forever", "briefly"]
    assert await slugs(client, admin_token, "?muted=false") == ["loud"]
    clock.advance(60)  # the timed mute ends by itself
    assert await slugs(client, admin_token, "?muted=true") == ["forever"]
    assert await slugs(client, admin_token, "?muted=false") == ["briefly", "loud"]
    briefly = await (await client.get(f"{SERVICES}/briefly", headers=auth(admin_token))).json()
    assert (briefly["muted"], briefly["muted_until"]) == (False, None)


async def test_invalid_muted_filter_is_a_422(client: TestClient, admin_token: str) -> None:
    response = await client.get(f"{SERVICES}?muted=perhaps", headers=auth(admin_token))
    assert (await problem_of(response, 422))["field"] == "muted"


async def test_filters_combine(client: TestClient, admin_token: str) -> None:
    await create(client, admin_token, "pg-prod", tags=["db"])
    await create(client, admin_token, "pg-stage", tags=["db"])
    await create(client, admin_token, "web-prod")
    await client.post(f"{SERVICES}/pg-stage/mute", headers=auth(admin_token))
    assert await slugs(client, admin_token, "?tag=db&muted=false") == ["pg-prod"]
    assert await slugs(client, admin_token, "?q=prod&tag=db") == ["pg-prod"]


# -- pagination ----------------------------------------------------------------------------------


async def test_cursor_pagination_returns_every_service_exactly_once(
    client: TestClient, admin_token: str
) -> None:
    created = [f"svc-{i}" for i in range(7)]
    for slug in created:
        await create(client, admin_token, slug)
    seen: list[str] = []
    pages: list[int] = []
    cursor: str | None = None
    for _ in range(10):  # bounded: a broken cursor must fail, not loop
        query = "?limit=3" + (f"&cursor={cursor}" if cursor else "")
        body = await (await client.get(f"{SERVICES}{query}", headers=auth(admin_token))).json()
        pages.append(len(body["items"]))
        seen += [s["slug"] for s in body["items"]]
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert pages == [3, 3, 1]
    assert seen == created  # oldest first, each exactly once
    assert cursor is None


async def test_cursor_is_stable_when_services_are_added_between_pages(
    client: TestClient, admin_token: str
) -> None:
    for slug in ("a1", "a2", "a3", "a4"):
        await create(client, admin_token, slug)
    first = await (await client.get(f"{SERVICES}?limit=2", headers=auth(admin_token))).json()
    await create(client, admin_token, "a5")
    second = await (
        await client.get(f"{SERVICES}?limit=10&cursor={first['next_cursor']}",
                         headers=auth(admin_token))
    ).json()
    assert [s["slug"] for s in first["items"]] == ["a1", "a2"]
    assert [s["slug"] for s in second["items"]] == ["a3", "a4", "a5"]
    assert second["next_cursor"] is None


async def test_exact_page_boundary_has_no_next_cursor(
    client: TestClient, admin_token: str
) -> None:
    for slug in ("b1", "b2", "b3"):
        await create(client, admin_token, slug)
    body = await (await client.get(f"{SERVICES}?limit=3", headers=auth(admin_token))).json()
    assert len(body["items"]) == 3
    assert body["next_cursor"] is None


@pytest.mark.parametrize("cursor", ["not-a-cursor", "%%%", "eHl6OjE"])  # last: "xyz:1"
async def test_bad_cursor_is_a_422(client: TestClient, admin_token: str, cursor: str) -> None:
    response = await client.get(f"{SERVICES}?cursor={cursor}", headers=auth(admin_token))
    assert (await problem_of(response, 422))["field"] == "cursor"


async def test_forged_cursor_beyond_64_bits_is_a_422(
    client: TestClient, admin_token: str
) -> None:
    cursor = base64.urlsafe_b64encode(f"id:{10**20}".encode()).decode().rstrip("=")
    response = await client.get(f"{SERVICES}?cursor={cursor}", headers=auth(admin_token))
    assert (await problem_of(response, 422))["field"] == "cursor"


@pytest.mark.parametrize("limit", ["0", "501", "-1", "ten"])
async def test_limit_outside_1_to_500_is_a_422(
    client: TestClient, admin_token: str, limit: str
) -> None:
    response = await client.get(f"{SERVICES}?limit={limit}", headers=auth(admin_token))
    assert (await problem_of(response, 422))["field"] == "limit"


# -- mute, pause, resume -------------------------------------------------------------------------


async def test_mute_with_until_and_reason_then_unmute(
    client: TestClient, admin_token: str, clock: FakeClock
) -> None:
    await create(client, admin_token, "svc")
    until = isoformat(clock.now() + timedelta(hours=2))
    response = await client.post(
        f"{SERVICES}/svc/mute", json={"until": until, "reason": "deploy"},
        headers=auth(admin_token),
    )
    assert response.status == 200
    body = await response.json()
    assert (body["muted"], body["muted_until"], body["mute_reason"]) == (True, until, "deploy")

    response = await client.post(f"{SERVICES}/svc/unmute", headers=auth(admin_token))
    assert response.status == 200
    body = await response.json()
    assert (body["muted"], body["muted_until"], body["mute_reason"]) == (False, None, None)


async def test_mute_without_body_mutes_indefinitely(
    client: TestClient, admin_token: str, clock: FakeClock
) -> None:
    await create(client, admin_token, "svc")
    response = await client.post(f"{SERVICES}/svc/mute", headers=auth(admin_token))
    assert response.status == 200
    assert (await response.json())["muted_until"] is None
    clock.advance(10 * 365 * 86400)
    fetched = await (await client.get(f"{SERVICES}/svc", headers=auth(admin_token))).json()
    assert fetched["muted"] is True


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"until": "2026-03-01T11:59:59Z"}, "until"),  # the FakeClock says 12:00: in the past
        ({"until": "2026-03-01T12:00:00Z"}, "until"),  # now is not the future either
        ({"until": "2026-03-02T12:00:00"}, "until"),  # no offset
        ({"until": "tomorrow"}, "until"),
        ({"reason": 42}, "reason"),
    ],
)
async def test_invalid_mute_is_a_422_and_leaves_the_service_unmuted(
    client: TestClient, admin_token: str, body: dict[str, Any], field: str
) -> None:
    await create(client, admin_token, "svc")
    response = await client.post(f"{SERVICES}/svc/mute", json=body, headers=auth(admin_token))
    assert (await problem_of(response, 422))["field"] == field
    fetched = await (await client.get(f"{SERVICES}/svc", headers=auth(admin_token))).json()
    assert fetched["muted"] is False


async def test_mute_until_at_the_end_of_the_calendar_is_a_422(
    client: TestClient, admin_token: str
) -> None:
    await create(client, admin_token, "svc")
    response = await client.post(
        f"{SERVICES}/svc/mute", json={"until": "9999-12-31T23:59:59-01:00"},
        headers=auth(admin_token),
    )
    assert (await problem_of(response, 422))["field"] == "until"


async def test_mute_with_unknown_field_is_a_422(client: TestClient, admin_token: str) -> None:
    await create(client, admin_token, "svc")
    response = await client.post(
        f"{SERVICES}/svc/mute", json={"for": "1h"}, headers=auth(admin_token)
    )
    await problem_of(response, 422)


async def test_pause_then_resume_starts_a_fresh_deadline_from_now(
    client: TestClient, admin_token: str, medic: Medic, clock: FakeClock
) -> None:
    await create(client, admin_token, "svc", period=60)
    await ping(client, admin_token, "svc")
    response = await client.post(f"{SERVICES}/svc/pause", headers=auth(admin_token))
    assert response.status == 200
    body = await response.json()
    assert (body["state"], body["next_due"], body["paused_at"]) == (
        "paused", None, isoformat(clock.now())
    )
    clock.advance(3600)
    assert (await medic.monitor.run_once()).missed == 0  # paused: not monitored
    response = await client.post(f"{SERVICES}/svc/resume", headers=auth(admin_token))
    assert response.status == 200
    body = await response.json()
    assert body["state"] == "up"
    assert body["paused_at"] is None
    assert body["next_due"] == isoformat(clock.now() + timedelta(seconds=60))


async def test_resume_of_a_never_seen_service_goes_back_to_new(
    client: TestClient, admin_token: str
) -> None:
    await create(client, admin_token, "svc")
    await client.post(f"{SERVICES}/svc/pause", headers=auth(admin_token))
    body = await (await client.post(f"{SERVICES}/svc/resume", headers=auth(admin_token))).json()
    assert (body["state"], body["next_due"]) == ("new", None)


async def test_resume_of_a_service_that_is_not_paused_is_a_409(
    client: TestClient, admin_token: str
) -> None:
    await create(client, admin_token, "svc")
    await ping(client, admin_token, "svc")
    response = await client.post(f"{SERVICES}/svc/resume", headers=auth(admin_token))
    await problem_of(response, 409)
    fetched = await (await client.get(f"{SERVICES}/svc", headers=auth(admin_token))).json()
    assert fetched["state"] == "up"


async def test_pause_of_a_paused_service_is_a_409(client: TestClient, admin_token: str) -> None:
    await create(client, admin_token, "svc")
    assert (await client.post(f"{SERVICES}/svc/pause", headers=auth(admin_token))).status == 200
    response = await client.post(f"{SERVICES}/svc/pause", headers=auth(admin_token))
    await problem_of(response, 409)


async def test_pause_resolves_an_open_missed_alert(
    client: TestClient, admin_token: str, medic: Medic, clock: FakeClock
) -> None:
    await create(client, admin_token, "svc", period=60)
    await ping(client, admin_token, "svc")
    clock.advance(61)
    await medic.monitor.run_once()
    await client.post(f"{SERVICES}/svc/pause", headers=auth(admin_token))
    alerts = await (
        await client.get("/api/v1/alerts?service=svc", headers=auth(admin_token))
    ).json()
    assert [(a["cause"], a["state"]) for a in alerts["items"]] == [("missed", "resolved")]


# -- deadlines -----------------------------------------------------------------------------------


async def test_patch_expectation_recomputes_next_due_from_the_last_heartbeat(
    client: TestClient, admin_token: str, clock: FakeClock
) -> None:
    await create(client, admin_token, "svc", period=60, grace=10)
    beat_at = clock.now()
    await ping(client, admin_token, "svc")
    fetched = await (await client.get(f"{SERVICES}/svc", headers=auth(admin_token))).json()
    assert fetched["next_due"] == isoformat(beat_at + timedelta(seconds=70))

    clock.advance(30)
    response = await client.patch(
        f"{SERVICES}/svc",
        json={"expectation": {"kind": "interval", "period": 300}},
        headers=auth(admin_token),
    )
    body = await response.json()
    assert body["expected_at"] == isoformat(beat_at + timedelta(seconds=300))
    assert body["next_due"] == isoformat(beat_at + timedelta(seconds=310))

    response = await client.patch(f"{SERVICES}/svc", json={"grace": 100},
                                  headers=auth(admin_token))
    assert (await response.json())["next_due"] == isoformat(beat_at + timedelta(seconds=400))


async def test_patch_to_cron_expectation_sets_next_fire_time_as_deadline(
    client: TestClient, admin_token: str
) -> None:
    await create(client, admin_token, "svc", period=60)
    await ping(client, admin_token, "svc")  # at 2026-03-01T12:00:00Z
    response = await client.patch(
        f"{SERVICES}/svc",
        json={"expectation": {"kind": "cron", "expression": "0 3 * * *",
                              "timezone": "Europe/Paris"}},
        headers=auth(admin_token),
    )
    body = await response.json()
    assert body["expectation"]["kind"] == "cron"
    assert body["next_due"] == "2026-03-02T02:00:00Z"  # 03:00 in Paris (UTC+1 in March)


async def test_patch_of_a_service_not_heard_from_keeps_no_deadline(
    client: TestClient, admin_token: str
) -> None:
    await create(client, admin_token, "svc")
    response = await client.patch(
        f"{SERVICES}/svc", json={"expectation": {"kind": "interval", "period": 5}},
        headers=auth(admin_token),
    )
    body = await response.json()
    assert (body["state"], body["next_due"]) == ("new", None)


async def test_relaxing_the_expectation_of_a_down_service_brings_it_up_and_resolves_missed(
    client: TestClient, admin_token: str, medic: Medic, clock: FakeClock
) -> None:
    await create(client, admin_token, "svc", period=60)
    await ping(client, admin_token, "svc")
    clock.advance(90)
    assert (await medic.monitor.run_once()).missed == 1
    response = await client.patch(
        f"{SERVICES}/svc", json={"expectation": {"kind": "interval", "period": 3600}},
        headers=auth(admin_token),
    )
    body = await response.json()
    assert body["state"] == "up"
    assert body["next_due"] == isoformat(clock.now() - timedelta(seconds=90) + timedelta(hours=1))
    alerts = await (await client.get("/api/v1/alerts?service=svc",
                                     headers=auth(admin_token))).json()
    assert [(a["cause"], a["state"]) for a in alerts["items"]] == [("missed", "resolved")]


async def test_service_changes_are_audited_with_the_calling_key(
    client: TestClient, admin_token: str
) -> None:
    await create(client, admin_token, "svc")
    await client.patch(f"{SERVICES}/svc", json={"priority": "p1"}, headers=auth(admin_token))
    await client.delete(f"{SERVICES}/svc", headers=auth(admin_token))
    body = await (
        await client.get("/api/v1/audit?resource_type=service", headers=auth(admin_token))
    ).json()
    key_id = admin_token.split("_")[1]
    assert [(e["action"], e["actor"]) for e in body["items"]] == [
        ("service.delete", f"key:{key_id}"),
        ("service.update", f"key:{key_id}"),
        ("service.create", f"key:{key_id}"),
    ]
