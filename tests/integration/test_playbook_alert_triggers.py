"""Alert triggers on SQLite and PostgreSQL, stepped by hand with a fake clock: an alert a
selector matches starts one run with ``alert`` and ``service`` in its template context; one
that does not match starts nothing; ``open_for_minutes`` waits; two replicas start one run; the
guards (one active run per playbook x service, runs per service per hour) skip and record why;
``cancel_on_resolve`` cancels the run when its alert resolves."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from conftest import make_settings
from medic_core.app import Medic
from medic_core.clock import FakeClock
from medic_core.events import Event, PendingEvents
from medic_core.playbooks import triggers
from medic_core.store.models import PlaybookTriggerFiring, Service
from support.fakes.webhook_receiver import WebhookReceiver
from support.playbook_rig import ACTOR, engine_medic, run_until_settled, save

WAIT = {"name": "pause", "type": "wait", "params": {"seconds": 600}}


async def service(medic: Medic, slug: str, **extra: Any) -> None:
    await medic.services.create(
        {"slug": slug, "expectation": {"kind": "interval", "period": 60}, **extra}, actor=ACTOR
    )


async def open_alert(medic: Medic, slug: str, cause: str = "missed") -> int:
    pending = PendingEvents()
    async with medic.db.transaction() as session:
        row = await session.scalar(select(Service).where(Service.slug == slug))
        assert row is not None
        alert = await medic.alerts.open_in(
            session, pending, row, cause, summary=f"{slug} {cause}", now=medic.clock.now()
        )
        assert alert is not None
        alert_id = alert.id
    pending.publish(medic.bus)
    return alert_id


def playbook(selector: dict[str, Any], *steps: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {
        "slug": "heal",
        "triggers": [{"kind": "alert", "selector": selector}],
        "steps": list(steps) or [WAIT],
        **extra,
    }


async def firings(medic: Medic) -> list[tuple[int, str]]:
    async with medic.db.sessions() as session:
        rows = await session.scalars(
            select(PlaybookTriggerFiring).order_by(PlaybookTriggerFiring.id)
        )
        return [(r.alert_id, r.outcome) for r in rows]


def triggered(medic: Medic, outcome: str) -> float:
    value = medic.metrics.registry.get_sample_value(
        "medic_playbook_triggers_total", {"kind": "alert", "outcome": outcome}
    )
    return value or 0.0


async def test_an_opened_alert_starts_a_run_with_the_alert_and_service_in_its_context(
    db_url: str, tmp_path: Path, clock: FakeClock
) -> None:
    async with WebhookReceiver() as fake, engine_medic(db_url, tmp_path, clock) as medic:
        await service(medic, "db-1", tags=["sql"])
        call = {
            "name": "call",
            "type": "webhook",
            "params": {
                "url": fake.url("/heal"),
                "body": {
                    "alert": "{{ alert.id }}",
                    "cause": "{{ alert.cause }}",
                    "service": "{{ service.slug }}",
                },
            },
        }
        await save(medic, playbook({"services": ["db-*"], "tags": ["sql"]}, call))
        alert_id = await open_alert(medic, "db-1")

        result = await medic.triggers.run_once()
        assert result.fired == {"started": 1}
        runs = (await medic.runs.list()).items
        assert len(runs) == 1
        assert runs[0]["trigger"] == "alert"
        assert runs[0]["alert_id"] == alert_id
        assert runs[0]["created_by"] == "trigger:alert"
        done = await run_until_settled(medic, clock)
        assert done["state"] == "succeeded", done
        assert fake.requests[0].json() == {
            "alert": str(alert_id),
            "cause": "missed",
            "service": "db-1",
        }
        # Scanning again starts nothing more: the trigger is recorded.
        assert (await medic.triggers.run_once()).fired == {}
        assert len((await medic.runs.list()).items) == 1
        assert await firings(medic) == [(alert_id, "started")]
        assert triggered(medic, "started") == 1


@pytest.mark.parametrize(
    "selector",
    [
        {"services": ["web-*"]},
        {"tags": ["sql", "prod"]},
        {"team": "payments"},
        {"causes": ["failed"]},
        {"priorities": ["p1"]},
    ],
    ids=["service-glob", "tags", "team", "cause", "priority"],
)
async def test_an_alert_the_selector_does_not_match_starts_nothing(
    db_url: str, tmp_path: Path, clock: FakeClock, selector: dict[str, Any]
) -> None:
    async with engine_medic(db_url, tmp_path, clock) as medic:
        await medic.teams.create({"slug": "payments"}, actor=ACTOR)
        await medic.teams.create({"slug": "storage"}, actor=ACTOR)
        await service(medic, "db-1", tags=["sql"], team="storage", priority="p3")
        await save(medic, playbook(selector))
        await open_alert(medic, "db-1")
        assert (await medic.triggers.run_once()).fired == {}
        assert (await medic.runs.list()).items == []
        assert await firings(medic) == []


async def test_a_selector_with_every_criterion_met_starts_a_run(
    db_url: str, tmp_path: Path, clock: FakeClock
) -> None:
    async with engine_medic(db_url, tmp_path, clock) as medic:
        await medic.teams.create({"slug": "storage"}, actor=ACTOR)
        await service(medic, "db-1", tags=["sql", "prod"], team="storage", priority="p3")
        selector = {
            "services": ["web-?", "db-[0-9]"],
            "tags": ["sql"],
            "team": "storage",
            "causes": ["missed", "failed"],
            "priorities": ["p3"],
        }
        await save(medic, playbook(selector))
        await open_alert(medic, "db-1")
        assert (await medic.triggers.run_once()).fired == {"started": 1}


async def test_alerts_opened_before_the_playbook_existed_do_not_start_it(
    db_url: str, tmp_path: Path, clock: FakeClock
) -> None:
    async with engine_medic(db_url, tmp_path, clock) as medic:
        await service(medic, "db-1")
        await open_alert(medic, "db-1")
        clock.advance(1)
        await save(medic, playbook({"services": ["db-1"]}))
        assert (await medic.triggers.run_once()).fired == {}


async def test_open_for_minutes_starts_the_run_once_the_alert_is_that_old(
    db_url: str, tmp_path: Path, clock: FakeClock
) -> None:
    async with engine_medic(db_url, tmp_path, clock) as medic:
        await service(medic, "db-1")
        await save(medic, playbook({"services": ["db-1"], "open_for_minutes": 5}))
        opened = clock.now()
        await open_alert(medic, "db-1")
        early = await medic.triggers.run_once()
        assert early.fired == {}
        assert early.next_due is not None
        assert (early.next_due - opened).total_seconds() == 300
        clock.advance(299)
        assert (await medic.triggers.run_once()).fired == {}
        clock.advance(1)
        late = await medic.triggers.run_once()
        assert late.fired == {"started": 1}
        assert late.next_due is None


async def test_two_replicas_scanning_one_alert_start_one_run(
    db_url: str, tmp_path: Path, clock: FakeClock
) -> None:
    async with (
        engine_medic(db_url, tmp_path / "a", clock) as one,
        engine_medic(db_url, tmp_path / "b", clock) as two,
    ):
        await service(one, "db-1")
        await save(one, playbook({"services": ["db-*"]}))
        alert_id = await open_alert(one, "db-1")
        results = await asyncio.gather(one.triggers.run_once(), two.triggers.run_once())
        started = sum(r.fired.get("started", 0) for r in results)
        assert started == 1, results
        # A restarted replica scans again and starts nothing more.
        again = Medic(make_settings(db_url, tmp_path / "c"), clock=clock, plugins=[])
        await again.start(monitor=False)
        try:
            assert (await again.triggers.run_once()).fired == {}
        finally:
            await again.stop()
        runs = (await one.runs.list()).items
        assert [r["alert_id"] for r in runs] == [alert_id]
        assert await firings(one) == [(alert_id, "started")]


async def test_a_trigger_while_a_run_for_the_service_is_active_is_skipped_and_recorded(
    db_url: str, tmp_path: Path, clock: FakeClock
) -> None:
    async with engine_medic(db_url, tmp_path, clock) as medic:
        await service(medic, "db-1")
        await save(medic, playbook({"services": ["db-1"]}))
        first = await open_alert(medic, "db-1", "missed")
        assert (await medic.triggers.run_once()).fired == {"started": 1}
        second = await open_alert(medic, "db-1", "failed")
        assert (await medic.triggers.run_once()).fired == {"skipped_active": 1}
        assert await firings(medic) == [(first, "started"), (second, "skipped_active")]
        assert triggered(medic, "skipped_active") == 1
        async with medic.db.sessions() as session:
            skipped = await session.scalar(
                select(PlaybookTriggerFiring).where(PlaybookTriggerFiring.alert_id == second)
            )
            assert skipped is not None and skipped.execution_id is None
            assert skipped.detail is not None and "is active" in skipped.detail
        assert len((await medic.runs.list()).items) == 1
        # Recorded: it does not fire again once the first run has ended.
        run = (await medic.runs.list()).items[0]
        await medic.runs.cancel(run["id"], actor=ACTOR)
        assert (await medic.triggers.run_once()).fired == {}


async def test_runs_past_the_hourly_limit_for_a_service_are_skipped(
    db_url: str, tmp_path: Path, clock: FakeClock
) -> None:
    async with engine_medic(db_url, tmp_path, clock, playbook_runs_per_service_hour=1) as medic:
        await service(medic, "db-1")
        await save(medic, playbook({"services": ["db-1"]}))
        await open_alert(medic, "db-1", "missed")
        assert (await medic.triggers.run_once()).fired == {"started": 1}
        await medic.runs.cancel((await medic.runs.list()).items[0]["id"], actor=ACTOR)
        clock.advance(3599)
        await open_alert(medic, "db-1", "failed")
        assert (await medic.triggers.run_once()).fired == {"skipped_rate": 1}
        assert triggered(medic, "skipped_rate") == 1
        clock.advance(2)  # the first run is more than an hour old now
        await open_alert(medic, "db-1", "overrun")
        assert (await medic.triggers.run_once()).fired == {"started": 1}


@pytest.mark.parametrize("cancel_on_resolve", [True, False])
async def test_a_resolved_alert_cancels_the_run_it_started_when_asked(
    db_url: str, tmp_path: Path, clock: FakeClock, cancel_on_resolve: bool
) -> None:
    async with engine_medic(db_url, tmp_path, clock) as medic:
        await service(medic, "db-1")
        await save(medic, playbook({"services": ["db-1"]}, cancel_on_resolve=cancel_on_resolve))
        alert_id = await open_alert(medic, "db-1")
        await medic.triggers.run_once()
        await medic.engine.run_once()
        run = (await medic.runs.list()).items[0]
        assert run["state"] == "waiting"
        await medic.alerts.resolve(alert_id, actor=ACTOR)
        result = await medic.triggers.run_once()
        after = await medic.runs.get(run["id"])
        if cancel_on_resolve:
            assert result.cancelled == 1
            assert after["state"] == "cancelled"
            assert after["detail"] == "cancelled by trigger:alert-resolved"
        else:
            assert result.cancelled == 0
            assert after["state"] == "waiting"


async def test_the_runs_per_service_hour_setting_is_bounded(
    db_url: str, tmp_path: Path, clock: FakeClock
) -> None:
    settings = make_settings(db_url, tmp_path, playbook_runs_per_service_hour=0)
    with pytest.raises(ValueError, match="MEDIC_PLAYBOOK_RUNS_PER_SERVICE_HOUR"):
        Medic(settings, clock=clock, plugins=[])


async def test_a_running_server_starts_the_run_when_an_alert_opens(
    db_url: str, tmp_path: Path, clock: FakeClock
) -> None:
    """The wiring: the background pass runs in ``start()`` and the alert's event wakes it (the
    test waits for the run's event, not for a time)."""
    app = Medic(make_settings(db_url, tmp_path), clock=clock, plugins=[])
    await app.start(monitor=True)
    try:
        started: asyncio.Future[int] = asyncio.get_running_loop().create_future()

        async def record(event: Event) -> None:
            if event.type == "playbook.execution" and not started.done():
                started.set_result(event.data["execution_id"])

        app.bus.subscribe("test", record)
        await service(app, "db-1")
        await save(app, playbook({"services": ["db-1"]}))
        alert_id = await open_alert(app, "db-1")
        execution_id = await asyncio.wait_for(started, timeout=30)
        assert (await app.runs.get(execution_id))["alert_id"] == alert_id
    finally:
        await app.stop()


async def test_scans_go_page_by_page_past_what_they_pass_over(
    db_url: str, tmp_path: Path, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With one row per page: an alert the selector does not match does not hide the next one,
    and a run that does not ask for cancel_on_resolve does not hide one that does."""
    monkeypatch.setattr(triggers, "PAGE", 1)
    async with engine_medic(db_url, tmp_path, clock) as medic:
        await service(medic, "web-1")
        await service(medic, "db-1")
        await save(medic, {**playbook({"services": ["web-1"]}), "slug": "keep"})
        await save(medic, {**playbook({"services": ["db-1"]}), "slug": "stop"})
        await medic.playbooks.apply(
            {**playbook({"services": ["db-1"]}), "slug": "stop", "cancel_on_resolve": True},
            actor=ACTOR,
        )
        web = await open_alert(medic, "web-1")
        db = await open_alert(medic, "db-1")
        assert (await medic.triggers.run_once()).fired == {"started": 2}
        await medic.alerts.resolve(web, actor=ACTOR)
        await medic.alerts.resolve(db, actor=ACTOR)
        assert (await medic.triggers.run_once()).cancelled == 1
        states = {r["playbook"]: r["state"] for r in (await medic.runs.list()).items}
        assert states == {"keep": "pending", "stop": "cancelled"}
