"""Each claimed playbook execution is driven as its own task, on SQLite and PostgreSQL: a slow
step in one execution does not hold another's steps (nor the engine's claiming), at most
MEDIC_PLAYBOOK_MAX_ACTIVE_DRIVES executions are driven at once per process (a gauge counts
them), and ``stop()`` lets a drive finish its step and let go of the lease, cancelling only a
drive still busy after the timeout (its lease lapses and recovery takes over).

No timing is asserted: steps block on events the test opens.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from sqlalchemy import select

from conftest import make_settings
from medic_core.app import Medic
from medic_core.clock import FakeClock
from medic_core.events import Event
from medic_core.playbooks.engine import PlaybookEngine
from medic_core.plugins import hookimpl
from medic_core.plugins.interfaces import Done, Outcome, StepRun
from medic_core.store.models import PlaybookExecution
from support.playbook_rig import ACTOR, engine_medic, save


class Gate:
    """``acme.gate``: blocks until the test opens the gate its ``params.gate`` names."""

    name = "acme.gate"
    description = "Waits for the test to open a gate."
    params_schema: dict[str, Any] = {"type": "object"}
    idempotent_by_default = False

    def __init__(self) -> None:
        self.open: dict[str, asyncio.Event] = {}
        self.entered: dict[str, asyncio.Event] = {}
        self.calls: dict[str, int] = {}

    def gate(self, name: str) -> asyncio.Event:
        self.entered.setdefault(name, asyncio.Event())
        return self.open.setdefault(name, asyncio.Event())

    async def advance(self, params: dict[str, Any], run: StepRun) -> Outcome:
        name = str(params["gate"])
        self.calls[name] = self.calls.get(name, 0) + 1
        gate = self.gate(name)
        self.entered[name].set()
        await gate.wait()
        return Done({"gate": name})


class Acme:
    def __init__(self) -> None:
        self.gate = Gate()

    @hookimpl
    def medic_step_types(self) -> list[Any]:
        return [self.gate]


def gated(slug: str, *gates: str) -> dict[str, Any]:
    return {
        "slug": slug,
        "steps": [{"name": g, "type": "acme.gate", "params": {"gate": g}} for g in gates],
    }


def ended(medic: Medic) -> dict[int, asyncio.Event]:
    """Events set when a run ends, by run id (from the bus, after commit)."""
    seen: dict[int, asyncio.Event] = {}

    async def record(event: Event) -> None:
        if event.type == "playbook.execution" and event.data.get("state") == "succeeded":
            seen.setdefault(int(event.data["execution_id"]), asyncio.Event()).set()

    medic.bus.subscribe("test-ended", record)
    return seen


async def until(seen: dict[int, asyncio.Event], run_id: int) -> None:
    await asyncio.wait_for(seen.setdefault(run_id, asyncio.Event()).wait(), 30)


def drives_gauge(medic: Medic) -> float | None:
    return medic.metrics.registry.get_sample_value("medic_playbook_drives_active")


async def test_a_slow_step_in_one_run_does_not_delay_the_steps_of_another(
    db_url: str, tmp_path: Path, clock: FakeClock
) -> None:
    acme = Acme()
    async with engine_medic(
        db_url, tmp_path, clock, plugins=[("acme", acme)], playbook_claim_batch=1
    ) as medic:
        seen = ended(medic)
        await save(medic, gated("slow", "held"))
        await save(medic, gated("quick", "one", "two"))
        acme.gate.gate("held")
        acme.gate.gate("one").set()
        acme.gate.gate("two").set()
        slow = await medic.runs.start("slow", {}, actor=ACTOR)
        await medic.engine.start()
        try:
            await asyncio.wait_for(acme.gate.entered["held"].wait(), 30)
            quick = await medic.runs.start("quick", {}, actor=ACTOR)
            # Both steps of the quick run complete while the slow step still holds its drive.
            await until(seen, quick["id"])
            assert (await medic.runs.get(slow["id"]))["state"] == "running"
            assert not acme.gate.open["held"].is_set()
            acme.gate.open["held"].set()
            await until(seen, slow["id"])
        finally:
            acme.gate.open["held"].set()
            await medic.engine.stop()
        assert acme.gate.calls == {"held": 1, "one": 1, "two": 1}


async def test_at_most_max_active_drives_runs_are_driven_at_once(
    db_url: str, tmp_path: Path, clock: FakeClock
) -> None:
    acme = Acme()
    async with engine_medic(
        db_url, tmp_path, clock, plugins=[("acme", acme)], playbook_max_active_drives=1
    ) as medic:
        await save(medic, gated("a", "a"))
        await save(medic, gated("b", "b"))
        first = await medic.runs.start("a", {}, actor=ACTOR)
        second = await medic.runs.start("b", {}, actor=ACTOR)
        acme.gate.gate("a")
        acme.gate.gate("b")

        assert (await medic.engine.run_once(wait=False)).claimed == 1
        await asyncio.wait_for(acme.gate.entered["a"].wait(), 30)
        assert medic.engine.active_drives == 1
        assert drives_gauge(medic) == 1
        # Every slot is taken: the second run is not claimed (not even leased) meanwhile.
        assert (await medic.engine.run_once(wait=False)).claimed == 0
        async with medic.db.sessions() as session:
            lease = await session.scalar(
                select(PlaybookExecution.lease_owner).where(PlaybookExecution.id == second["id"])
            )
        assert lease is None

        acme.gate.gate("a").set()
        await medic.engine.wait_drives()
        assert drives_gauge(medic) == 0
        assert (await medic.runs.get(first["id"]))["state"] == "succeeded"
        acme.gate.gate("b").set()
        assert (await medic.engine.run_once()).claimed == 1
        assert (await medic.runs.get(second["id"]))["state"] == "succeeded"


async def test_stop_lets_the_step_in_progress_finish_and_lets_go_of_the_lease(
    db_url: str, tmp_path: Path, clock: FakeClock
) -> None:
    acme = Acme()
    async with engine_medic(db_url, tmp_path, clock, plugins=[("acme", acme)]) as medic:
        await save(medic, gated("two", "first", "second"))
        run = await medic.runs.start("two", {}, actor=ACTOR)
        acme.gate.gate("first")
        await medic.engine.start()
        await asyncio.wait_for(acme.gate.entered["first"].wait(), 30)
        stopping = asyncio.create_task(medic.engine.stop(timeout=30))
        await asyncio.sleep(0)  # let stop() begin: no new step starts after this one
        acme.gate.open["first"].set()
        await stopping
        assert medic.engine.active_drives == 0
        done = await medic.runs.get(run["id"])
        assert [(s["name"], s["state"]) for s in done["steps"]] == [("first", "succeeded")]
        assert "second" not in acme.gate.calls
        async with medic.db.sessions() as session:
            lease = await session.scalar(
                select(PlaybookExecution.lease_owner).where(PlaybookExecution.id == run["id"])
            )
        assert lease is None  # another replica may go on at once
        # Another replica goes on from the second step at once (no lease to wait out).
        acme.gate.gate("second").set()
        other = PlaybookEngine(
            medic.db, medic.clock, medic.bus, medic.metrics, medic.step_types, medic.settings
        )
        assert (await other.run_once()).claimed == 1
        assert (await medic.runs.get(run["id"]))["state"] == "succeeded"


async def test_stop_cancels_a_drive_still_busy_after_its_timeout(
    db_url: str, tmp_path: Path, clock: FakeClock
) -> None:
    acme = Acme()
    async with engine_medic(db_url, tmp_path, clock, plugins=[("acme", acme)]) as medic:
        await save(medic, gated("stuck", "never"))
        run = await medic.runs.start("stuck", {}, actor=ACTOR)
        acme.gate.gate("never")
        await medic.engine.start()
        await asyncio.wait_for(acme.gate.entered["never"].wait(), 30)
        await medic.engine.stop(timeout=0.01)
        assert medic.engine.active_drives == 0
        assert drives_gauge(medic) == 0
        # Its lease stays until it lapses: then recovery marks the step unknown.
        stuck = await medic.runs.get(run["id"])
        assert (stuck["state"], stuck["steps"][0]["state"]) == ("running", "running")


def test_max_active_drives_out_of_bounds_stops_medic_at_start_up(tmp_path: Path) -> None:
    for bad in (0, 10_001):
        settings = make_settings("", tmp_path, playbook_max_active_drives=bad)
        try:
            Medic(settings, plugins=[])
        except ValueError as exc:
            assert "MEDIC_PLAYBOOK_MAX_ACTIVE_DRIVES must be between 1 and 10000" in str(exc)
        else:
            raise AssertionError(f"{bad} was accepted")
