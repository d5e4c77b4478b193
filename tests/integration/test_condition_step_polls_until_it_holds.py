"""The ``condition`` step: it polls with a bounded back-off until its check holds
(heartbeat_received since the step started, service_state, http_healthy through the outbound
guard, alert_resolved), fails when it can never hold (no such service or alert, a refused
destination) and gives up at its deadline; its ``since`` and deadline are persisted in its
state, so a restart of Medic neither forgets a heartbeat that arrived meanwhile nor moves the
deadline. Direct calls with a fake plugin context, then the engine on SQLite and PostgreSQL.
"""

from __future__ import annotations

import ipaddress
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from medic_core.audit import Actor
from medic_core.clock import FakeClock
from medic_core.errors import NotFound
from medic_core.heartbeats import HeartbeatIn
from medic_core.net.guard import OutboundPolicy
from medic_core.plugins.interfaces import Done, Failed, Later, StepRun
from medic_plugins.steps.condition import DEFAULT_GIVE_UP, ConditionStep
from support.fakes.webhook_receiver import WebhookReceiver
from support.playbook_rig import ACTOR, engine_medic, save

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
LOOPBACK = OutboundPolicy(allow_networks=[ipaddress.ip_network("127.0.0.1/32")])


class FakeMedic:
    """The two reads a condition makes of the plugin context."""

    def __init__(self) -> None:
        self.service_docs: dict[str, dict[str, Any]] = {}
        self.alert_docs: dict[int, dict[str, Any]] = {}
        self.services = SimpleNamespace(get=self._service)
        self.alerts = SimpleNamespace(get=self._alert)

    async def _service(self, slug: str) -> dict[str, Any]:
        if slug not in self.service_docs:
            raise NotFound(f"no service {slug}")
        return self.service_docs[slug]

    async def _alert(self, alert_id: int) -> dict[str, Any]:
        if alert_id not in self.alert_docs:
            raise NotFound(f"no alert {alert_id}")
        return self.alert_docs[alert_id]


def step_run(
    medic: FakeMedic,
    clock: FakeClock,
    state: dict[str, Any] | None = None,
    **extra: Any,
) -> StepRun:
    return StepRun(1, "check", 1, state or {}, clock, medic, **extra)


async def test_heartbeat_received_polls_with_a_bounded_back_off_until_a_heartbeat_arrives() -> None:
    clock, medic = FakeClock(NOW), FakeMedic()
    before = (NOW - timedelta(minutes=5)).isoformat()
    medic.service_docs["db"] = {"state": "down", "last_heartbeat_at": before}
    step = ConditionStep()
    params = {"check": "heartbeat_received", "poll": {"initial": 5, "max": 30}}
    state: dict[str, Any] = {}
    delays = []
    for _ in range(6):
        outcome = await step.advance(params, step_run(medic, clock, state, service="db"))
        assert isinstance(outcome, Later)
        assert outcome.state["since"] == NOW.isoformat()  # kept from the first look
        delays.append((outcome.at - clock.now()).total_seconds())
        state = outcome.state
        clock.set(outcome.at)
    assert delays == [5, 10, 20, 30, 30, 30]
    medic.service_docs["db"]["last_heartbeat_at"] = clock.now().isoformat()
    done = await step.advance(params, step_run(medic, clock, state, service="db"))
    assert done == Done(
        {
            "check": "heartbeat_received",
            "polls": 7,
            "service": "db",
            "heartbeat_at": clock.now().isoformat(),
        }
    )


async def test_a_condition_gives_up_at_its_kept_deadline() -> None:
    clock, medic = FakeClock(NOW), FakeMedic()
    medic.service_docs["db"] = {"state": "down", "last_heartbeat_at": None}
    step, params = ConditionStep(), {"check": "service_state", "state": "up", "service": "db"}
    first = await step.advance(params, step_run(medic, clock, deadline=NOW + timedelta(60)))
    assert isinstance(first, Later)
    assert first.state["until"] == (NOW + timedelta(60)).isoformat()
    # Without a step timeout it polls DEFAULT_GIVE_UP seconds, never for ever.
    unbounded = await step.advance(params, step_run(medic, clock))
    assert isinstance(unbounded, Later)
    assert unbounded.state["until"] == (NOW + timedelta(seconds=DEFAULT_GIVE_UP)).isoformat()
    clock.advance(DEFAULT_GIVE_UP)
    # The kept deadline wins over whatever deadline a later attempt is given.
    failed = await step.advance(
        params, step_run(medic, clock, unbounded.state, deadline=NOW + timedelta(days=9))
    )
    assert isinstance(failed, Failed)
    assert "service_state did not hold by" in failed.error
    assert failed.output["last"] == "service db is down"


async def test_service_state_and_alert_resolved_hold_when_medic_says_so() -> None:
    clock, medic = FakeClock(NOW), FakeMedic()
    medic.service_docs["db"] = {"state": "up"}
    medic.alert_docs[7] = {"state": "acknowledged"}
    step = ConditionStep()
    up = await step.advance(
        {"check": "service_state", "state": "up"}, step_run(medic, clock, service="db")
    )
    assert isinstance(up, Done) and up.output["state"] == "up"
    waiting = await step.advance({"check": "alert_resolved"}, step_run(medic, clock, alert_id=7))
    assert isinstance(waiting, Later)
    medic.alert_docs[7]["state"] = "resolved"
    named = await step.advance({"check": "alert_resolved", "alert": "7"}, step_run(medic, clock))
    assert isinstance(named, Done) and named.output["alert"] == 7


async def test_a_condition_that_can_never_hold_fails_at_once() -> None:
    clock, medic = FakeClock(NOW), FakeMedic()
    step = ConditionStep()
    cases = [
        ({"check": "heartbeat_received"}, {}, "the run has no service"),
        ({"check": "heartbeat_received", "service": "gone"}, {}, "service 'gone' does not exist"),
        ({"check": "alert_resolved"}, {}, "the run has no alert"),
        ({"check": "alert_resolved", "alert": 404}, {}, "alert 404 does not exist"),
        ({"check": "alert_resolved", "alert": "x1"}, {}, "is not an alert id"),
        # The outbound guard refuses loopback unless the operator allowed it.
        ({"check": "http_healthy", "url": "http://127.0.0.1:9/health"}, {}, "destination refused"),
    ]
    for params, extra, error in cases:
        outcome = await step.advance(params, step_run(medic, clock, **extra))
        assert isinstance(outcome, Failed), params
        assert error in outcome.error, (params, outcome.error)


async def test_http_healthy_polls_until_the_endpoint_answers_an_expected_status() -> None:
    clock, medic = FakeClock(NOW), FakeMedic()
    step = ConditionStep(LOOPBACK)
    try:
        async with WebhookReceiver() as fake:
            fake.respond(503)
            params = {"check": "http_healthy", "url": fake.url("/health")}
            sick = await step.advance(params, step_run(medic, clock))
            assert isinstance(sick, Later)
            healthy = await step.advance(params, step_run(medic, clock, sick.state))
            assert healthy == Done({"check": "http_healthy", "polls": 2, "status": 200})
            fake.respond(200)
            strict = {**params, "expect_status": [204]}
            assert isinstance(await step.advance(strict, step_run(medic, clock)), Later)
            assert [r.method for r in fake.requests] == ["GET", "GET", "GET"]
    finally:
        await step.close()


def waits_for_heartbeat(slug: str, timeout: int = 600) -> dict[str, Any]:
    return {
        "slug": "recover",
        "steps": [
            {
                "name": "back",
                "type": "condition",
                "timeout": timeout,
                "params": {"check": "heartbeat_received", "service": slug},
            }
        ],
    }


async def test_a_heartbeat_received_while_medic_was_down_still_ends_the_condition(
    db_url: str, tmp_path: Path, clock: FakeClock
) -> None:
    async with engine_medic(db_url, tmp_path, clock) as medic:
        await medic.services.create(
            {"slug": "db", "expectation": {"kind": "interval", "period": 60}}, actor=Actor("t")
        )
        await save(medic, waits_for_heartbeat("db"))
        run = await medic.runs.start("recover", {}, actor=ACTOR)
        await medic.engine.run_once()
        assert (await medic.runs.get(run["id"]))["state"] == "waiting"
        clock.advance(2)
        await medic.writer.submit(HeartbeatIn("db", "ok"))
    clock.advance(30)  # Medic is down; the next look comes after the restart
    async with engine_medic(db_url, tmp_path, clock) as restarted:
        await restarted.engine.run_once()
        done = await restarted.runs.get(run["id"])
    assert done["state"] == "succeeded", done
    assert done["steps"][0]["output"]["service"] == "db"


async def test_a_condition_that_never_holds_times_the_run_out_at_the_step_timeout(
    db_url: str, tmp_path: Path, clock: FakeClock
) -> None:
    async with engine_medic(db_url, tmp_path, clock) as medic:
        await medic.services.create(
            {"slug": "db", "expectation": {"kind": "interval", "period": 60}}, actor=Actor("t")
        )
        await save(medic, waits_for_heartbeat("db", timeout=60))
        run = await medic.runs.start("recover", {}, actor=ACTOR)
        claims = 0
        for _ in range(50):
            result = await medic.engine.run_once()
            claims += result.claimed
            state = (await medic.runs.get(run["id"]))["state"]
            if state not in ("pending", "running", "waiting"):
                break
            assert result.next_due is not None
            clock.set(max(result.next_due, clock.now()))
        done = await medic.runs.get(run["id"])
    assert (done["state"], done["reason"]) == ("timed_out", "step_timed_out")
    # Looks at 0, 5, 15 and 35 s (back-off 5, 10, 20 s); the next (35 + 40) is cut to the
    # timeout, where the engine ends the step without a fifth look.
    assert claims == 5
