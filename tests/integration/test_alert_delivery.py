"""Alert delivery through the outbox: routing, escalation, reminders, retries, breaker, re-drive.

The clock is injected and the delivery service is stepped by hand (``run_once``), so timing is
exact; targets are rows, the notifier is a plugin that records what it is asked to send.
"""

from __future__ import annotations

import types
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import select

from conftest import make_settings
from medic_core.app import Medic
from medic_core.audit import Actor
from medic_core.clock import FakeClock
from medic_core.errors import Conflict
from medic_core.heartbeats import HeartbeatIn
from medic_core.notify.router import _Target
from medic_core.plugins import hookimpl
from medic_core.plugins.interfaces import DeliveryError, Notification
from medic_core.store.models import (
    Delivery,
    EscalationPolicy,
    NotificationTarget,
    Schedule,
    Service,
    Team,
)
from medic_core.validation import PRIORITIES

ME = Actor("test")


class Channel:
    """A notifier that records what it sends and fails on demand."""

    name = "channel"
    config_schema: dict[str, Any] = {}

    def __init__(self) -> None:
        self.sent: list[Notification] = []
        self.failures: list[Exception] = []

    async def send(self, notification: Notification) -> dict[str, Any]:
        if self.failures:
            raise self.failures.pop(0)
        self.sent.append(notification)
        return {"messages": len(self.sent), "first": notification.kind}

    def log(self) -> list[tuple[str, str, int]]:
        """(kind, target, alert id) per notification, in order."""
        return [(n.kind, n.target, n.alert["id"]) for n in self.sent]


@pytest.fixture
async def wired(
    db_url: str, tmp_path: Path, clock: FakeClock
) -> AsyncIterator[tuple[Medic, Channel]]:
    channel = Channel()
    plugin = types.SimpleNamespace(medic_notifiers=hookimpl(lambda: [channel]))
    app = Medic(
        make_settings(
            db_url,
            tmp_path,
            delivery_backoff=10.0,
            delivery_backoff_max=600.0,
            delivery_max_attempts=4,
            breaker_failures=100,
        ),
        clock=clock,
        plugins=[("test-channel", plugin)],
    )
    await app.start(monitor=False)
    try:
        yield app, channel
    finally:
        await app.stop()


async def add_team(medic: Medic, slug: str, policy: str | None = None) -> int:
    async with medic.db.transaction() as session:
        policy_id = None
        if policy is not None:
            policy_id = await session.scalar(
                select(EscalationPolicy.id).where(EscalationPolicy.slug == policy)
            )
        team = Team(
            slug=slug,
            name=slug,
            escalation_policy_id=policy_id,
            created_at=medic.clock.now(),
            updated_at=medic.clock.now(),
        )
        session.add(team)
        await session.flush()
        return team.id


async def add_target(
    medic: Medic,
    slug: str,
    *,
    team: str | None = None,
    service: str | None = None,
    min_priority: str = "p5",
    period: str = "always",
    schedule: str | None = None,
) -> None:
    async with medic.db.transaction() as session:

        async def id_of(model: Any, value: str | None) -> int | None:
            if value is None:
                return None
            return await session.scalar(select(model.id).where(model.slug == value))

        session.add(
            NotificationTarget(
                slug=slug,
                name=slug,
                notifier="channel",
                config={},
                team_id=await id_of(Team, team),
                service_id=await id_of(Service, service),
                min_priority=min_priority,
                period=period,
                schedule_id=await id_of(Schedule, schedule),
                enabled=True,
                created_at=medic.clock.now(),
                updated_at=medic.clock.now(),
            )
        )


async def add_policy(medic: Medic, slug: str, levels: list[dict[str, Any]], **extra: Any) -> None:
    async with medic.db.transaction() as session:
        session.add(
            EscalationPolicy(
                slug=slug,
                name=slug,
                levels=levels,
                created_at=medic.clock.now(),
                updated_at=medic.clock.now(),
                **extra,
            )
        )


async def add_schedule(medic: Medic, slug: str, zone: str, weekly: list[dict[str, Any]]) -> None:
    async with medic.db.transaction() as session:
        session.add(
            Schedule(
                slug=slug,
                name=slug,
                timezone=zone,
                weekly=weekly,
                created_at=medic.clock.now(),
                updated_at=medic.clock.now(),
            )
        )


async def add_service(medic: Medic, slug: str, **extra: Any) -> None:
    await medic.services.create(
        {"slug": slug, "expectation": {"kind": "interval", "period": 60}, **extra}, actor=ME
    )


async def fail(medic: Medic, slug: str) -> int:
    """A fail signal opens a ``failed`` alert at once; return its id."""
    await medic.writer.submit(HeartbeatIn(slug, "fail", exit_code=1))
    page = await medic.alerts.list(service=slug, unresolved=True)
    return int(page.items[0]["id"])


async def deliveries(medic: Medic) -> list[Delivery]:
    async with medic.db.sessions() as session:
        return list((await session.scalars(select(Delivery).order_by(Delivery.id))).all())


# -- routing -------------------------------------------------------------------------------------


async def test_service_override_then_team_then_fallback(
    wired: tuple[Medic, Channel],
) -> None:
    medic, channel = wired
    await add_team(medic, "db")
    await add_service(medic, "orders", team="db")
    await add_service(medic, "billing", team="db")
    await add_service(medic, "lonely")
    await add_target(medic, "db-chat", team="db")
    await add_target(medic, "orders-pager", service="orders")
    await add_target(medic, "catch-all")
    orders, billing, lonely = (
        await fail(medic, "orders"),
        await fail(medic, "billing"),
        await fail(medic, "lonely"),
    )
    result = await medic.delivery.run_once()
    assert result.sent == 3
    assert sorted(channel.log()) == sorted(
        [
            ("opened", "orders-pager", orders),  # the override replaces the team's targets
            ("opened", "db-chat", billing),
            ("opened", "catch-all", lonely),  # no team: the fallback
        ]
    )


async def test_min_priority_keeps_less_severe_alerts_away(wired: tuple[Medic, Channel]) -> None:
    medic, channel = wired
    await add_service(medic, "batch", priority="p4")
    await add_service(medic, "api", priority="p2")
    await add_target(medic, "pager", min_priority="p3")
    await fail(medic, "batch")
    api = await fail(medic, "api")
    await medic.delivery.run_once()
    assert channel.log() == [("opened", "pager", api)]


@given(st.sampled_from(PRIORITIES), st.sampled_from(PRIORITIES))
def test_priority_filter_is_an_order(alert: str, minimum: str) -> None:
    target = _Target(1, "t", None, None, PRIORITIES.index(minimum), "always", None)
    assert target.accepts(alert, datetime.now().astimezone()) == (alert <= minimum)


async def test_working_and_off_hours_follow_the_schedule_in_its_zone(
    wired: tuple[Medic, Channel], clock: FakeClock
) -> None:
    medic, channel = wired
    await add_schedule(
        medic,
        "berlin-office",
        "Europe/Berlin",
        [{"days": ["mon", "tue", "wed", "thu", "fri"], "start": "09:00", "end": "17:00"}],
    )
    await add_service(medic, "shop")
    await add_target(medic, "office-chat", period="working_hours", schedule="berlin-office")
    await add_target(medic, "night-pager", period="off_hours", schedule="berlin-office")
    # Friday 27 March 2026 15:30 UTC = 16:30 in Berlin (CET): working hours.
    clock.set(datetime.fromisoformat("2026-03-27T15:30:00+00:00"))
    first = await fail(medic, "shop")
    await medic.delivery.run_once()
    await medic.alerts.resolve(first, actor=ME)
    await medic.delivery.run_once()
    # Monday 30 March 2026 07:30 UTC = 09:30 in Berlin, but only since DST began on Sunday
    # (CEST, UTC+2): working hours. A week earlier the same UTC time was 08:30: off hours.
    clock.set(datetime.fromisoformat("2026-03-30T07:30:00+00:00"))
    second = await fail(medic, "shop")
    await medic.delivery.run_once()
    await medic.alerts.resolve(second, actor=ME)
    clock.set(datetime.fromisoformat("2026-03-23T07:30:00+00:00"))
    await medic.delivery.run_once()
    third = await fail(medic, "shop")
    await medic.delivery.run_once()
    opened = [(target, alert) for kind, target, alert in channel.log() if kind == "opened"]
    assert opened == [
        ("office-chat", first),
        ("office-chat", second),
        ("night-pager", third),
    ]


async def test_night_shift_crossing_midnight(
    wired: tuple[Medic, Channel], clock: FakeClock
) -> None:
    medic, channel = wired
    await add_schedule(
        medic,
        "night",
        "America/New_York",
        [{"days": ["sun"], "start": "22:00", "end": "06:00"}],
    )
    await add_service(medic, "etl")
    await add_target(medic, "night-ops", period="working_hours", schedule="night")
    # Monday 2 Nov 2026 05:30 in New York (EST, after the fall-back on Sunday) = 10:30 UTC:
    # inside Sunday's 22:00-06:00 shift.
    clock.set(datetime.fromisoformat("2026-11-02T10:30:00+00:00"))
    inside = await fail(medic, "etl")
    await medic.delivery.run_once()
    await medic.alerts.resolve(inside, actor=ME)
    clock.set(datetime.fromisoformat("2026-11-02T11:30:00+00:00"))  # 06:30: the shift is over
    await fail(medic, "etl")
    await medic.delivery.run_once()
    assert [(k, a) for k, _, a in channel.log() if k == "opened"] == [("opened", inside)]


# -- escalation and reminders -------------------------------------------------------------------


async def test_escalation_and_reminders_follow_the_policy_until_acknowledged(
    wired: tuple[Medic, Channel], clock: FakeClock
) -> None:
    medic, channel = wired
    await add_target(medic, "manager")
    await add_policy(
        medic,
        "standard",
        [{"after": 300, "targets": ["manager"]}],
        repeat_every=600,
        max_reminders=2,
    )
    await add_team(medic, "web", policy="standard")
    await add_target(medic, "web-chat", team="web")
    await add_service(medic, "site", team="web")
    alert = await fail(medic, "site")
    await medic.delivery.run_once()
    assert channel.log() == [("opened", "web-chat", alert)]
    clock.advance(299)
    await medic.delivery.run_once()
    assert len(channel.sent) == 1  # not yet
    clock.advance(1)
    await medic.delivery.run_once()
    assert channel.log()[1:] == [("escalated", "manager", alert)]
    clock.advance(300)  # 600 s: the first reminder, to everyone paged so far
    await medic.delivery.run_once()
    assert sorted(channel.log()[2:]) == [
        ("reminder", "manager", alert),
        ("reminder", "web-chat", alert),
    ]
    clock.advance(100)
    await medic.alerts.acknowledge(alert, actor=ME)
    await medic.delivery.run_once()
    assert sorted(channel.log()[4:]) == [
        ("acknowledged", "manager", alert),
        ("acknowledged", "web-chat", alert),
    ]
    clock.advance(3600)  # acknowledged: no more reminders
    result = await medic.delivery.run_once()
    assert result.claimed == 0 and len(channel.sent) == 6


async def test_reminders_stop_at_the_limit(wired: tuple[Medic, Channel], clock: FakeClock) -> None:
    medic, channel = wired
    await add_policy(medic, "nag", [], repeat_every=60, max_reminders=2)
    await add_team(medic, "ops", policy="nag")
    await add_target(medic, "ops-chat", team="ops")
    await add_service(medic, "queue", team="ops")
    await fail(medic, "queue")
    for _ in range(6):
        await medic.delivery.run_once()
        clock.advance(60)
    assert [kind for kind, _, _ in channel.log()] == ["opened", "reminder", "reminder"]


async def test_resolution_updates_the_same_message(wired: tuple[Medic, Channel]) -> None:
    medic, channel = wired
    await add_service(medic, "api")
    await add_target(medic, "chat")
    alert = await fail(medic, "api")
    await medic.delivery.run_once()
    await medic.alerts.resolve(alert, actor=ME)
    await medic.delivery.run_once()
    opened, resolved = channel.sent
    assert opened.state == {} and opened.dedup_key == resolved.dedup_key == f"medic-alert-{alert}"
    assert resolved.kind == "resolved" and resolved.alert["state"] == "resolved"
    assert resolved.state == {"messages": 1, "first": "opened"}  # what the opening returned
    assert opened.links["alert"].endswith(f"/alerts/{alert}")


async def test_suppressed_alert_is_delivered_only_when_released(
    wired: tuple[Medic, Channel], clock: FakeClock
) -> None:
    medic, channel = wired
    await add_service(medic, "job")
    await add_target(medic, "chat")
    await medic.services.mute("job", until=None, reason="deploy", actor=ME)
    alert = await fail(medic, "job")
    await medic.delivery.run_once()
    assert channel.sent == [] and await deliveries(medic) == []
    await medic.services.unmute("job", actor=ME)
    await medic.monitor.run_once()  # releases the alert
    await medic.delivery.run_once()
    assert channel.log() == [("opened", "chat", alert)]


# -- retries, ordering, breaker, re-drive ---------------------------------------------------------


async def test_retries_back_off_with_jitter_then_deliver_once(
    wired: tuple[Medic, Channel], clock: FakeClock
) -> None:
    medic, channel = wired
    await add_service(medic, "api")
    await add_target(medic, "chat")
    channel.failures = [ConnectionError("refused"), DeliveryError("503", status_code=503)]
    await fail(medic, "api")
    start = clock.now()
    first = await medic.delivery.run_once()
    assert first.retrying == 1
    (delivery,) = await deliveries(medic)
    assert delivery.attempts == 1 and delivery.last_error == "ConnectionError: refused"
    assert (
        start + timedelta(seconds=10) <= delivery.next_attempt_at <= start + timedelta(seconds=10)
    )
    clock.advance(10)
    second = await medic.delivery.run_once()
    assert second.retrying == 1
    (delivery,) = await deliveries(medic)
    # The second delay is drawn from [base, 2 * base].
    delay = (delivery.next_attempt_at - clock.now()).total_seconds()
    assert 10 <= delay <= 20 and delivery.response_code == 503
    clock.advance(9)
    assert (await medic.delivery.run_once()).claimed == 0  # not yet due
    clock.advance(11)
    assert (await medic.delivery.run_once()).sent == 1
    (delivery,) = await deliveries(medic)
    assert delivery.status == "sent" and delivery.attempts == 3 and len(channel.sent) == 1


async def test_retry_after_from_the_receiver_is_honoured(
    wired: tuple[Medic, Channel], clock: FakeClock
) -> None:
    medic, channel = wired
    await add_service(medic, "api")
    await add_target(medic, "chat")
    channel.failures = [DeliveryError("slow down", status_code=429, retry_after=120)]
    await fail(medic, "api")
    await medic.delivery.run_once()
    (delivery,) = await deliveries(medic)
    assert delivery.next_attempt_at == clock.now() + timedelta(seconds=120)


async def test_permanent_error_fails_at_once_and_redrive_sends_it(
    wired: tuple[Medic, Channel], clock: FakeClock
) -> None:
    medic, channel = wired
    await add_service(medic, "api")
    await add_target(medic, "chat")
    channel.failures = [DeliveryError("channel_not_found", retryable=False)]
    await fail(medic, "api")
    result = await medic.delivery.run_once()
    assert result.failed == 1
    page = await medic.delivery.list(status="failed")
    (failed,) = page.items
    assert failed["last_error"] == "channel_not_found" and failed["target"] == "chat"
    redriven = await medic.delivery.redrive(failed["id"], actor=ME)
    assert redriven["status"] == "pending" and redriven["attempts"] == 0
    with pytest.raises(Conflict):
        await medic.delivery.redrive(failed["id"], actor=ME)  # only failed ones
    assert (await medic.delivery.run_once()).sent == 1
    assert (await medic.delivery.get(failed["id"]))["status"] == "sent"


async def test_attempts_run_out(wired: tuple[Medic, Channel], clock: FakeClock) -> None:
    medic, channel = wired
    await add_service(medic, "api")
    await add_target(medic, "chat")
    channel.failures = [ConnectionError("down")] * 4
    await fail(medic, "api")
    for _ in range(4):
        await medic.delivery.run_once()
        clock.advance(700)
    (delivery,) = await deliveries(medic)
    assert delivery.status == "failed" and delivery.attempts == 4
    assert await medic.delivery.redrive_failed(target="chat", actor=ME) == 1
    assert (await medic.delivery.run_once()).sent == 1


async def test_resolution_waits_for_the_opening_to_the_same_target(
    wired: tuple[Medic, Channel], clock: FakeClock
) -> None:
    medic, channel = wired
    await add_service(medic, "api")
    await add_target(medic, "chat")
    channel.failures = [ConnectionError("down")]
    alert = await fail(medic, "api")
    await medic.delivery.run_once()  # the opening fails
    await medic.alerts.resolve(alert, actor=ME)
    clock.advance(1)
    assert (await medic.delivery.run_once()).claimed == 0  # resolved may not overtake opened
    clock.advance(600)
    await medic.delivery.run_once()
    await medic.delivery.run_once()
    assert [kind for kind, _, _ in channel.log()] == ["opened", "resolved"]


async def test_breaker_holds_a_failing_target_without_spending_attempts(
    db_url: str, tmp_path: Path, clock: FakeClock
) -> None:
    channel = Channel()
    plugin = types.SimpleNamespace(medic_notifiers=hookimpl(lambda: [channel]))
    medic = Medic(
        make_settings(
            db_url, tmp_path, delivery_backoff=1.0, breaker_failures=2, breaker_cooldown=3600.0
        ),
        clock=clock,
        plugins=[("test-channel", plugin)],
    )
    await medic.start(monitor=False)
    try:
        await add_service(medic, "api")
        await add_service(medic, "web")
        await add_target(medic, "chat")
        channel.failures = [ConnectionError("down")] * 2
        await fail(medic, "api")
        await fail(medic, "web")
        result = await medic.delivery.run_once()  # both fail: the breaker opens
        assert result.retrying == 2
        clock.advance(5)
        held = await medic.delivery.run_once()
        assert held.deferred == 2 and held.claimed == 0
        attempts = [d.attempts for d in await deliveries(medic)]
        assert attempts == [1, 1]
        opened = medic.metrics.registry.get_sample_value(
            "medic_delivery_breaker_opened_total", {"target": "chat"}
        )
        assert opened == 1
    finally:
        await medic.stop()


# -- API, connection tests and readiness ----------------------------------------------------------


@pytest.fixture
async def api(wired: tuple[Medic, Channel]) -> AsyncIterator[tuple[Any, dict[str, str]]]:
    from aiohttp.test_utils import TestClient, TestServer

    from medic_core.server.http.app import build_app

    medic, _ = wired
    token = await medic.ensure_admin_key()
    assert token is not None
    async with TestClient(TestServer(build_app(medic))) as client:
        yield client, {"Authorization": f"Bearer {token}"}


async def test_failed_deliveries_are_listed_and_redriven_over_the_api(
    wired: tuple[Medic, Channel], api: tuple[Any, dict[str, str]]
) -> None:
    medic, channel = wired
    client, headers = api
    await add_service(medic, "api")
    await add_target(medic, "chat")
    channel.failures = [DeliveryError("invalid_auth", retryable=False, status_code=401)]
    alert = await fail(medic, "api")
    await medic.delivery.run_once()
    response = await client.get("/api/v1/deliveries?status=failed", headers=headers)
    assert response.status == 200
    (item,) = (await response.json())["items"]
    assert item["alert_id"] == alert and item["response_code"] == 401
    assert item["kind"] == "opened" and item["target"] == "chat"
    one = await client.get(f"/api/v1/deliveries/{item['id']}", headers=headers)
    assert (await one.json())["last_error"] == "invalid_auth"
    retried = await client.post(f"/api/v1/deliveries/{item['id']}/retry", headers=headers)
    assert retried.status == 200 and (await retried.json())["status"] == "pending"
    again = await client.post(f"/api/v1/deliveries/{item['id']}/retry", headers=headers)
    assert again.status == 409
    await medic.delivery.run_once()
    assert channel.log() == [("opened", "chat", alert)]
    bulk = await client.post("/api/v1/deliveries:retry-failed?target=chat", headers=headers)
    assert (await bulk.json()) == {"redriven": 0}
    missing = await client.get("/api/v1/deliveries/99999", headers=headers)
    assert missing.status == 404
    bad = await client.get("/api/v1/deliveries?status=lost", headers=headers)
    assert bad.status == 422


async def test_test_notification_and_connection_check(wired: tuple[Medic, Channel]) -> None:
    medic, channel = wired
    await add_target(medic, "chat")
    result = await medic.delivery.test_target("chat")
    assert result["ok"] is True and result["notifier"] == "channel"
    (sent,) = channel.sent
    assert sent.kind == "test" and "Test notification" in sent.alert["summary"]
    assert await deliveries(medic) == []  # not through the outbox
    channel.failures = [DeliveryError("channel_not_found", retryable=False, status_code=404)]
    failed = await medic.delivery.test_target("chat")
    assert failed["ok"] is False and failed["error"] == "channel_not_found"
    assert failed["response_code"] == 404
    check = await medic.delivery.check_target("chat")
    assert check.status == "ok" and "no connection test" in check.detail


async def test_readiness_shows_each_target_as_last_tested(
    wired: tuple[Medic, Channel], api: tuple[Any, dict[str, str]]
) -> None:
    medic, _ = wired
    client, headers = api
    await add_target(medic, "chat")
    await medic.delivery.refresh_target_health()
    response = await client.get("/health/ready", headers=headers)  # details need a key
    body = await response.json()
    assert response.status == 200
    assert body["checks"]["target:chat"]["critical"] is False
    assert body["checks"]["target:chat"]["status"] == "ok"


async def test_the_delivery_service_is_woken_only_when_deliveries_were_queued(
    wired: tuple[Medic, Channel],
) -> None:
    medic, _ = wired
    queued: list[int] = []

    async def record(event: Any) -> None:
        if event.type == "deliveries.queued":
            queued.append(event.data["count"])

    medic.bus.subscribe("test", record)
    await add_service(medic, "quiet")
    await fail(medic, "quiet")  # no targets anywhere: nothing queued, nobody woken
    await medic.bus.drain()
    assert queued == []
    await add_target(medic, "chat")
    await add_service(medic, "loud")
    alert = await fail(medic, "loud")
    await medic.alerts.acknowledge(alert, actor=ME)
    await medic.bus.drain()
    assert queued == [1, 1]  # the opening, then the acknowledgement


async def test_maintenance_window_holds_delivery_until_it_ends_and_only_if_still_down(
    wired: tuple[Medic, Channel], clock: FakeClock
) -> None:
    medic, channel = wired
    daily = {"kind": "interval", "period": 86400}  # no missed deadline during the test
    await add_service(medic, "db-primary", tags=["db"], expectation=daily)
    await add_service(medic, "db-replica", tags=["db"], expectation=daily)
    await add_target(medic, "dba")
    now = clock.now()
    await medic.maintenance.create(
        {
            "name": "upgrade",
            "selector": {"tags": ["db"]},
            "starts_at": now.isoformat(),
            "ends_at": (now + timedelta(hours=1)).isoformat(),
        },
        actor=ME,
    )
    primary = await fail(medic, "db-primary")
    await fail(medic, "db-replica")
    await medic.delivery.run_once()
    assert channel.sent == [] and await deliveries(medic) == []  # recorded, not notified
    clock.advance(600)
    await medic.writer.submit(HeartbeatIn("db-replica", "success"))  # recovered inside
    clock.advance(3000)
    await medic.monitor.run_once()  # the window ends: release what is still unresolved
    await medic.delivery.run_once()
    assert channel.log() == [("opened", "dba", primary)]
