"""Heartbeats, deadlines and alerts through the domain (writer + monitor), on both databases."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import func, select

from medic_core.app import Medic
from medic_core.audit import Actor
from medic_core.clock import FakeClock
from medic_core.errors import NotFound
from medic_core.heartbeats import HeartbeatIn
from medic_core.store.models import Alert, AuditEntry, Heartbeat, JobRun

ME = Actor("test")


async def add_service(medic: Medic, slug: str = "backup", **extra: object) -> dict:
    data = {"slug": slug, "expectation": {"kind": "interval", "period": 60}, **extra}
    return await medic.services.create(data, actor=ME)


async def beat(medic: Medic, slug: str = "backup", status: str = "ok", **kw: object):
    return await medic.writer.submit(HeartbeatIn(slug, status, **kw))  # type: ignore[arg-type]


async def alerts_of(medic: Medic, slug: str = "backup", **filters: object) -> list[dict]:
    page = await medic.alerts.list(service=slug, **filters)  # type: ignore[arg-type]
    return list(page.items)


async def test_new_service_never_alerts_until_first_heartbeat(
    medic: Medic, clock: FakeClock
) -> None:
    await add_service(medic)
    clock.advance(3600)
    result = await medic.monitor.run_once()
    assert result.missed == 0
    assert (await medic.services.get("backup"))["state"] == "new"


async def test_heartbeat_sets_deadline_and_state_up(medic: Medic, clock: FakeClock) -> None:
    await add_service(medic, grace=30)
    stored = await beat(medic)
    assert stored.state == "up"
    service = await medic.services.get("backup")
    assert service["expected_at"] == (clock.now() + timedelta(seconds=60)).isoformat().replace(
        "+00:00", "Z"
    )
    assert service["next_due"] == (clock.now() + timedelta(seconds=90)).isoformat().replace(
        "+00:00", "Z"
    )


async def test_late_inside_grace_then_down_with_exactly_one_missed_alert(
    medic: Medic, clock: FakeClock
) -> None:
    await add_service(medic, grace=30)
    await beat(medic)
    clock.advance(70)
    assert (await medic.services.get("backup"))["state"] == "late"
    assert (await medic.monitor.run_once()).missed == 0
    clock.advance(25)
    first = await medic.monitor.run_once()
    assert first.missed == 1
    clock.advance(600)
    assert (await medic.monitor.run_once()).missed == 0
    alerts = await alerts_of(medic)
    assert [(a["cause"], a["state"]) for a in alerts] == [("missed", "open")]
    assert (await medic.services.get("backup"))["state"] == "down"


async def test_heartbeat_after_missed_resolves_alert(medic: Medic, clock: FakeClock) -> None:
    await add_service(medic)
    await beat(medic)
    clock.advance(61)
    await medic.monitor.run_once()
    await beat(medic)
    alerts = await alerts_of(medic)
    assert alerts[0]["state"] == "resolved"
    assert alerts[0]["resolved_by"] == "system"
    assert (await medic.services.get("backup"))["state"] == "up"


async def test_fail_signal_alerts_at_once_and_success_resolves(
    medic: Medic, clock: FakeClock
) -> None:
    await add_service(medic)
    await beat(medic, status="fail", exit_code=3, message="disk full")
    alerts = await alerts_of(medic)
    assert [(a["cause"], a["state"]) for a in alerts] == [("failed", "open")]
    assert alerts[0]["details"]["exit_code"] == 3
    await beat(medic, status="fail")
    assert len(await alerts_of(medic)) == 1  # still one unresolved failed alert
    await beat(medic, status="success")
    assert (await alerts_of(medic))[0]["state"] == "resolved"


async def test_job_run_start_success_records_duration(medic: Medic, clock: FakeClock) -> None:
    await add_service(medic)
    await beat(medic, status="start", run_id="r1")
    clock.advance(42)
    await beat(medic, status="success", run_id="r1")
    runs = (await medic.history.runs("backup")).items
    assert runs[0]["status"] == "succeeded"
    assert runs[0]["duration"] == pytest.approx(42)


async def test_overrun_opens_alert_and_finish_resolves(medic: Medic, clock: FakeClock) -> None:
    await add_service(medic, max_duration=100)
    await beat(medic, status="start")
    clock.advance(101)
    result = await medic.monitor.run_once()
    assert result.overruns == 1
    assert [a["cause"] for a in await alerts_of(medic)] == ["overrun"]
    clock.advance(10)
    await beat(medic, status="success")
    assert (await alerts_of(medic))[0]["state"] == "resolved"


async def test_unknown_service_is_not_found(medic: Medic) -> None:
    with pytest.raises(NotFound):
        await beat(medic, "nope")


async def test_batch_mixes_stored_and_rejected(medic: Medic) -> None:
    await add_service(medic)
    results = await medic.writer.submit_many([HeartbeatIn("backup"), HeartbeatIn("ghost")])
    assert results[0].status == "ok"  # type: ignore[union-attr]
    assert isinstance(results[1], NotFound)
    async with medic.db.sessions() as session:
        assert await session.scalar(select(func.count()).select_from(Heartbeat)) == 1


async def test_mute_records_but_holds_notification_until_it_ends(
    medic: Medic, clock: FakeClock
) -> None:
    await add_service(medic)
    await medic.services.mute(
        "backup", until=clock.now() + timedelta(seconds=300), reason="deploy", actor=ME
    )
    await beat(medic)
    clock.advance(61)
    await medic.monitor.run_once()
    alert = (await alerts_of(medic))[0]
    assert alert["suppressed"] and alert["notified_at"] is None
    assert alert["suppressed_reason"] == "muted: deploy"
    clock.advance(300)
    result = await medic.monitor.run_once()
    assert result.released == 1
    alert = (await alerts_of(medic))[0]
    assert alert["notified_at"] is not None and not alert["suppressed"]


async def test_recovery_never_clears_mute(medic: Medic, clock: FakeClock) -> None:
    await add_service(medic)
    await medic.services.mute("backup", until=None, reason=None, actor=ME)
    await beat(medic)
    clock.advance(61)
    await medic.monitor.run_once()
    await beat(medic)
    assert (await medic.services.get("backup"))["muted"] is True


async def test_maintenance_window_suppresses_then_notifies_if_still_down(
    medic: Medic, clock: FakeClock
) -> None:
    await add_service(medic, tags=["db"])
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
    await beat(medic)
    clock.advance(61)
    await medic.monitor.run_once()
    alert = (await alerts_of(medic))[0]
    assert alert["suppressed_reason"] == "maintenance: upgrade"
    clock.advance(3600)
    assert (await medic.monitor.run_once()).released == 1


async def test_pause_stops_monitoring_and_resume_starts_fresh_deadline(
    medic: Medic, clock: FakeClock
) -> None:
    await add_service(medic)
    await beat(medic)
    await medic.services.pause("backup", actor=ME)
    clock.advance(3600)
    assert (await medic.monitor.run_once()).missed == 0
    resumed = await medic.services.resume("backup", actor=ME)
    assert resumed["state"] == "up"
    assert resumed["next_due"] == (clock.now() + timedelta(seconds=60)).isoformat().replace(
        "+00:00", "Z"
    )


async def test_alert_lifecycle_is_audited_and_published(medic: Medic, clock: FakeClock) -> None:
    seen: list[str] = []

    async def record(event) -> None:
        seen.append(event.type)

    medic.bus.subscribe("test", record)
    await add_service(medic)
    await beat(medic, status="fail")
    alert_id = (await alerts_of(medic))[0]["id"]
    await medic.alerts.acknowledge(alert_id, actor=ME)
    await medic.alerts.resolve(alert_id, actor=ME, note="fixed the disk")
    await medic.bus.drain()
    assert [t for t in seen if t.startswith("alert.")] == [
        "alert.opened",
        "alert.acknowledged",
        "alert.resolved",
    ]
    async with medic.db.sessions() as session:
        actions = (
            await session.scalars(
                select(AuditEntry.action)
                .where(AuditEntry.resource_type == "alert")
                .order_by(AuditEntry.id)
            )
        ).all()
    assert actions == ["alert.open", "alert.acknowledge", "alert.resolve"]


async def test_database_allows_only_one_unresolved_alert_per_cause(medic: Medic) -> None:
    from sqlalchemy.exc import IntegrityError

    service = await add_service(medic)
    now = medic.clock.now()
    with pytest.raises(IntegrityError):
        async with medic.db.transaction() as session:
            for _ in range(2):
                session.add(
                    Alert(
                        service_id=service["id"],
                        cause="missed",
                        state="open",
                        priority="p3",
                        summary="x",
                        details={},
                        opened_at=now,
                    )
                )
                await session.flush()


async def test_start_without_max_duration_never_overruns(medic: Medic, clock: FakeClock) -> None:
    await add_service(medic)
    await beat(medic, status="start")
    clock.advance(10**6)
    assert (await medic.monitor.run_once()).overruns == 0
    async with medic.db.sessions() as session:
        run = await session.scalar(select(JobRun))
    assert run is not None and run.overrun_due is None


async def test_one_failing_heartbeat_does_not_fail_the_batch_it_shares(medic: Medic) -> None:
    from sqlalchemy import update

    from medic_core.errors import MedicError
    from medic_core.store.models import Service

    await add_service(medic, "good")
    await add_service(medic, "corrupt")
    async with medic.db.transaction() as session:
        # A row no code path writes: an expectation of an unknown kind.
        await session.execute(
            update(Service).where(Service.slug == "corrupt").values(expectation={"kind": "?"})
        )
    results = await medic.writer.submit_many(
        [HeartbeatIn("good"), HeartbeatIn("corrupt"), HeartbeatIn("good")]
    )
    assert [type(r).__name__ for r in results] == [
        "StoredHeartbeat",
        "MedicError",
        "StoredHeartbeat",
    ]
    assert isinstance(results[1], MedicError) and "internal error" in results[1].message
    assert (await medic.services.get("good"))["state"] == "up"


async def test_batched_ok_beats_move_deadlines_like_single_ones(
    medic: Medic, clock: FakeClock
) -> None:
    """The writer's fast path (plain ok beats of up/new services) keeps every column the ORM
    path would: the same service several times in one batch, a quorum service's memory."""
    seen: list[tuple[str, str]] = []

    async def record(event) -> None:
        if event.type == "service.state_changed":
            seen.append((event.data["slug"], event.data["state"]))

    medic.bus.subscribe("test", record)
    await add_service(medic, "every-minute", grace=5)
    await add_service(
        medic, "three-an-hour", expectation={"kind": "quorum", "min_count": 3, "window": 3600}
    )
    first = clock.now()
    await medic.writer.submit_many(
        [HeartbeatIn("every-minute"), HeartbeatIn("three-an-hour"), HeartbeatIn("three-an-hour")]
    )
    clock.advance(10)
    results = await medic.writer.submit_many(
        [HeartbeatIn("three-an-hour"), HeartbeatIn("every-minute"), HeartbeatIn("three-an-hour")]
    )
    assert [r.state for r in results] == ["up", "up", "up"]  # type: ignore[union-attr]
    await medic.bus.drain()
    assert sorted(seen) == [("every-minute", "up"), ("three-an-hour", "up")]  # new -> up once

    minute = await medic.services.get("every-minute")
    assert minute["state"] == "up"
    assert minute["last_status"] == "ok"
    assert minute["last_heartbeat_at"] == _iso(clock.now())
    assert minute["next_due"] == _iso(clock.now() + timedelta(seconds=65))
    quorum = await medic.services.get("three-an-hour")
    # Four beats, three remembered: the window closes an hour after the oldest of those.
    assert quorum["expected_at"] == _iso(first + timedelta(seconds=3600))
    async with medic.db.sessions() as session:
        assert await session.scalar(select(func.count()).select_from(Heartbeat)) == 6


async def test_ok_and_fail_for_one_service_in_one_batch_keep_their_order(
    medic: Medic, clock: FakeClock
) -> None:
    """A service with a job signal in the batch takes the ORM path for all its beats, in order;
    its neighbours stay on the fast path."""
    await add_service(medic, "backup")
    await add_service(medic, "web")
    await medic.writer.submit_many(
        [HeartbeatIn("backup"), HeartbeatIn("web"), HeartbeatIn("backup", "fail", exit_code=3)]
    )
    assert (await medic.services.get("backup"))["state"] == "down"
    assert (await medic.services.get("web"))["state"] == "up"
    assert [a["cause"] for a in await alerts_of(medic, "backup")] == ["failed"]
    clock.advance(5)
    await medic.writer.submit_many([HeartbeatIn("backup", "fail"), HeartbeatIn("backup")])
    assert (await medic.services.get("backup"))["state"] == "up"
    assert await alerts_of(medic, "backup", state="resolved") != []


def _iso(at) -> str:
    return at.isoformat().replace("+00:00", "Z")


async def test_monitor_skips_claims_whose_earliest_deadline_is_ahead(
    medic: Medic, clock: FakeClock
) -> None:
    """A pass does not query for overruns or releases the previous pass saw none due of; a new
    deadline (notice) makes the next pass look again, and nothing is missed."""
    from sqlalchemy import event

    claims: list[str] = []

    def record(_conn, _cursor, statement: str, *_args) -> None:  # type: ignore[no-untyped-def]
        if "overrun_due <=" in statement or "notify_at <=" in statement:
            claims.append(statement)

    await add_service(medic, "job", max_duration=30)
    await beat(medic, "job")
    await medic.monitor.run_once()  # learns: no run, no suppressed alert
    event.listen(medic.db.engine.sync_engine, "before_cursor_execute", record)
    try:
        await medic.monitor.run_once()
        assert claims == []
        await beat(medic, "job", status="start", run_id="r1")  # notice(): a new overrun deadline
        clock.advance(31)
        result = await medic.monitor.run_once()
        assert result.overruns == 1
        assert len(claims) == 2
    finally:
        event.remove(medic.db.engine.sync_engine, "before_cursor_execute", record)
