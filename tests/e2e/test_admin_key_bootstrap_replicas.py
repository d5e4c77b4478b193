"""Two replicas started at the same moment with one MEDIC_ADMIN_KEY both come up.

The Helm chart's shape: an init container runs ``medic db upgrade``, then every replica starts
``medic serve`` with ``MEDIC_AUTO_MIGRATE=false`` and the admin key from one secret. Each replica
sees no key yet and creates the supplied one; the loser of that race used to exit with
``UniqueViolationError ... api_keys_key_id_key`` (6 of 12 tries in the field).

Two processes spawned at once still reach the bootstrap tens of milliseconds apart, which is
longer than its check-then-insert takes, so on an idle test machine the race is rarely lost.
The test lines the two bootstraps up instead: it holds an exclusive lock on ``api_keys`` while
both replicas start, waits until both are blocked on that lock (``pg_locks``), and releases it,
so both ask "is there a key yet?" at the same instant -- what a loaded cluster does by chance.
Repeated, each try on a fresh database copied from a template migrated once by the real
``medic db upgrade`` (a copy takes a fraction of a second; migrating takes seconds), with the
replicas forked from a fork server that imported the server once (``support.warm``: each is its
own process running ``medic serve``'s entry point; only the seconds of importing are shared).
"""

from __future__ import annotations

import asyncio
import secrets
import subprocess
import time
import urllib.request
from pathlib import Path

import asyncpg
import pytest
from sqlalchemy import func, select

from medic_core.store import Database
from medic_core.store.models import ApiKey
from support.postgres import PgCluster
from support.server import ServerProcess, cli_env, fresh_postgres_url, make_admin_key, medic_bin
from support.warm import WarmServerProcess

pytestmark = pytest.mark.e2e

TRIES = 20


def medic_db_upgrade(url: str, data_dir: Path) -> None:
    done = subprocess.run(
        [str(medic_bin()), "db", "upgrade"],
        env=cli_env(data_dir, MEDIC_DATABASE_URL=url),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr


def stored_keys(url: str) -> int:
    async def count() -> int:
        db = Database(url)
        try:
            async with db.sessions() as session:
                return int(await session.scalar(select(func.count()).select_from(ApiKey)) or 0)
        finally:
            await db.close()

    return asyncio.run(count())


async def start_behind_a_lock(
    replicas: list[ServerProcess], url: str
) -> list[BaseException | None]:
    """Start every replica while ``api_keys`` is locked; release the lock once all of them wait
    on it; return what each ``start()`` raised (None: it came up)."""
    conn = await asyncpg.connect(url.replace("postgresql://", "postgres://", 1))
    try:
        locked = conn.transaction()
        await locked.start()
        await conn.execute("LOCK TABLE api_keys IN ACCESS EXCLUSIVE MODE")
        loop = asyncio.get_running_loop()
        starts = [loop.run_in_executor(None, server.start, 60.0) for server in replicas]
        deadline = time.monotonic() + 60.0
        while True:
            waiting = await conn.fetchval(
                "SELECT count(*) FROM pg_locks "
                "WHERE relation = 'api_keys'::regclass AND NOT granted"
            )
            if any(s.done() for s in starts):
                break  # one exited before the bootstrap: its start() says why
            if waiting == len(replicas):
                break
            assert time.monotonic() < deadline, f"only {waiting} replica(s) reached the bootstrap"
            await asyncio.sleep(0.02)
        await locked.commit()
    finally:
        await conn.close()
    done = await asyncio.gather(*starts, return_exceptions=True)
    return [d if isinstance(d, BaseException) else None for d in done]


async def stop_all(replicas: list[ServerProcess]) -> list[int]:
    loop = asyncio.get_running_loop()
    return list(await asyncio.gather(*(loop.run_in_executor(None, s.stop) for s in replicas)))


def answers_with(server: ServerProcess) -> int:
    request = urllib.request.Request(f"{server.url}/api/v1/services", headers=server.headers)
    with urllib.request.urlopen(request, timeout=10) as response:
        return int(response.status)


def test_replicas_started_at_once_with_one_admin_key_both_come_up(
    pg_cluster: PgCluster | None, tmp_path: Path
) -> None:
    if pg_cluster is not None:
        template = f"bootstrap_template_{secrets.token_hex(4)}"
        pg_cluster.create_database(template)
        medic_db_upgrade(pg_cluster.url(template), tmp_path)
    for attempt in range(TRIES):
        if pg_cluster is not None:
            name = f"bootstrap_{attempt}_{secrets.token_hex(4)}"
            pg_cluster.create_database(name, template=template)
            url = pg_cluster.url(name)
        else:
            url = fresh_postgres_url(None)  # MEDIC_TEST_POSTGRES_URL: migrated and emptied
        key = make_admin_key()
        replicas = [
            WarmServerProcess(
                tmp_path / f"try-{attempt}-{n}",
                database_url=url,
                admin_key=key,
                env={"MEDIC_AUTO_MIGRATE": "false"},
            )
            for n in range(2)
        ]
        try:
            errors = asyncio.run(start_behind_a_lock(replicas, url))
            assert errors == [None, None], f"try {attempt + 1} of {TRIES}: {errors}"
            assert [answers_with(server) for server in replicas] == [200, 200]
            assert stored_keys(url) == 1
            assert asyncio.run(stop_all(replicas)) == [0, 0]
        finally:
            for server in replicas:
                server.close()
