"""Two monitors (two replicas) on one database never alert twice for the same deadline."""

from __future__ import annotations

import asyncio
from pathlib import Path

from sqlalchemy import func, select

from conftest import make_settings
from medic_core.app import Medic
from medic_core.audit import Actor
from medic_core.clock import FakeClock
from medic_core.heartbeats import HeartbeatIn
from medic_core.store.models import Alert

ME = Actor("test")


async def test_concurrent_monitors_open_exactly_one_alert_per_overdue_service(
    db_url: str, tmp_path: Path, clock: FakeClock
) -> None:
    replicas = [
        Medic(make_settings(db_url, tmp_path, monitor_batch=7), clock=clock) for _ in range(2)
    ]
    first = replicas[0]
    await first.start(monitor=False)
    try:
        for n in range(40):
            await first.services.create(
                {"slug": f"svc-{n}", "expectation": {"kind": "interval", "period": 60}}, actor=ME
            )
        await first.writer.submit_many([HeartbeatIn(f"svc-{n}") for n in range(40)])
        clock.advance(61)

        async def drain(medic: Medic) -> int:
            claimed = 0
            while True:
                result = await medic.monitor.run_once()
                claimed += result.missed
                if not result.more:
                    return claimed

        claimed = await asyncio.gather(*(drain(m) for m in replicas))
        assert sum(claimed) == 40
        async with first.db.sessions() as session:
            alerts = await session.scalar(select(func.count()).select_from(Alert))
        assert alerts == 40
    finally:
        await first.stop()
        await replicas[1].stop()
