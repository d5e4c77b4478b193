"""Revision 0007 on a database with executions from before it, on SQLite and PostgreSQL: agents
have no advertised capacity yet (the server assumes the agent's default), the partial index of
what is owed keeps finding exactly what was owed before (never sent, or a cancel not sent), a
sent execution is never taken for owed, and it downgrades without losing a row (SQLite's batch
copy of ``agents`` would delete every execution through the foreign key's cascade).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import text
from test_migration_agent_identity import AT, _agent, _insert, _service, _to, fresh_url

from medic_core.store import Database
from medic_core.store.migrate import current_revision
from medic_core.store.models import EXECUTIONS_OWED

__all__ = ["fresh_url"]  # the fixture, imported for pytest


async def _execution(db: Database, id_: int, **values: Any) -> None:
    row: dict[str, Any] = {
        "id": id_,
        "execution_id": f"e{id_}",
        "agent_id": "a",
        "script": "s",
        "args": "[]",
        "env_names": "[]",
        "expected_sha256": "0" * 64,
        "requested_by": "key:admin1",
        "state": "pending",
        "output_truncated": False,
        "sent_count": 0,
        "created_at": AT,
        "updated_at": AT,
    }
    row.update(values)
    await _insert(db, "executions", **row)


async def _owed(db: Database) -> list[str]:
    async with db.engine.connect() as conn:
        query = f"SELECT execution_id FROM executions WHERE {EXECUTIONS_OWED} ORDER BY id"
        return list((await conn.scalars(text(query))).all())


async def test_what_was_owed_before_is_what_is_owed_after(fresh_url: str) -> None:
    db = Database(fresh_url)
    try:
        await _to(db, "0006")
        await _service(db, 1, "agent-a")
        await _agent(db, 1, "a", 1)
        await _execution(db, 1)  # never sent: owed
        await _execution(db, 2, state="running", sent_count=1, last_sent_at=AT)
        # Sent, yet without last_sent_at (no code path writes that; a hand-edited row could).
        await _execution(db, 3, sent_count=1)
        # Sent, and a cancel asked for and not sent yet: owed (the cancel).
        await _execution(db, 4, sent_count=1, last_sent_at=AT, cancel_requested_at=AT)
        await _insert(
            db,
            "execution_output",
            execution_id=2,
            sequence=0,
            stream="stdout",
            data=b"abc",
            truncated=False,
            received_at=AT,
        )

        await _to(db, "0007")
        assert await current_revision(db) == "0007"
        assert await _owed(db) == ["e1", "e4"]
        async with db.engine.connect() as conn:
            capacity = await conn.scalar(text("SELECT max_concurrent FROM agents"))
            refusals = (
                await conn.execute(text("SELECT capacity_refusals, send_after FROM executions"))
            ).all()
        assert capacity is None
        assert [tuple(row) for row in refusals] == [(0, None)] * 4

        await _to(db, "0006")
        async with db.engine.connect() as conn:
            sent = (await conn.scalars(text("SELECT sent_count FROM executions ORDER BY id"))).all()
            chunks = await conn.scalar(text("SELECT count(*) FROM execution_output"))
        assert list(sent) == [0, 1, 1, 1]
        assert chunks == 1
        await _to(db, "0007")
        assert await _owed(db) == ["e1", "e4"]
    finally:
        await db.close()
