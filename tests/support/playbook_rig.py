"""Helpers for playbook-engine tests: a Medic whose outbound guard lets the engine reach the
fake webhook receiver on 127.0.0.1 (``support.fakes.webhook_receiver``), saving a playbook, and
driving passes with a fake clock until a run ends."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from conftest import make_settings
from medic_core.app import Medic
from medic_core.audit import Actor
from medic_core.clock import FakeClock

ACTOR = Actor("test")


@asynccontextmanager
async def engine_medic(
    db_url: str,
    tmp_path: Path,
    clock: FakeClock,
    plugins: list[tuple[str, object]] | None = None,
    **overrides: Any,
) -> AsyncIterator[Medic]:
    """A Medic whose engine is stepped by hand (``medic.engine.run_once()``) and whose
    outbound guard allows loopback (the fake receiver)."""
    settings = make_settings(
        db_url, tmp_path, **{"outbound_allow_networks": "127.0.0.1/32", **overrides}
    )
    app = Medic(settings, clock=clock, plugins=plugins or [])
    await app.start(monitor=False)
    try:
        yield app
    finally:
        await app.stop()


async def save(medic: Medic, definition: dict[str, Any]) -> None:
    await medic.playbooks.apply(definition, actor=ACTOR)


async def run_until_settled(medic: Medic, clock: FakeClock, *, step: float = 1.0) -> dict[str, Any]:
    """Drive passes, moving the clock to each next deadline, until no run is active; the
    last run's document."""
    for _ in range(500):
        result = await medic.engine.run_once()
        page = await medic.runs.list(limit=1)
        run = page.items[0]
        if run["state"] not in ("pending", "running", "waiting"):
            return await medic.runs.get(run["id"])
        if result.next_due is not None and result.next_due > clock.now():
            clock.set(result.next_due)
        else:
            clock.advance(step)
    raise AssertionError("the run did not settle")
