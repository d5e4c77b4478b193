"""REST API v1: schedules, escalation policies, notification targets and a team's policy.

Runs on SQLite and PostgreSQL (the ``db_url`` fixture). The ``medic`` fixture is overridden here
to load a stand-in notifier, ``vault``, whose schema marks secrets ``writeOnly`` at the top level,
under ``additionalProperties`` and in a nested object, and whose ``validate_config`` refuses some
values -- so secret handling is checked on every shape a plugin may use.
"""

from __future__ import annotations

import json
import types
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from sqlalchemy import select

from conftest import auth, make_settings
from medic_core.app import Medic
from medic_core.audit import Actor
from medic_core.clock import FakeClock, isoformat
from medic_core.errors import NotFound
from medic_core.plugins import hookimpl
from medic_core.plugins.interfaces import HealthResult, Notification
from medic_core.store.models import AuditEntry, NotificationTarget

PROBLEM = "application/problem+json"
SCHEDULES = "/api/v1/schedules"
POLICIES = "/api/v1/escalation-policies"
TARGETS = "/api/v1/targets"
TEAMS = "/api/v1/teams"
MASK = "********"
TOKEN = "tok-0123456789-sekrit"
HEADER = "Bearer hdr-secret-value"
PASSWORD = "pw-nested-secret"
API_KEY = "ak-referenced-secret"
SIGNING_KEY = "sk-pattern-secret"
ME = Actor("test")
OFFICE = [{"days": ["mon", "tue", "wed", "thu", "fri"], "start": "09:00", "end": "17:30"}]


class Vault:
    """A notifier whose configuration holds secrets in every place a schema can mark one."""

    name = "vault"
    config_schema: dict[str, Any] = {
        "type": "object",
        "required": ["channel"],
        "additionalProperties": False,
        "$defs": {"secret": {"type": "string", "minLength": 8, "writeOnly": True}},
        "properties": {
            "channel": {"type": "string", "pattern": "^#"},
            "api_key": {"$ref": "#/$defs/secret"},
            "signing": {
                "type": "object",
                "patternProperties": {"^key-": {"type": "string", "writeOnly": True}},
                "additionalProperties": {"type": "string"},
            },
            "token": {"type": "string", "minLength": 12, "writeOnly": True},
            "headers": {
                "type": "object",
                "additionalProperties": {"type": "string"},
                "writeOnly": True,
            },
            "login": {
                "type": "object",
                "additionalProperties": False,
                "properties": {
                    "user": {"type": "string"},
                    "password": {"type": "string", "writeOnly": True},
                },
            },
            "retries": {"type": "integer", "minimum": 0, "maximum": 5},
        },
    }

    def validate_config(self, config: dict[str, Any]) -> None:
        if config["channel"] == "#archived":
            raise ValueError("channel: #archived is archived; pick a live channel")
        if config.get("token", "").startswith("xoxp-"):
            raise ValueError(f"token {config['token']} is a user token, not a bot token")

    async def send(self, notification: Notification) -> None:
        return None


class DeliveryStandIn:
    """Stands in for ``medic.delivery`` (the outbox sender) in the test and check routes."""

    def __init__(self) -> None:
        self.tested: list[str] = []

    async def test_target(self, slug: str) -> dict[str, Any]:
        if slug == "ghost":
            raise NotFound(f"no target {slug!r}")
        self.tested.append(slug)
        return {"target": slug, "notifier": "vault", "ok": True, "retryable": False,
                "error": None, "response_code": 200, "duration_ms": 1.5}

    async def check_target(self, slug: str) -> HealthResult:
        return HealthResult("degraded", f"{slug}: token expires in 3 days")


@pytest.fixture
async def medic(db_url: str, tmp_path: Path, clock: FakeClock) -> AsyncIterator[Medic]:
    """The shared ``medic`` fixture, plus the ``vault`` notifier (``client`` uses this one)."""
    plugin = types.SimpleNamespace(medic_notifiers=hookimpl(lambda: [Vault()]))
    app = Medic(make_settings(db_url, tmp_path), clock=clock, plugins=[("vault-notifier", plugin)])
    await app.start(monitor=False)
    try:
        yield app
    finally:
        await app.stop()


@pytest.fixture
def delivery(medic: Medic) -> Iterator[DeliveryStandIn]:
    real = medic.__dict__.get("delivery")
    stand_in = DeliveryStandIn()
    medic.delivery = stand_in  # type: ignore[attr-defined]
    try:
        yield stand_in
    finally:
        if real is None:
            del medic.delivery  # type: ignore[attr-defined]
        else:
            medic.delivery = real  # type: ignore[attr-defined]


class Api:
    """``api.post(path, body)`` etc. with the admin key; answers (status, json)."""

    def __init__(self, client: TestClient, token: str) -> None:
        self.client, self.token = client, token

    async def call(self, method: str, path: str, body: Any = None,
                   token: str | None = None) -> tuple[int, Any]:
        kwargs: dict[str, Any] = {"headers": auth(token or self.token)}
        if body is not None:
            kwargs["json"] = body
        response = await self.client.request(method, path, **kwargs)
        if response.status >= 400:
            assert response.content_type == PROBLEM, await response.text()
        data = None if response.status == 204 else await response.json()
        return response.status, data

    async def get(self, path: str, token: str | None = None) -> tuple[int, Any]:
        return await self.call("GET", path, token=token)

    async def post(self, path: str, body: Any = None, token: str | None = None) -> tuple[int, Any]:
        return await self.call("POST", path, {} if body is None else body, token=token)

    async def patch(self, path: str, body: Any) -> tuple[int, Any]:
        return await self.call("PATCH", path, body)

    async def delete(self, path: str) -> tuple[int, Any]:
        return await self.call("DELETE", path)

    async def ok(self, method: str, path: str, body: Any = None, status: int = 200) -> Any:
        got, data = await self.call(method, path, body)
        assert got == status, (method, path, got, data)
        return data

    async def problem(self, method: str, path: str, body: Any, status: int) -> dict[str, Any]:
        got, data = await self.call(method, path, body)
        assert got == status, (method, path, got, data)
        assert data["status"] == status and data["title"] and data["detail"]
        return data


@pytest.fixture
def api(client: TestClient, admin_token: str) -> Api:
    return Api(client, admin_token)


async def add_service(medic: Medic, slug: str, **extra: Any) -> dict[str, Any]:
    data = {"slug": slug, "expectation": {"kind": "interval", "period": 60}, **extra}
    return await medic.services.create(data, actor=ME)


def vault(**config: Any) -> dict[str, Any]:
    return {"channel": "#ops", **config}


async def add_target(api: Api, slug: str, **fields: Any) -> dict[str, Any]:
    body = {"slug": slug, "notifier": "vault", "config": vault(), **fields}
    return await api.ok("POST", TARGETS, body, status=201)


async def stored_config(medic: Medic, slug: str) -> dict[str, Any]:
    async with medic.db.sessions() as session:
        target = await session.scalar(
            select(NotificationTarget).where(NotificationTarget.slug == slug)
        )
    assert target is not None
    return target.config


async def audit_text(medic: Medic) -> str:
    async with medic.db.sessions() as session:
        entries = (await session.scalars(select(AuditEntry).order_by(AuditEntry.id))).all()
    return json.dumps([[e.action, e.before, e.after] for e in entries])


# -- schedules -----------------------------------------------------------------------------------


async def test_schedule_crud_stores_the_canonical_form(api: Api, clock: FakeClock) -> None:
    body = {"slug": "office", "name": "Office hours", "timezone": "Europe/Berlin",
            "weekly": [{"days": ["fri", "mon", "fri"], "start": "09:00", "end": "17:30"},
                       {"days": ["sat"], "start": "22:00", "end": "06:00"}]}
    created = await api.ok("POST", SCHEDULES, body, status=201)
    assert created["weekly"] == [
        {"days": ["mon", "fri"], "start": "09:00", "end": "17:30"},
        {"days": ["sat"], "start": "22:00", "end": "06:00"},
    ]
    assert (created["slug"], created["name"], created["timezone"]) == (
        "office", "Office hours", "Europe/Berlin")
    assert created["created_at"] == isoformat(clock.now())
    assert await api.ok("GET", f"{SCHEDULES}/office") == created

    clock.advance(60)
    updated = await api.ok("PATCH", f"{SCHEDULES}/office",
                           {"timezone": "America/New_York", "weekly": OFFICE})
    assert (updated["timezone"], updated["weekly"], updated["name"]) == (
        "America/New_York", OFFICE, "Office hours")
    assert updated["updated_at"] == isoformat(clock.now())
    listed = await api.ok("GET", SCHEDULES)
    assert listed == {"items": [updated], "next_cursor": None}

    assert await api.ok("DELETE", f"{SCHEDULES}/office", status=204) is None
    await api.problem("GET", f"{SCHEDULES}/office", None, 404)


async def test_schedule_name_defaults_to_its_slug(api: Api) -> None:
    created = await api.ok("POST", SCHEDULES,
                           {"slug": "nights", "timezone": "UTC", "weekly": OFFICE}, status=201)
    assert created["name"] == "nights"


@pytest.mark.parametrize(
    ("body", "field", "needle"),
    [
        ({"slug": "Bad Slug", "timezone": "UTC", "weekly": OFFICE}, "slug", "is not valid"),
        ({"slug": "s", "weekly": OFFICE}, "timezone", "IANA time zone"),
        ({"slug": "s", "timezone": "Europe/Berln", "weekly": OFFICE}, "timezone",
         "'Europe/Berlin'"),
        ({"slug": "s", "timezone": "UTC"}, "weekly", "list of 1 to 50 ranges"),
        ({"slug": "s", "timezone": "UTC", "weekly": [{"days": ["mon"], "start": "25:00",
                                                      "end": "10:00"}]},
         "weekly[0].start", "HH:MM"),
        ({"slug": "s", "timezone": "UTC",
          "weekly": [*OFFICE, {"days": ["someday"], "start": "09:00", "end": "10:00"}]},
         "weekly[1].days[0]", "one of mon, tue, wed, thu, fri, sat, sun, not 'someday'"),
        ({"slug": "s", "timezone": "UTC", "weekly": OFFICE, "owner": "x"}, "owner",
         "unknown field"),
        ({"slug": "s", "timezone": "UTC", "weekly": OFFICE, "name": ""}, "name", "empty"),
    ],
)
async def test_invalid_schedule_is_a_422_naming_the_field(
    api: Api, body: dict[str, Any], field: str, needle: str
) -> None:
    problem = await api.problem("POST", SCHEDULES, body, 422)
    assert problem["field"] == field
    assert needle in problem["detail"]
    assert (await api.ok("GET", SCHEDULES))["items"] == []


async def test_schedule_conflicts_and_unknowns(api: Api) -> None:
    body = {"slug": "office", "timezone": "UTC", "weekly": OFFICE}
    await api.ok("POST", SCHEDULES, body, status=201)
    assert "already exists" in (await api.problem("POST", SCHEDULES, body, 409))["detail"]
    problem = await api.problem("PATCH", f"{SCHEDULES}/office", {"slug": "other"}, 422)
    assert "cannot change" in problem["detail"]
    problem = await api.problem("PATCH", f"{SCHEDULES}/office", {"weekly": []}, 422)
    assert problem["field"] == "weekly"
    for method in ("GET", "PATCH", "DELETE"):
        data = {"name": "x"} if method == "PATCH" else None
        problem = await api.problem(method, f"{SCHEDULES}/nope", data, 404)
        assert "no schedule 'nope'" in problem["detail"]


async def test_deleting_a_schedule_a_target_uses_is_a_409_naming_the_targets(api: Api) -> None:
    await api.ok("POST", SCHEDULES, {"slug": "office", "timezone": "UTC", "weekly": OFFICE},
                 status=201)
    for slug, period in (("day-pager", "working_hours"), ("night-pager", "off_hours")):
        await add_target(api, slug, period=period, schedule="office")
    problem = await api.problem("DELETE", f"{SCHEDULES}/office", None, 409)
    assert "day-pager, night-pager" in problem["detail"]
    await api.ok("GET", f"{SCHEDULES}/office")
    await api.ok("PATCH", f"{TARGETS}/day-pager", {"period": "always"})
    await api.ok("DELETE", f"{TARGETS}/night-pager", status=204)
    await api.ok("DELETE", f"{SCHEDULES}/office", status=204)


async def test_schedules_page_oldest_first(api: Api) -> None:
    for slug in ("s1", "s2", "s3"):
        await api.ok("POST", SCHEDULES, {"slug": slug, "timezone": "UTC", "weekly": OFFICE},
                     status=201)
    first = await api.ok("GET", f"{SCHEDULES}?limit=2")
    second = await api.ok("GET", f"{SCHEDULES}?limit=2&cursor={first['next_cursor']}")
    assert [s["slug"] for s in first["items"]] == ["s1", "s2"]
    assert [s["slug"] for s in second["items"]] == ["s3"]
    assert second["next_cursor"] is None
    assert (await api.problem("GET", f"{SCHEDULES}?cursor=bogus", None, 422))["field"] == "cursor"
    assert (await api.problem("GET", f"{SCHEDULES}?limit=0", None, 422))["field"] == "limit"


# -- escalation policies -------------------------------------------------------------------------


async def test_escalation_policy_crud(api: Api, clock: FakeClock) -> None:
    for slug in ("primary", "secondary", "manager"):
        await add_target(api, slug)
    body = {"slug": "sre", "name": "SRE", "levels": [
        {"after": 300, "targets": ["secondary"]},
        {"after": 1800, "targets": ["manager", "secondary"]},
    ], "repeat_every": 900}
    created = await api.ok("POST", POLICIES, body, status=201)
    assert {k: created[k] for k in body} == body
    assert created["max_reminders"] == 3
    assert created["created_at"] == isoformat(clock.now())
    assert await api.ok("GET", f"{POLICIES}/sre") == created

    clock.advance(5)
    updated = await api.ok("PATCH", f"{POLICIES}/sre",
                           {"levels": [{"after": 60, "targets": ["primary"]}],
                            "repeat_every": None, "max_reminders": 0})
    assert updated["levels"] == [{"after": 60, "targets": ["primary"]}]
    assert (updated["repeat_every"], updated["max_reminders"], updated["name"]) == (None, 0, "SRE")
    assert updated["updated_at"] == isoformat(clock.now())
    assert (await api.ok("GET", POLICIES))["items"] == [updated]

    minimal = await api.ok("POST", POLICIES, {"slug": "quiet"}, status=201)
    assert (minimal["name"], minimal["levels"], minimal["repeat_every"]) == ("quiet", [], None)
    await api.ok("DELETE", f"{POLICIES}/sre", status=204)
    await api.problem("GET", f"{POLICIES}/sre", None, 404)


LEVEL = {"after": 300, "targets": ["primary"]}


@pytest.mark.parametrize(
    ("body", "field", "needle"),
    [
        ({"levels": [{"after": 59, "targets": ["primary"]}]}, "levels[0].after",
         "between 60 and 604800"),
        ({"levels": [{"after": 604801, "targets": ["primary"]}]}, "levels[0].after",
         "between 60 and 604800"),
        ({"levels": [{"after": "300", "targets": ["primary"]}]}, "levels[0].after", "integer"),
        ({"levels": [LEVEL, {"after": 300, "targets": ["primary"]}]}, "levels[1].after",
         "greater than levels[0].after (300)"),
        ({"levels": [LEVEL, {"after": 600, "targets": ["primary", "ghost"]}]},
         "levels[1].targets[1]", "no target 'ghost'"),
        ({"levels": [{"after": 300, "targets": []}]}, "levels[0].targets", "1 to 20"),
        ({"levels": [{"after": 300, "targets": ["primary", "primary"]}]},
         "levels[0].targets[1]", "listed twice"),
        ({"levels": [{"after": 300}]}, "levels[0].targets", "is required"),
        ({"levels": [{"after": 60 * (i + 1), "targets": ["primary"]} for i in range(11)]},
         "levels", "at most 10"),
        ({"levels": LEVEL}, "levels", "list"),
        ({"repeat_every": 59}, "repeat_every", "between 60 and 86400"),
        ({"repeat_every": 86401}, "repeat_every", "between 60 and 86400"),
        ({"max_reminders": 101}, "max_reminders", "between 0 and 100"),
        ({"max_reminders": -1}, "max_reminders", "between 0 and 100"),
        ({"steps": []}, "steps", "unknown field"),
    ],
)
async def test_invalid_escalation_policy_is_a_422_naming_the_field(
    api: Api, body: dict[str, Any], field: str, needle: str
) -> None:
    await add_target(api, "primary")
    problem = await api.problem("POST", POLICIES, {"slug": "sre", **body}, 422)
    assert problem["field"] == field
    assert needle in problem["detail"]
    assert (await api.ok("GET", POLICIES))["items"] == []


async def test_escalation_policy_conflicts(api: Api) -> None:
    await add_target(api, "primary")
    body = {"slug": "sre", "levels": [LEVEL]}
    await api.ok("POST", POLICIES, body, status=201)
    await api.problem("POST", POLICIES, body, 409)
    await api.problem("PATCH", f"{POLICIES}/sre", {"slug": "x"}, 422)
    await api.problem("PATCH", f"{POLICIES}/ghost", {"name": "x"}, 404)
    await api.problem("DELETE", f"{POLICIES}/ghost", None, 404)
    # A target a policy names cannot go while the policy names it.
    problem = await api.problem("DELETE", f"{TARGETS}/primary", None, 409)
    assert "escalation policy(ies) sre" in problem["detail"]
    await api.ok("PATCH", f"{POLICIES}/sre", {"levels": []})
    await api.ok("DELETE", f"{TARGETS}/primary", status=204)


async def test_a_target_named_like_a_levels_key_is_not_mistaken_for_a_reference(
    api: Api,
) -> None:
    for slug in ("after", "targets", "primary"):
        await add_target(api, slug)
    await api.ok("POST", POLICIES, {"slug": "sre", "levels": [LEVEL]}, status=201)
    await api.ok("DELETE", f"{TARGETS}/after", status=204)
    await api.ok("DELETE", f"{TARGETS}/targets", status=204)


async def test_escalation_policies_page_oldest_first(api: Api) -> None:
    for slug in ("p1", "p2", "p3"):
        await api.ok("POST", POLICIES, {"slug": slug}, status=201)
    first = await api.ok("GET", f"{POLICIES}?limit=2")
    second = await api.ok("GET", f"{POLICIES}?limit=2&cursor={first['next_cursor']}")
    assert [p["slug"] for p in first["items"] + second["items"]] == ["p1", "p2", "p3"]
    assert second["next_cursor"] is None


# -- a team's escalation policy ------------------------------------------------------------------


async def test_team_escalation_policy_is_set_shown_and_cleared(api: Api, medic: Medic) -> None:
    await api.ok("POST", POLICIES, {"slug": "sre-policy"}, status=201)
    created = await api.ok("POST", TEAMS, {"slug": "sre", "escalation_policy": "sre-policy"},
                           status=201)
    assert created["escalation_policy"] == "sre-policy"
    plain = await api.ok("POST", TEAMS, {"slug": "web"}, status=201)
    assert plain["escalation_policy"] is None
    assert [t["escalation_policy"] for t in (await api.ok("GET", TEAMS))["items"]] == [
        "sre-policy", None]

    problem = await api.problem("DELETE", f"{POLICIES}/sre-policy", None, 409)
    assert "used by team(s) sre" in problem["detail"]
    assert "escalation_policy" in problem["detail"]

    updated = await api.ok("PATCH", f"{TEAMS}/web", {"escalation_policy": "sre-policy"})
    assert updated["escalation_policy"] == "sre-policy"
    assert (await api.ok("GET", f"{TEAMS}/web"))["escalation_policy"] == "sre-policy"
    renamed = await api.ok("PATCH", f"{TEAMS}/web", {"name": "Web"})
    assert renamed["escalation_policy"] == "sre-policy", "an unrelated change keeps the policy"
    for team in ("sre", "web"):
        cleared = await api.ok("PATCH", f"{TEAMS}/{team}", {"escalation_policy": None})
        assert cleared["escalation_policy"] is None
    await api.ok("DELETE", f"{POLICIES}/sre-policy", status=204)

    audit = await audit_text(medic)
    assert '"escalation_policy": "sre-policy"' in audit


@pytest.mark.parametrize(
    ("value", "needle"),
    [("ghost", "no escalation policy 'ghost'"), ("Not A Slug", "is not valid"), (7, "not valid")],
)
async def test_unknown_team_escalation_policy_is_a_422(
    api: Api, value: object, needle: str
) -> None:
    problem = await api.problem("POST", TEAMS, {"slug": "sre", "escalation_policy": value}, 422)
    assert problem["field"] == "escalation_policy" and needle in problem["detail"]
    await api.ok("POST", TEAMS, {"slug": "sre"}, status=201)
    problem = await api.problem("PATCH", f"{TEAMS}/sre", {"escalation_policy": value}, 422)
    assert problem["field"] == "escalation_policy"


# -- targets: create, read, defaults -------------------------------------------------------------


async def test_target_defaults_and_owners(api: Api, medic: Medic, clock: FakeClock) -> None:
    await api.ok("POST", TEAMS, {"slug": "sre"}, status=201)
    await add_service(medic, "billing")
    fallback = await add_target(api, "fallback")
    assert {k: fallback[k] for k in ("name", "notifier", "config", "team", "service",
                                      "min_priority", "period", "schedule", "enabled")} == {
        "name": "fallback", "notifier": "vault", "config": {"channel": "#ops"}, "team": None,
        "service": None, "min_priority": "p5", "period": "always", "schedule": None,
        "enabled": True,
    }
    assert fallback["created_at"] == fallback["updated_at"] == isoformat(clock.now())
    team_owned = await add_target(api, "sre-chat", team="sre", min_priority="p2", name="SRE")
    assert (team_owned["team"], team_owned["service"], team_owned["min_priority"],
            team_owned["name"]) == ("sre", None, "p2", "SRE")
    override = await add_target(api, "billing-pager", service="billing", enabled=False)
    assert (override["team"], override["service"], override["enabled"]) == (
        None, "billing", False)
    assert await api.ok("GET", f"{TARGETS}/billing-pager") == override
    await api.ok("POST", SCHEDULES, {"slug": "office", "timezone": "UTC", "weekly": OFFICE},
                 status=201)
    timed = await add_target(api, "day", period="working_hours", schedule="office")
    assert (timed["period"], timed["schedule"]) == ("working_hours", "office")

    problem = await api.problem("POST", TARGETS, {"slug": "day", "notifier": "vault",
                                                  "config": vault()}, 409)
    assert "already exists" in problem["detail"]
    for method in ("GET", "PATCH", "DELETE"):
        data = {"name": "x"} if method == "PATCH" else None
        problem = await api.problem(method, f"{TARGETS}/ghost", data, 404)
        assert "no target 'ghost'" in problem["detail"]


async def test_deleting_an_owner_deletes_its_targets(api: Api, medic: Medic) -> None:
    await add_service(medic, "billing")
    await add_target(api, "billing-pager", service="billing")
    await medic.services.delete("billing", actor=ME)
    await api.problem("GET", f"{TARGETS}/billing-pager", None, 404)


@pytest.mark.parametrize(
    ("body", "field", "needle"),
    [
        ({"slug": "BAD"}, "slug", "is not valid"),
        ({"notifier": None}, "notifier", "must be a string: a loaded notifier"),
        ({"notifier": "smoke-signals"}, "notifier", "the loaded notifiers are "),
        ({"config": "channel=#ops"}, "config", "config must be a JSON object"),
        ({"config": {}}, "config", "config: 'channel' is a required property"),
        ({"config": vault(retries=7)}, "config.retries", "7 is greater than the maximum of 5"),
        ({"config": vault(login={"user": 5})}, "config.login.user", "5 is not of type 'string'"),
        ({"config": vault(colour="red")}, "config", "Additional properties are not allowed"),
        ({"config": {"channel": "ops"}}, "config.channel", "does not match '^#'"),
        ({"config": {"channel": "#archived"}}, "config", "#archived is archived"),
        ({"team": "ghosts"}, "team", "no team 'ghosts': create it first"),
        ({"service": "ghost"}, "service", "no service 'ghost': create it first"),
        ({"team": "sre", "service": "billing"}, "service", "not both"),
        ({"min_priority": "p6"}, "min_priority", "one of p1, p2, p3, p4, p5"),
        ({"min_priority": "P1"}, "min_priority", "one of p1, p2, p3, p4, p5"),
        ({"period": "weekends"}, "period", "one of always, working_hours, off_hours"),
        ({"period": "working_hours"}, "schedule", "needs a schedule"),
        ({"period": "off_hours", "schedule": "ghost"}, "schedule", "no schedule 'ghost'"),
        ({"schedule": "office"}, "schedule", "period 'always' takes no schedule"),
        ({"enabled": "yes"}, "enabled", "true or false"),
        ({"name": " "}, "name", "must not be empty"),
        ({"owner": "sre"}, "owner", "unknown field"),
    ],
)
async def test_invalid_target_is_a_422_naming_the_field(
    api: Api, medic: Medic, body: dict[str, Any], field: str, needle: str
) -> None:
    await api.ok("POST", TEAMS, {"slug": "sre"}, status=201)
    await add_service(medic, "billing")
    await api.ok("POST", SCHEDULES, {"slug": "office", "timezone": "UTC", "weekly": OFFICE},
                 status=201)
    full = {"slug": "pager", "notifier": "vault", "config": vault(), **body}
    problem = await api.problem("POST", TARGETS, full, 422)
    assert problem["field"] == field, problem
    assert needle in problem["detail"], problem
    assert (await api.ok("GET", TARGETS))["items"] == []


async def test_unknown_notifier_lists_the_loaded_ones(api: Api) -> None:
    problem = await api.problem("POST", TARGETS, {"slug": "x", "notifier": "pigeon"}, 422)
    loaded = problem["detail"].split("the loaded notifiers are ")[1].split(" (")[0].split(", ")
    assert {"log", "vault"} <= set(loaded)
    assert loaded == sorted(loaded)
    problem = await api.problem("POST", TARGETS, {"slug": "x"}, 422)
    assert problem["field"] == "notifier" and "notifier is required" in problem["detail"]


# -- targets: secrets ----------------------------------------------------------------------------


async def test_secrets_are_masked_in_every_answer_and_in_the_audit_log(
    api: Api, medic: Medic
) -> None:
    config = vault(token=TOKEN, headers={"Authorization": HEADER},
                   login={"user": "medic", "password": PASSWORD}, retries=2, api_key=API_KEY,
                   signing={"key-1": SIGNING_KEY, "algorithm": "sha256"})
    created = await add_target(api, "chat", config=config)
    masked = {"channel": "#ops", "token": MASK, "headers": MASK,
              "login": {"user": "medic", "password": MASK}, "retries": 2, "api_key": MASK,
              "signing": {"key-1": MASK, "algorithm": "sha256"}}
    assert created["config"] == masked
    assert (await api.ok("GET", f"{TARGETS}/chat"))["config"] == masked
    assert (await api.ok("GET", TARGETS))["items"][0]["config"] == masked
    updated = await api.ok("PATCH", f"{TARGETS}/chat", {"name": "Chat"})
    assert updated["config"] == masked
    assert await stored_config(medic, "chat") == config

    await api.ok("DELETE", f"{TARGETS}/chat", status=204)
    audit = await audit_text(medic)
    assert "target.create" in audit and "target.update" in audit and "target.delete" in audit
    for secret in (TOKEN, HEADER, PASSWORD, API_KEY, SIGNING_KEY):
        assert secret not in audit
    assert MASK in audit


async def test_a_masked_secret_sent_back_keeps_the_stored_value(api: Api, medic: Medic) -> None:
    config = vault(token=TOKEN, headers={"X-Key": HEADER},
                   login={"user": "medic", "password": PASSWORD}, api_key=API_KEY,
                   signing={"key-1": SIGNING_KEY})
    await add_target(api, "chat", config=config)
    # A client reads the target and sends back what it read, changing one thing.
    shown = await api.ok("GET", f"{TARGETS}/chat")
    writable = {k: shown[k] for k in ("name", "notifier", "config", "team", "service",
                                      "min_priority", "period", "schedule", "enabled")}
    writable["config"] = {**shown["config"], "channel": "#sre"}
    round_tripped = await api.ok("PATCH", f"{TARGETS}/chat", writable)
    assert round_tripped["config"]["channel"] == "#sre"
    assert await stored_config(medic, "chat") == {**config, "channel": "#sre"}

    # A real value replaces the secret; leaving a field out removes it (config is replaced).
    await api.ok("PATCH", f"{TARGETS}/chat", {"config": {**shown["config"],
                                                         "token": "tok-brand-new-value"}})
    assert (await stored_config(medic, "chat"))["token"] == "tok-brand-new-value"
    await api.ok("PATCH", f"{TARGETS}/chat", {"config": vault()})
    assert await stored_config(medic, "chat") == vault()

    # A mask where nothing is stored cannot be resolved.
    problem = await api.problem("PATCH", f"{TARGETS}/chat", {"config": vault(token=MASK)}, 422)
    assert problem["field"] == "config.token" and "none is stored" in problem["detail"]
    problem = await api.problem("POST", TARGETS, {"slug": "new", "notifier": "vault",
                                                  "config": vault(token=MASK)}, 422)
    assert problem["field"] == "config.token"
    # The mask means "the stored secret" only where the schema says there is a secret.
    plain = await api.ok("PATCH", f"{TARGETS}/chat", {"config": {"channel": "#" + MASK}})
    assert plain["config"] == {"channel": "#" + MASK}


async def test_validation_messages_never_quote_a_secret(api: Api, medic: Medic) -> None:
    short = "tok-short"  # under the schema's minLength, so the schema error would quote it
    problem = await api.problem("POST", TARGETS, {"slug": "chat", "notifier": "vault",
                                                  "config": vault(token=short)}, 422)
    assert problem["field"] == "config.token"
    assert short not in problem["detail"] and "minLength 12" in problem["detail"]

    user_token = "xoxp-1234567890-user"
    problem = await api.problem("POST", TARGETS, {"slug": "chat", "notifier": "vault",
                                                  "config": vault(token=user_token)}, 422)
    assert problem["field"] == "config"
    assert user_token not in problem["detail"] and "quotes a secret" in problem["detail"]
    # A non-secret value is quoted, which is what makes the message useful.
    problem = await api.problem("POST", TARGETS, {"slug": "chat", "notifier": "vault",
                                                  "config": vault(retries=9)}, 422)
    assert "9 is greater than the maximum of 5" in problem["detail"]
    assert "xoxp" not in await audit_text(medic)


async def test_webhook_target_secrets_are_masked_and_its_own_checks_apply(api: Api) -> None:
    body = {"slug": "hook", "notifier": "webhook",
            "config": {"url": "https://hooks.example.com/medic", "secret": "s" * 32,
                       "headers": {"Authorization": HEADER}}}
    created = await api.ok("POST", TARGETS, body, status=201)
    assert created["config"] == {"url": "https://hooks.example.com/medic", "secret": MASK,
                                 "headers": MASK}
    loopback = {**body, "slug": "local",
                "config": {"url": "http://127.0.0.1:9/hook", "secret": "s" * 32}}
    problem = await api.problem("POST", TARGETS, loopback, 422)
    assert problem["field"] == "config" and "webhook" in problem["detail"]
    problem = await api.problem("POST", TARGETS, {**body, "slug": "short",
                                                  "config": {"url": "https://x.example",
                                                             "secret": "tiny"}}, 422)
    assert problem["field"] == "config.secret" and "tiny" not in problem["detail"]


# -- targets: update merges, then validates the whole -----------------------------------------


async def test_target_update_validates_the_merged_result(api: Api, medic: Medic) -> None:
    await api.ok("POST", TEAMS, {"slug": "sre"}, status=201)
    await add_service(medic, "billing")
    await api.ok("POST", SCHEDULES, {"slug": "office", "timezone": "UTC", "weekly": OFFICE},
                 status=201)
    await add_target(api, "pager", team="sre", config=vault(token=TOKEN))
    path = f"{TARGETS}/pager"

    problem = await api.problem("PATCH", path, {"period": "working_hours"}, 422)
    assert problem["field"] == "schedule"
    timed = await api.ok("PATCH", path, {"period": "working_hours", "schedule": "office"})
    assert (timed["period"], timed["schedule"]) == ("working_hours", "office")
    off = await api.ok("PATCH", path, {"period": "off_hours"})
    assert (off["period"], off["schedule"]) == ("off_hours", "office"), "the schedule stays"
    problem = await api.problem("PATCH", path, {"schedule": None}, 422)
    assert problem["field"] == "schedule" and "needs a schedule" in problem["detail"]
    problem = await api.problem("PATCH", path, {"period": "always", "schedule": "office"}, 422)
    assert problem["field"] == "schedule"
    always = await api.ok("PATCH", path, {"period": "always"})
    assert (always["period"], always["schedule"]) == ("always", None), "always drops it"

    moved = await api.ok("PATCH", path, {"service": "billing"})
    assert (moved["team"], moved["service"]) == (None, "billing"), "one owner at a time"
    back = await api.ok("PATCH", path, {"team": "sre"})
    assert (back["team"], back["service"]) == ("sre", None)
    problem = await api.problem("PATCH", path, {"team": "sre", "service": "billing"}, 422)
    assert problem["field"] == "service"
    fallback = await api.ok("PATCH", path, {"team": None})
    assert (fallback["team"], fallback["service"]) == (None, None)

    # The stored configuration is checked against a new notifier (log allows only "level").
    problem = await api.problem("PATCH", path, {"notifier": "log"}, 422)
    assert problem["field"] == "config" and "log notifier" in problem["detail"]
    # A mask cannot carry a secret over to another notifier.
    problem = await api.problem("PATCH", path, {"notifier": "webhook", "config": {
        "url": "https://hooks.example.com/x", "secret": MASK}}, 422)
    assert problem["field"] == "config.secret"
    as_log = await api.ok("PATCH", path, {"notifier": "log", "config": {"level": "ERROR"}})
    assert (as_log["notifier"], as_log["config"]) == ("log", {"level": "ERROR"})
    disabled = await api.ok("PATCH", path, {"enabled": False, "min_priority": "p1"})
    assert (disabled["enabled"], disabled["min_priority"]) == (False, "p1")
    problem = await api.problem("PATCH", path, {"slug": "renamed"}, 422)
    assert "cannot change" in problem["detail"]
    assert (await api.ok("GET", path))["notifier"] == "log"


# -- targets: listing ----------------------------------------------------------------------------


async def test_targets_list_filters_and_pages(api: Api, medic: Medic) -> None:
    await api.ok("POST", TEAMS, {"slug": "sre"}, status=201)
    await api.ok("POST", TEAMS, {"slug": "web"}, status=201)
    await add_service(medic, "billing")
    await add_target(api, "t1", team="sre")
    await add_target(api, "t2", team="sre", enabled=False)
    await add_target(api, "t3", team="web")
    await add_target(api, "t4", service="billing")
    await api.ok("POST", TARGETS, {"slug": "t5", "notifier": "log"}, status=201)

    async def slugs(query: str) -> list[str]:
        return [t["slug"] for t in (await api.ok("GET", f"{TARGETS}?{query}"))["items"]]

    assert await slugs("") == ["t1", "t2", "t3", "t4", "t5"]
    assert await slugs("team=sre") == ["t1", "t2"]
    assert await slugs("team=sre&enabled=true") == ["t1"]
    assert await slugs("enabled=false") == ["t2"]
    assert await slugs("service=billing") == ["t4"]
    assert await slugs("notifier=log") == ["t5"]
    assert await slugs("team=nobody") == []
    listed = (await api.ok("GET", f"{TARGETS}?service=billing"))["items"][0]
    assert listed == await api.ok("GET", f"{TARGETS}/t4")

    first = await api.ok("GET", f"{TARGETS}?limit=2")
    second = await api.ok("GET", f"{TARGETS}?limit=2&cursor={first['next_cursor']}")
    third = await api.ok("GET", f"{TARGETS}?limit=2&cursor={second['next_cursor']}")
    assert [t["slug"] for t in first["items"] + second["items"] + third["items"]] == [
        "t1", "t2", "t3", "t4", "t5"]
    assert third["next_cursor"] is None
    more = await api.ok("GET", f"{TARGETS}?team=sre&limit=1")
    rest = await api.ok("GET", f"{TARGETS}?team=sre&limit=1&cursor={more['next_cursor']}")
    assert [t["slug"] for t in more["items"] + rest["items"]] == ["t1", "t2"]

    for query, field in (("enabled=maybe", "enabled"), ("team=Not%20A%20Slug", "team"),
                         ("limit=501", "limit"), ("cursor=xyz", "cursor")):
        assert (await api.problem("GET", f"{TARGETS}?{query}", None, 422))["field"] == field


# -- targets: test and check (through the delivery service) ------------------------------------


async def test_test_and_check_call_the_delivery_service(
    api: Api, medic: Medic, delivery: DeliveryStandIn
) -> None:
    await add_target(api, "chat")
    result = await api.ok("POST", f"{TARGETS}/chat/test")
    assert result == {"target": "chat", "notifier": "vault", "ok": True, "retryable": False,
                      "error": None, "response_code": 200, "duration_ms": 1.5}
    assert delivery.tested == ["chat"]
    assert await api.ok("GET", f"{TARGETS}/chat/check") == {
        "status": "degraded", "detail": "chat: token expires in 3 days"}
    assert "no target 'ghost'" in (
        await api.problem("POST", f"{TARGETS}/ghost/test", None, 404))["detail"]

    _, reader = await medic.keys.create(name="reader", scopes=["read"], actor=ME)
    status, _ = await api.get(f"{TARGETS}/chat/check", token=reader)
    assert status == 200
    status, _ = await api.post(f"{TARGETS}/chat/test", token=reader)
    assert status == 403
    assert delivery.tested == ["chat"]


async def test_reads_need_read_and_changes_need_admin(api: Api, medic: Medic) -> None:
    _, writer = await medic.keys.create(name="writer", scopes=["write"], actor=ME)
    for path in (SCHEDULES, POLICIES, TARGETS):
        status, _ = await api.get(path, token=writer)
        assert status == 200
        status, problem = await api.post(path, {"slug": "x"}, token=writer)
        assert status == 403 and "'admin'" in problem["detail"]
