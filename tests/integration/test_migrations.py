"""Migrations: they build exactly the schema of the models, and they reverse cleanly."""

from __future__ import annotations

from pathlib import Path

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Connection, inspect

from medic_core.store import Database
from medic_core.store.migrate import current_revision, head_revision, upgrade
from medic_core.store.models import Base


async def test_migrated_schema_matches_the_models(db_url: str) -> None:
    db = Database(db_url)
    try:

        def diff(conn: Connection) -> list[object]:
            context = MigrationContext.configure(conn, opts={"compare_type": True})
            return list(compare_metadata(context, Base.metadata))

        async with db.engine.connect() as conn:
            differences = await conn.run_sync(diff)
        assert differences == [], f"models and migrations differ: {differences}"
        assert await current_revision(db) == head_revision()
    finally:
        await db.close()


async def test_downgrade_to_base_and_back_up(tmp_path: Path) -> None:
    from alembic import command

    from medic_core.store.migrate import alembic_config

    db = Database(f"sqlite:///{tmp_path}/m.db")
    try:
        await upgrade(db)
        cfg = alembic_config()

        def down(conn: Connection) -> list[str]:
            cfg.attributes["connection"] = conn
            command.downgrade(cfg, "base")
            return [t for t in inspect(conn).get_table_names() if t != "alembic_version"]

        async with db.engine.begin() as conn:
            assert await conn.run_sync(down) == []
        await upgrade(db)
        assert await current_revision(db) == head_revision()
    finally:
        await db.close()
