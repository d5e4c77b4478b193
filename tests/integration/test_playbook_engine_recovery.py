"""Recovery of playbook runs whose engine died, in process (the engine's task is cancelled
mid-step, as a SIGKILL would stop it, and a new engine takes over once the lease lapsed), on
SQLite and PostgreSQL; and two engines on one database running 50 runs concurrently execute
every step exactly once (counted at the receiver).

The same with a real ``medic serve`` killed by SIGKILL:
tests/e2e/test_playbook_runs_survive_sigkill.py.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from sqlalchemy import update

from medic_core.app import Medic
from medic_core.clock import FakeClock
from medic_core.playbooks.engine import PlaybookEngine
from medic_core.store.models import PlaybookExecution
from support.fakes.webhook_receiver import WebhookReceiver
from support.playbook_rig import ACTOR, engine_medic, run_until_settled, save

LEASE = 30


def successor(medic: Medic) -> PlaybookEngine:
    """Another replica's engine on the same database."""
    return PlaybookEngine(
        medic.db, medic.clock, medic.bus, medic.metrics, medic.step_types, medic.settings
    )


async def die_during_the_request(medic: Medic, fake: WebhookReceiver) -> None:
    """Run a pass until the receiver got the request, then kill the pass (no outcome is
    recorded, the lease stays: what a SIGKILL leaves)."""
    task = asyncio.create_task(medic.engine.run_once())
    await asyncio.wait_for(fake.arrived.wait(), 30)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


def slow_hook(fake: WebhookReceiver, **extra: Any) -> dict[str, Any]:
    return {"name": "call", "type": "webhook", "params": {"url": fake.url("/slow")}, **extra}


async def test_a_webhook_cut_by_a_crash_is_unknown_and_the_run_stops_for_a_human(
    db_url: str, tmp_path: Path, clock: FakeClock
) -> None:
    async with WebhookReceiver() as fake, engine_medic(db_url, tmp_path, clock) as medic:
        fake.hold("/slow", times=1)
        await save(medic, {"slug": "u", "steps": [slow_hook(fake)]})
        run = await medic.runs.start("u", {}, actor=ACTOR)
        await die_during_the_request(medic, fake)
        assert (await medic.runs.get(run["id"]))["steps"][0]["state"] == "running"

        other = successor(medic)
        await other.run_once()  # the lease has not lapsed: nobody takes it over
        assert (await medic.runs.get(run["id"]))["state"] == "running"
        clock.advance(LEASE + 1)
        await other.run_once()
        done = await medic.runs.get(run["id"])
        assert (done["state"], done["reason"]) == ("failed", "outcome_unknown")
        assert "check its target by hand" in done["detail"]
        assert [(s["attempt"], s["state"]) for s in done["steps"]] == [(1, "unknown")]
        assert fake.count("/slow") == 1


async def test_an_idempotent_webhook_cut_by_a_crash_runs_again_and_succeeds(
    db_url: str, tmp_path: Path, clock: FakeClock
) -> None:
    async with WebhookReceiver() as fake, engine_medic(db_url, tmp_path, clock) as medic:
        fake.hold("/slow", times=1)
        await save(medic, {"slug": "i", "steps": [slow_hook(fake, idempotent=True)]})
        run = await medic.runs.start("i", {}, actor=ACTOR)
        await die_during_the_request(medic, fake)
        clock.advance(LEASE + 1)
        await successor(medic).run_once()
        done = await medic.runs.get(run["id"])
        assert done["state"] == "succeeded"
        assert [(s["attempt"], s["state"]) for s in done["steps"]] == [
            (1, "unknown"),
            (2, "succeeded"),
        ]
        assert fake.count("/slow") == 2


async def test_a_wait_interrupted_mid_call_resumes_at_its_kept_deadline(
    db_url: str, tmp_path: Path, clock: FakeClock
) -> None:
    async with WebhookReceiver() as fake, engine_medic(db_url, tmp_path, clock) as medic:
        await save(
            medic,
            {
                "slug": "w",
                "steps": [
                    {"name": "before", "type": "webhook", "params": {"url": fake.url("/a")}},
                    {"name": "pause", "type": "wait", "params": {"seconds": 3600}},
                    {"name": "after", "type": "webhook", "params": {"url": fake.url("/b")}},
                ],
            },
        )
        run = await medic.runs.start("w", {}, actor=ACTOR)
        await medic.engine.run_once()
        deadline = (await medic.runs.get(run["id"]))["next_at"]
        assert deadline == "2026-03-01T13:00:00Z"
        # At the deadline the engine commits "running" and dies before recording the outcome.
        clock.advance(3600)
        async with medic.db.transaction() as session:
            await session.execute(
                update(PlaybookExecution)
                .where(PlaybookExecution.id == run["id"])
                .values(state="running", lease_owner="dead", lease_until=clock.now())
            )
        clock.advance(LEASE + 1)
        done = await run_until_settled(medic, clock)
        assert done["state"] == "succeeded"
        pause = [s for s in done["steps"] if s["name"] == "pause"]
        assert [(s["attempt"], s["state"]) for s in pause] == [(1, "unknown"), (2, "succeeded")]
        assert pause[1]["output"] == {"waited_until": "2026-03-01T13:00:00+00:00"}
        assert (fake.count("/a"), fake.count("/b")) == (1, 1)


async def test_a_restart_during_a_long_wait_keeps_its_deadline(
    db_url: str, tmp_path: Path, clock: FakeClock
) -> None:
    async with WebhookReceiver() as fake:
        async with engine_medic(db_url, tmp_path, clock) as medic:
            await save(
                medic,
                {
                    "slug": "long",
                    "steps": [
                        {"name": "pause", "type": "wait", "params": {"seconds": 3600}},
                        {"name": "after", "type": "webhook", "params": {"url": fake.url("/b")}},
                    ],
                },
            )
            run = await medic.runs.start("long", {}, actor=ACTOR)
            await medic.engine.run_once()
        clock.advance(1800)
        async with engine_medic(db_url, tmp_path, clock) as restarted:
            await restarted.engine.run_once()
            assert (await restarted.runs.get(run["id"]))["next_at"] == "2026-03-01T13:00:00Z"
            clock.advance(1799)
            await restarted.engine.run_once()
            assert fake.requests == []
            clock.advance(1)
            await restarted.engine.run_once()
            done = await restarted.runs.get(run["id"])
        assert done["state"] == "succeeded"
        assert [(s["name"], s["attempt"]) for s in done["steps"]] == [("pause", 1), ("after", 1)]
        assert fake.count("/b") == 1


async def test_two_engines_on_one_database_run_every_step_of_50_runs_exactly_once(
    db_url: str, tmp_path: Path, clock: FakeClock
) -> None:
    runs = 50
    async with (
        WebhookReceiver() as fake,
        engine_medic(db_url, tmp_path / "a", clock, playbook_claim_batch=7) as first,
        engine_medic(db_url, tmp_path / "b", clock, playbook_claim_batch=7) as second,
    ):
        claimed = {"first": 0, "second": 0}
        for n in range(runs):
            await save(
                first,
                {
                    "slug": f"p{n}",
                    "steps": [
                        {"name": "a", "type": "webhook", "params": {"url": fake.url(f"/{n}/a")}},
                        {"name": "pause", "type": "wait", "params": {"seconds": 5}},
                        {"name": "b", "type": "webhook", "params": {"url": fake.url(f"/{n}/b")}},
                    ],
                },
            )
            await (first if n % 2 else second).runs.start(f"p{n}", {}, actor=ACTOR)
        for _ in range(40):
            one, two = await asyncio.gather(first.engine.run_once(), second.engine.run_once())
            claimed["first"] += one.claimed
            claimed["second"] += two.claimed
            page = await first.runs.list(state="succeeded", limit=500)
            if len(page.items) == runs:
                break
            clock.advance(5)
        assert len(page.items) == runs
        assert claimed["first"] > 0 and claimed["second"] > 0, claimed  # both took part
        assert sorted(fake.paths()) == sorted(f"/{n}/{s}" for n in range(runs) for s in "ab")
