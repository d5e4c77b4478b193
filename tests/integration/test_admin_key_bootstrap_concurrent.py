"""Bootstrapping one supplied admin key from several replicas at once is idempotent.

The in-process counterpart of ``tests/e2e/test_admin_key_bootstrap_replicas.py``: several
``Medic`` instances on one database (SQLite and PostgreSQL) bootstrap the same
``MEDIC_ADMIN_KEY`` concurrently; each awaits in turn, so all of them pass "no key yet" before
any insert commits.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from sqlalchemy import select

from conftest import make_settings
from medic_core.app import Medic
from medic_core.audit import Actor
from medic_core.clock import FakeClock
from medic_core.errors import Conflict
from medic_core.store.models import ApiKey
from support.server import make_admin_key


async def test_replicas_bootstrapping_one_supplied_admin_key_at_once_all_succeed(
    db_url: str, tmp_path: Path, clock: FakeClock
) -> None:
    key = make_admin_key()
    replicas = [
        Medic(make_settings(db_url, tmp_path, admin_key=key), clock=clock) for _ in range(3)
    ]
    try:
        tokens = await asyncio.gather(*(m.ensure_admin_key() for m in replicas))
        assert tokens == [None, None, None]  # supplied: never printed, by any of them
        async with replicas[0].db.sessions() as session:
            keys = (await session.scalars(select(ApiKey))).all()
        assert [(k.key_id, k.name, k.scopes) for k in keys] == [
            (key.split("_")[1], "admin (bootstrap)", ["admin"])
        ]
        principal = await replicas[1].keys.authenticate(key)
        assert principal.scopes == frozenset({"admin"})
    finally:
        for medic in replicas:
            await medic.db.close()


async def test_creating_the_same_key_id_at_once_is_one_key_and_conflicts(
    db_url: str, tmp_path: Path, clock: FakeClock
) -> None:
    token = make_admin_key()
    replicas = [Medic(make_settings(db_url, tmp_path), clock=clock) for _ in range(2)]
    try:
        results = await asyncio.gather(
            *(
                m.keys.create(name="ci", scopes=["write"], actor=Actor("test"), token=token)
                for m in replicas
            ),
            return_exceptions=True,
        )
        created = [r for r in results if not isinstance(r, BaseException)]
        refused = [r for r in results if isinstance(r, BaseException)]
        assert len(created) == 1
        assert len(refused) == 1 and isinstance(refused[0], Conflict), refused
        assert "already exists" in str(refused[0])
    finally:
        for medic in replicas:
            await medic.db.close()
