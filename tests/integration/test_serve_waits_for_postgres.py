"""``medic serve`` started before PostgreSQL waits for it (a log line per attempt), migrates
once it answers, and serves. Before the fix it exited at once ("cannot prepare the database
... Connection refused", rc 1). An error waiting cannot cure (a missing database) still ends it
at once."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from medic_core.server.serve import serve
from medic_core.settings import Settings
from support.postgres import PgCluster, free_port


@pytest.fixture
def cluster() -> Iterator[PgCluster]:
    pg = PgCluster()  # initialised, not started: Medic comes first
    try:
        pg.init()
        yield pg
    finally:
        pg.destroy()


def waiting_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == "medic_core.store.wait" and "waiting for the database" in r.getMessage()
    ]


async def test_serve_started_before_postgres_serves_once_it_is_up(
    cluster: PgCluster, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    port = free_port()
    settings = Settings.load(
        {},
        database_url=cluster.url("postgres"),
        data_dir=str(tmp_path),
        port=port,
        db_connect_timeout=1.0,
        db_start_wait=0.0,  # forever
    )
    task = asyncio.create_task(serve(settings))
    for _ in range(200):  # the first attempts fail (refused) and say so
        if len(waiting_lines(caplog)) >= 2 or task.done():
            break
        await asyncio.sleep(0.05)
    assert not task.done(), f"serve ended before PostgreSQL started: {task.exception()!r}"
    lines = waiting_lines(caplog)
    assert len(lines) >= 2, lines
    assert "attempt 1, unreachable" in lines[0] and "next attempt in" in lines[0], lines[0]

    await asyncio.to_thread(cluster.start)
    url = f"http://127.0.0.1:{port}"
    ready = None
    async with aiohttp.ClientSession() as http:
        for _ in range(300):  # back-off up to 10 s between attempts, then migrations
            try:
                async with http.get(f"{url}/health/ready") as response:
                    if response.status == 200:
                        ready = await response.json()
                        break
            except aiohttp.ClientConnectionError:
                pass  # not listening yet: serve is still waiting for the database
            assert not task.done(), f"serve ended: {task.exception()!r}"
            await asyncio.sleep(0.1)
    assert ready is not None, "medic serve never became ready after PostgreSQL started"
    assert any("answered after" in r.getMessage() for r in caplog.records)
    os.kill(os.getpid(), signal.SIGTERM)
    await asyncio.wait_for(task, 30)


async def test_serve_does_not_wait_for_a_database_that_does_not_exist(
    pg_cluster: PgCluster | None, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    if pg_cluster is not None:
        missing = pg_cluster.url("no_such_database")
    else:  # an outside server (MEDIC_TEST_POSTGRES_URL): the same server, a database it lacks
        missing = os.environ["MEDIC_TEST_POSTGRES_URL"].rsplit("/", 1)[0] + "/no_such_database"
    settings = Settings.load(
        {},
        database_url=missing,
        data_dir=str(tmp_path),
        port=free_port(),
        db_start_wait=0.0,
    )
    with pytest.raises(SystemExit, match="no_such_database"):
        await serve(settings)
    assert waiting_lines(caplog) == []
