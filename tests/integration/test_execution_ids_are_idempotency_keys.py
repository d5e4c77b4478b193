"""An execution requested with the caller's id (``medic.agents.execute(..., execution_id=...)``,
what a playbook's ``script`` step does) is stored once, on SQLite and PostgreSQL: asking again,
even concurrently, re-attaches to it (``delivery: existing``) and stores, audits and sends
nothing more; the id cannot be reused for another agent or script.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from sqlalchemy import func, select

from medic_core.audit import Actor
from medic_core.clock import FakeClock
from medic_core.errors import Conflict
from medic_core.store.models import AuditEntry, Execution
from support.agent_rows import add_agent
from support.playbook_rig import engine_medic

ME = Actor("test")
ID = "5d9c2f0e-6a7b-5c4d-8e9f-0a1b2c3d4e5f"


async def test_the_same_id_asked_twice_at_once_is_one_execution(
    db_url: str, tmp_path: Path, clock: FakeClock
) -> None:
    async with engine_medic(db_url, tmp_path, clock) as medic:
        await add_agent(medic, "web-1")
        agents = medic.plugin_context.agents
        answers = await asyncio.gather(
            *(
                agents.execute("web-1", "restart", ["nginx"], {}, None, actor=ME, execution_id=ID)
                for _ in range(4)
            )
        )
        assert {a["id"] for a in answers} == {ID}
        assert sorted(a["delivery"] for a in answers).count("existing") == 3
        async with medic.db.sessions() as session:
            rows = await session.scalar(select(func.count()).select_from(Execution))
            requested = await session.scalar(
                select(func.count())
                .select_from(AuditEntry)
                .where(AuditEntry.action == "execution.request")
            )
        assert (rows, requested) == (1, 1)
        again = await agents.execute(
            "web-1", "restart", ["nginx"], {}, None, actor=ME, execution_id=ID
        )
        assert (again["id"], again["delivery"]) == (ID, "existing")


async def test_an_id_names_one_request(db_url: str, tmp_path: Path, clock: FakeClock) -> None:
    async with engine_medic(db_url, tmp_path, clock) as medic:
        await add_agent(medic, "web-1", ("restart", "other"))
        await add_agent(medic, "web-2")
        agents = medic.plugin_context.agents
        await agents.execute("web-1", "restart", ["nginx"], {}, None, actor=ME, execution_id=ID)
        with pytest.raises(Conflict, match="an execution id names one request"):
            await agents.execute("web-2", "restart", ["nginx"], {}, None, actor=ME, execution_id=ID)
        with pytest.raises(Conflict):
            await agents.execute("web-1", "other", ["nginx"], {}, None, actor=ME, execution_id=ID)
