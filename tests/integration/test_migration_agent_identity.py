"""Revision 0006 on a database with agents from before it, on SQLite and PostgreSQL: owners are
recovered from the audit log (only active keys), agents' own services are marked (not a user's
service an agent adopted), the output already stored is counted; and it downgrades cleanly.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from sqlalchemy import Connection, text

from medic_core.store import Database
from medic_core.store.migrate import alembic_config, current_revision, upgrade
from support.server import fresh_postgres_url

AT = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)


@pytest.fixture(params=["sqlite", "postgresql"])
def fresh_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/m.db"
    else:
        yield fresh_postgres_url(request.getfixturevalue("pg_cluster"), "m0006")


async def _to(db: Database, revision: str) -> None:
    """Move the database to ``revision``, up or down."""
    cfg = alembic_config()
    current = await current_revision(db)
    if current is None or current < revision:
        await upgrade(db, revision)
        return

    def down(conn: Connection) -> None:
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, revision)

    async with db.engine.begin() as conn:
        await conn.run_sync(down)


async def _insert(db: Database, table: str, **values: Any) -> None:
    columns = ", ".join(values)
    params = ", ".join(f":{name}" for name in values)
    async with db.engine.begin() as conn:
        await conn.execute(text(f"INSERT INTO {table} ({columns}) VALUES ({params})"), values)


async def _service(db: Database, id_: int, slug: str) -> None:
    await _insert(
        db,
        "services",
        id=id_,
        slug=slug,
        name=slug,
        tags="[]",
        priority="p3",
        description="",
        expectation='{"kind": "interval", "period": 60}',
        grace=0,
        state="new",
        recent_beats="[]",
        muted=False,
        created_at=AT,
        updated_at=AT,
    )


async def _agent(db: Database, id_: int, agent_id: str, service_id: int) -> None:
    await _insert(
        db,
        "agents",
        id=id_,
        agent_id=agent_id,
        hostname="h",
        version="0.1.0",
        os="linux",
        arch="x86_64",
        labels="{}",
        allowlist="{}",
        capabilities="[]",
        paused=False,
        status="offline",
        service_id=service_id,
        created_at=AT,
        updated_at=AT,
    )


async def _audit(db: Database, actor: str, action: str, kind: str, resource: str) -> None:
    await _insert(
        db, "audit_log", at=AT, actor=actor, action=action, resource_type=kind, resource_id=resource
    )


async def _key(db: Database, id_: int, key_id: str, *, revoked: bool = False) -> None:
    await _insert(
        db,
        "api_keys",
        id=id_,
        key_id=key_id,
        secret_hash="0" * 64,
        name=key_id,
        scopes='["agent"]',
        created_at=AT,
        revoked_at=AT if revoked else None,
    )


async def test_agents_from_before_are_bound_and_their_services_marked(fresh_url: str) -> None:
    db = Database(fresh_url)
    try:
        await _to(db, "0005")
        await _key(db, 1, "oldkey", revoked=True)
        await _key(db, 2, "newkey")
        await _key(db, 3, "thirdkey")
        for n, slug in enumerate(["agent-a", "agent-b", "agent-c", "agent-collide"], start=1):
            await _service(db, n, slug)
        await _agent(db, 1, "a", 1)  # latest entry by an active key: bound to it
        await _agent(db, 2, "b", 2)  # only a revoked key known: left unbound
        await _agent(db, 3, "c", 3)  # nothing known: unbound
        await _agent(db, 4, "collide", 4)  # adopted a service a person created
        await _audit(db, "key:thirdkey", "agent.register", "agent", "a")
        await _audit(db, "key:newkey", "agent.update", "agent", "a")
        await _audit(db, "key:newkey", "agent.hello_refused", "agent", "a")  # not an owner
        await _audit(db, "key:oldkey", "agent.register", "agent", "b")
        await _audit(db, "system", "service.create", "service", "1")
        await _audit(db, "key:admin1", "service.create", "service", "4")
        await _insert(
            db,
            "executions",
            id=1,
            execution_id="e1",
            agent_id="a",
            script="s",
            args="[]",
            env_names="[]",
            expected_sha256="0" * 64,
            requested_by="key:admin1",
            state="running",
            output_truncated=False,
            sent_count=1,
            created_at=AT,
            updated_at=AT,
        )
        for sequence, data in enumerate([b"abc", b"defgh"]):
            await _insert(
                db,
                "execution_output",
                execution_id=1,
                sequence=sequence,
                stream="stdout",
                data=data,
                truncated=False,
                received_at=AT,
            )

        await _to(db, "0006")
        assert await current_revision(db) == "0006"
        async with db.engine.connect() as conn:
            owners = dict((await conn.execute(text("SELECT agent_id, key_id FROM agents"))).all())
            marks = dict((await conn.execute(text("SELECT slug, agent_id FROM services"))).all())
            output = await conn.scalar(text("SELECT output_bytes FROM executions"))
        assert owners == {"a": "newkey", "b": None, "c": None, "collide": None}
        assert marks == {"agent-a": "a", "agent-b": "b", "agent-c": "c", "agent-collide": None}
        assert output == 8

        await _to(db, "0005")
        async with db.engine.connect() as conn:
            assert await conn.scalar(text("SELECT count(*) FROM agents")) == 4
        await _to(db, "0006")
        assert await current_revision(db) == "0006"
    finally:
        await db.close()
