"""``Executions.health`` (the ``playbooks`` row of ``medic doctor``): ok while runs are taken in
time; degraded, saying how late, when an active run stays due with no engine taking it, and
when a run failed with an unknown outcome and waits for a human -- on SQLite and PostgreSQL."""

from __future__ import annotations

from sqlalchemy import update

from medic_core.app import Medic
from medic_core.audit import SYSTEM
from medic_core.clock import FakeClock
from medic_core.store.models import PlaybookExecution

PAUSE = {"slug": "pause", "steps": [{"name": "a", "type": "wait", "params": {"seconds": 5}}]}


async def test_due_runs_nobody_takes_and_unknown_outcomes_make_the_engine_degraded(
    medic: Medic, clock: FakeClock
) -> None:
    runs = medic.runs
    assert await runs.health(overdue_after=120) == ("ok", "0 active run(s), none overdue")
    await medic.playbooks.apply(PAUSE, actor=SYSTEM)
    run = await runs.start("pause", {}, actor=SYSTEM)
    clock.advance(120)  # due since it started; not yet later than the bound
    assert await runs.health(overdue_after=120) == ("ok", "1 active run(s), none overdue")

    clock.advance(90)  # nobody advanced it (the monitor, and so the engine, is not running)
    status, detail = await runs.health(overdue_after=120)
    assert status == "degraded"
    assert detail.startswith("1 active run(s) overdue, the oldest by 210 s")
    assert "medic serve" in detail

    async with medic.db.transaction() as session:
        await session.execute(
            update(PlaybookExecution)
            .where(PlaybookExecution.id == run["id"])
            .values(state="failed", reason="outcome_unknown", active_key=None, next_at=None)
        )
    status, detail = await runs.health(overdue_after=120)
    assert status == "degraded"
    assert detail.startswith("1 run(s) failed with an unknown step outcome and wait for a human")
