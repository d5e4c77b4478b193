"""The playbook engine's edges, on SQLite and PostgreSQL: a third-party step type runs through
``advance`` like a built-in; a run whose step type went away fails ``step_type_not_runnable``;
the lease is renewed while a step runs longer than it (no other engine takes the run over); a
webhook to a destination the outbound guard refuses fails; a template naming a missing
variable fails the step naming where; a large output is stored truncated.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from sqlalchemy import select

from medic_core.clock import FakeClock
from medic_core.playbooks.engine import PlaybookEngine
from medic_core.plugins import hookimpl
from medic_core.plugins.interfaces import Done, Later, Outcome, StepRun
from medic_core.store.models import PlaybookExecution
from support.playbook_rig import ACTOR, engine_medic, run_until_settled, save

LEASE = 6


class Slow:
    """A step that runs past the lease: it moves the fake clock beyond it, then waits."""

    name = "acme.slow"
    description = "Runs longer than the engine's lease."
    params_schema: dict[str, Any] = {"type": "object"}
    idempotent_by_default = False

    def __init__(self) -> None:
        self.calls = 0
        self.inside = asyncio.Event()
        self.go = asyncio.Event()

    async def advance(self, params: dict[str, Any], run: StepRun) -> Outcome:
        self.calls += 1
        run.clock.advance(LEASE + 1)
        self.inside.set()
        await self.go.wait()
        if "again" not in run.state:
            return Later(run.clock.now(), {"again": True})
        return Done({"calls": self.calls, "attempt": run.attempt, "big": "x" * 5000})


class Acme:
    def __init__(self) -> None:
        self.slow = Slow()

    @hookimpl
    def medic_step_types(self) -> list[Any]:
        return [self.slow]


async def test_the_lease_is_renewed_while_a_third_party_step_runs_past_it(
    db_url: str, tmp_path: Path, clock: FakeClock
) -> None:
    acme = Acme()
    async with engine_medic(
        db_url,
        tmp_path,
        clock,
        plugins=[("acme", acme)],
        playbook_step_output_bytes=1024,
        playbook_lease=LEASE,
    ) as medic:
        await save(
            medic, {"slug": "slow", "steps": [{"name": "s", "type": "acme.slow", "params": {}}]}
        )
        run = await medic.runs.start("slow", {}, actor=ACTOR)
        task = asyncio.create_task(medic.engine.run_once())
        await asyncio.wait_for(acme.slow.inside.wait(), 30)

        async def renewed() -> bool:
            async with medic.db.sessions() as session:
                until = await session.scalar(
                    select(PlaybookExecution.lease_until).where(PlaybookExecution.id == run["id"])
                )
            return until is not None and until > clock.now()

        for _ in range(100):  # the renewal runs every third of the lease (2 s of real time)
            if await renewed():
                break
            await asyncio.sleep(0.1)
        other = PlaybookEngine(
            medic.db, clock, medic.bus, medic.metrics, medic.step_types, medic.settings
        )
        assert (await other.run_once()).claimed == 0
        acme.slow.go.set()
        await task
        done = await run_until_settled(medic, clock)
        assert done["state"] == "succeeded"
        assert [(s["attempt"], s["state"]) for s in done["steps"]] == [(1, "succeeded")]
        assert acme.slow.calls == 2  # Later, then Done: never a second attempt
        output = done["steps"][0]["output"]
        assert output["truncated"] is True and len(output["text"].encode()) <= 1024


async def test_a_run_whose_step_type_went_away_fails_step_type_not_runnable(
    db_url: str, tmp_path: Path, clock: FakeClock
) -> None:
    acme = Acme()
    async with engine_medic(db_url, tmp_path, clock, plugins=[("acme", acme)]) as medic:
        await save(
            medic, {"slug": "gone", "steps": [{"name": "s", "type": "acme.slow", "params": {}}]}
        )
        run = await medic.runs.start("gone", {}, actor=ACTOR)
    async with engine_medic(db_url, tmp_path, clock) as without:  # the plugin was removed
        await without.engine.run_once()
        done = await without.runs.get(run["id"])
    assert (done["state"], done["reason"]) == ("failed", "step_type_not_runnable")
    assert "acme.slow" in done["detail"]
    assert acme.slow.calls == 0


async def test_a_webhook_to_a_refused_destination_fails_and_sends_nothing(
    db_url: str, tmp_path: Path, clock: FakeClock
) -> None:
    # No MEDIC_OUTBOUND_ALLOW_NETWORKS here: loopback and private addresses are refused.
    async with engine_medic(db_url, tmp_path, clock, outbound_allow_networks="") as medic:
        url = "http://127.0.0.1:9/hook"
        await save(
            medic,
            {"slug": "ssrf", "steps": [{"name": "h", "type": "webhook", "params": {"url": url}}]},
        )
        await medic.runs.start("ssrf", {}, actor=ACTOR)
        done = await run_until_settled(medic, clock)
    assert (done["state"], done["reason"]) == ("failed", "step_failed")
    assert done["steps"][0]["error"].startswith("destination refused")


async def test_a_template_naming_a_missing_variable_fails_the_step_naming_where(
    db_url: str, tmp_path: Path, clock: FakeClock
) -> None:
    async with engine_medic(db_url, tmp_path, clock) as medic:
        step = {
            "name": "h",
            "type": "webhook",
            "params": {"url": "http://127.0.0.1/{{ vars.nope }}"},
        }
        await save(medic, {"slug": "typo", "steps": [step]})
        await medic.runs.start("typo", {}, actor=ACTOR)
        done = await run_until_settled(medic, clock)
    assert done["state"] == "failed"
    error = done["steps"][0]["error"]
    assert error.startswith("steps[0].params.url: UndefinedError") and "nope" in error
