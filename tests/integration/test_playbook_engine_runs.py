"""The playbook engine, stepped by hand with a fake clock, on SQLite and PostgreSQL: steps run
in order with templated params, waits keep their deadline, retries back off, on_failure
continue/goto are followed, a goto loop ends at the step-run bound, ``when`` skips, cancel
ends a run, and a step type that cannot run fails the run clearly.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from medic_core.clock import FakeClock
from medic_core.events import Event
from support.fakes.webhook_receiver import WebhookReceiver
from support.playbook_rig import ACTOR, engine_medic, run_until_settled, save


def hook(name: str, url: str, **extra: Any) -> dict[str, Any]:
    return {
        "name": name,
        "type": "webhook",
        "params": {"url": url, **extra.pop("params", {})},
        **extra,
    }


async def test_wait_webhook_wait_succeeds_with_templated_params_and_events(
    db_url: str, tmp_path: Path, clock: FakeClock
) -> None:
    async with WebhookReceiver() as fake, engine_medic(db_url, tmp_path, clock) as medic:
        events: list[Event] = []

        async def record(event: Event) -> None:
            if event.type.startswith("playbook."):
                events.append(event)

        medic.bus.subscribe("test", record)
        await save(
            medic,
            {
                "slug": "heal",
                "variables": {"host": {"type": "string", "default": "web-1"}},
                "steps": [
                    {"name": "first", "type": "wait", "params": {"seconds": 60}},
                    hook(
                        "call",
                        fake.url("/restart"),
                        params={"body": {"host": "{{ vars.host }}", "run": "{{ execution.id }}"}},
                    ),
                    {"name": "settle", "type": "wait", "params": {"seconds": 30}},
                ],
            },
        )
        started = clock.now()
        run = await medic.runs.start("heal", {"host": "db-2"}, actor=ACTOR)
        assert run["state"] == "pending"

        await medic.engine.run_once()
        waiting = await medic.runs.get(run["id"])
        assert waiting["state"] == "waiting"
        assert waiting["next_at"] == "2026-03-01T12:01:00Z"
        clock.advance(59)
        await medic.engine.run_once()
        assert fake.requests == []  # the wait is not over

        done = await run_until_settled(medic, clock)
        assert done["state"] == "succeeded", done
        assert [(s["name"], s["state"]) for s in done["steps"]] == [
            ("first", "succeeded"),
            ("call", "succeeded"),
            ("settle", "succeeded"),
        ]
        assert fake.paths() == ["/restart"]
        assert fake.requests[0].json() == {"host": "db-2", "run": str(run["id"])}
        assert done["steps"][1]["output"]["status"] == 200
        assert (clock.now() - started).total_seconds() == 90
        await medic.bus.drain()
        states = [e.data["state"] for e in events if e.type == "playbook.execution"]
        assert states[0] == "pending" and states[-1] == "succeeded"
        steps = [(e.data["step"], e.data["state"]) for e in events if e.type == "playbook.step"]
        assert ("call", "running") in steps and ("call", "succeeded") in steps


async def test_a_failing_webhook_is_retried_with_backoff_then_succeeds(
    db_url: str, tmp_path: Path, clock: FakeClock
) -> None:
    async with WebhookReceiver() as fake, engine_medic(db_url, tmp_path, clock) as medic:
        fake.respond(500)
        fake.respond(503)
        retry = {"attempts": 3, "backoff": {"initial": 10, "max": 15, "multiplier": 2}}
        await save(medic, {"slug": "r", "steps": [hook("call", fake.url("/flaky"), retry=retry)]})
        run = await medic.runs.start("r", {}, actor=ACTOR)
        await medic.engine.run_once()
        after_one = await medic.runs.get(run["id"])
        assert after_one["state"] == "waiting"
        assert after_one["next_at"] == "2026-03-01T12:00:10Z"  # initial back-off
        clock.advance(10)
        await medic.engine.run_once()
        assert (await medic.runs.get(run["id"]))["next_at"] == "2026-03-01T12:00:25Z"  # capped
        done = await run_until_settled(medic, clock)
        assert done["state"] == "succeeded"
        assert [(s["attempt"], s["state"]) for s in done["steps"]] == [
            (1, "failed"),
            (2, "failed"),
            (3, "succeeded"),
        ]
        assert done["steps"][0]["error"] == "the endpoint answered 500"
        assert fake.count("/flaky") == 3


async def test_on_failure_continue_and_goto_are_followed(
    db_url: str, tmp_path: Path, clock: FakeClock
) -> None:
    async with WebhookReceiver() as fake, engine_medic(db_url, tmp_path, clock) as medic:
        fake.respond(500, times=2)
        await save(
            medic,
            {
                "slug": "f",
                "steps": [
                    hook("soft", fake.url("/bad"), on_failure="continue"),
                    hook("hard", fake.url("/bad"), on_failure="goto cleanup"),
                    hook("skipped-by-goto", fake.url("/never")),
                    hook("cleanup", fake.url("/cleanup")),
                ],
            },
        )
        await medic.runs.start("f", {}, actor=ACTOR)
        done = await run_until_settled(medic, clock)
        assert done["state"] == "succeeded"
        assert [(s["name"], s["state"]) for s in done["steps"]] == [
            ("soft", "failed"),
            ("hard", "failed"),
            ("cleanup", "succeeded"),
        ]
        assert fake.count("/never") == 0


async def test_a_goto_loop_ends_failed_at_the_step_run_bound(
    db_url: str, tmp_path: Path, clock: FakeClock
) -> None:
    async with (
        WebhookReceiver() as fake,
        engine_medic(db_url, tmp_path, clock, playbook_max_step_runs=6) as medic,
    ):
        fake.respond(500, times=100)
        await save(
            medic,
            {
                "slug": "loop",
                "steps": [
                    {"name": "a", "type": "wait", "params": {"seconds": 1}},
                    hook("b", fake.url("/bad"), on_failure="goto a"),
                ],
            },
        )
        await medic.runs.start("loop", {}, actor=ACTOR)
        done = await run_until_settled(medic, clock)
        assert (done["state"], done["reason"]) == ("failed", "too_many_step_runs")
        assert "MEDIC_PLAYBOOK_MAX_STEP_RUNS" in done["detail"]
        assert len(done["steps"]) == 6
        assert fake.count("/bad") == 3


async def test_a_step_whose_when_is_false_is_skipped(
    db_url: str, tmp_path: Path, clock: FakeClock
) -> None:
    async with WebhookReceiver() as fake, engine_medic(db_url, tmp_path, clock) as medic:
        await save(
            medic,
            {
                "slug": "w",
                "variables": {"loud": {"type": "boolean", "default": False}},
                "steps": [
                    hook("shout", fake.url("/shout"), when="vars.loud"),
                    hook("after", fake.url("/after"), when="steps.shout.status == 'skipped'"),
                ],
            },
        )
        await medic.runs.start("w", {}, actor=ACTOR)
        done = await run_until_settled(medic, clock)
        assert done["state"] == "succeeded"
        assert [(s["name"], s["state"]) for s in done["steps"]] == [
            ("shout", "skipped"),
            ("after", "succeeded"),
        ]
        assert fake.paths() == ["/after"]


async def test_cancelling_a_waiting_run_ends_it_at_once_and_nothing_more_runs(
    db_url: str, tmp_path: Path, clock: FakeClock
) -> None:
    async with WebhookReceiver() as fake, engine_medic(db_url, tmp_path, clock) as medic:
        await save(
            medic,
            {
                "slug": "c",
                "steps": [
                    {"name": "pause", "type": "wait", "params": {"seconds": 600}},
                    hook("call", fake.url("/call")),
                ],
            },
        )
        run = await medic.runs.start("c", {}, actor=ACTOR)
        await medic.engine.run_once()
        cancelled = await medic.runs.cancel(run["id"], actor=ACTOR)
        assert (cancelled["state"], cancelled["reason"]) == ("cancelled", "cancelled")
        assert cancelled["steps"][0]["state"] == "cancelled"
        clock.advance(601)
        await medic.engine.run_once()
        assert fake.requests == []
        # The guard's key is free again: a new run may start.
        again = await medic.runs.start("c", {}, actor=ACTOR)
        assert again["state"] == "pending"
        audit = await medic.audit.list(resource_type="playbook_execution")
        assert sorted(e["action"] for e in audit.items) == [
            "playbook.cancel",
            "playbook.run",
            "playbook.run",
        ]


async def test_a_step_past_its_timeout_fails_the_run_timed_out(
    db_url: str, tmp_path: Path, clock: FakeClock
) -> None:
    async with engine_medic(db_url, tmp_path, clock) as medic:
        await save(
            medic,
            {
                "slug": "t",
                "steps": [
                    {"name": "long", "type": "wait", "params": {"seconds": 600}, "timeout": 60}
                ],
            },
        )
        run = await medic.runs.start("t", {}, actor=ACTOR)
        await medic.engine.run_once()
        assert (await medic.runs.get(run["id"]))["next_at"] == "2026-03-01T12:01:00Z"
        done = await run_until_settled(medic, clock)
        assert (done["state"], done["reason"]) == ("timed_out", "step_timed_out")
        assert done["steps"][0]["state"] == "failed"
        assert "timed out" in done["steps"][0]["error"]
