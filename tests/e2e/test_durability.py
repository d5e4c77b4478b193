"""A 2xx means stored: the real server is killed (SIGKILL) or stopped (SIGTERM) under concurrent
load, and every heartbeat that was answered 2xx is then looked up directly in the database."""

from __future__ import annotations

import asyncio
import signal
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from support.server import (
    Attempt,
    ServerProcess,
    acked_messages,
    fresh_postgres_url,
    heartbeat_load,
    stored_messages,
)

pytestmark = pytest.mark.e2e

SLUG = "load"
CLIENTS = 8
# Client i uses KINDS[i % 8]: mostly single JSON posts, one batch client, one ping client.
KINDS = ("single", "single", "batch", "single", "single", "single", "ping", "single")
MIN_ACKED = 300  # 2xx'd heartbeats required before the signal, so no test passes vacuously
LOAD_ENV = {"MEDIC_RATE_LIMIT": "0"}


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest) -> str:
    if request.param == "sqlite":
        return ""
    return fresh_postgres_url(request.getfixturevalue("pg_cluster"), "e2e_durable")


@pytest.fixture
def server(database_url: str, tmp_path: Path) -> Iterator[ServerProcess]:
    process = ServerProcess(tmp_path, database_url=database_url, env=LOAD_ENV)
    process.start()
    try:
        yield process
    finally:
        process.close()


async def register(server: ServerProcess, slug: str = SLUG) -> None:
    async with (
        aiohttp.ClientSession(server.url, headers=server.headers) as http,
        http.post(
            "/api/v1/services",
            json={"slug": slug, "expectation": {"kind": "interval", "period": 3600}},
        ) as response,
    ):
        assert response.status == 201, await response.text()


async def load_until_acked(
    server: ServerProcess, prefix: str
) -> tuple[asyncio.Task[list[Attempt]], list[Attempt], asyncio.Event]:
    """Start the load; return once at least MIN_ACKED heartbeats were answered 2xx."""
    attempts: list[Attempt] = []
    stop = asyncio.Event()
    assert server.admin_key
    task = asyncio.create_task(
        heartbeat_load(
            server.url,
            server.admin_key,
            SLUG,
            clients=CLIENTS,
            duration=30.0,
            max_requests=20_000,
            stop=stop,
            kinds=KINDS,
            prefix=prefix,
            attempts=attempts,
        )
    )
    deadline = time.monotonic() + 20
    while len(acked_messages(attempts)) < MIN_ACKED:
        if task.done() or time.monotonic() > deadline:
            stop.set()
            await asyncio.gather(task, return_exceptions=True)
            raise AssertionError(
                f"only {len(acked_messages(attempts))} heartbeats acknowledged before the "
                f"deadline; statuses {Counter(a.status for a in attempts)}\n{server.stderr[-3000:]}"
            )
        await asyncio.sleep(0.02)
    await asyncio.sleep(0.3)  # well into the load, not at its edge
    return task, attempts, stop


def summary(attempts: list[Attempt]) -> str:
    statuses = dict(Counter(a.status for a in attempts))
    return f"statuses {statuses}, kinds {dict(Counter(a.kind for a in attempts))}"


async def test_sigkill_under_load_loses_no_acknowledged_heartbeat(server: ServerProcess) -> None:
    await register(server)
    task, attempts, stop = await load_until_acked(server, "kill")

    assert server.kill() == -signal.SIGKILL
    killed_at = time.monotonic()
    await asyncio.sleep(0.5)  # the clients run into the dead server
    stop.set()
    await task

    acked = acked_messages(attempts)
    assert len(acked) >= MIN_ACKED, summary(attempts)
    assert {a.kind for a in attempts if a.acked} == set(KINDS), summary(attempts)
    assert any(a.status is None and a.ended >= killed_at for a in attempts), (
        "no request failed after the kill: the kill did not land in the middle of the load; "
        + summary(attempts)
    )
    unexpected = {a.status for a in attempts if a.status is not None} - {200, 201}
    assert not unexpected, f"non-2xx answers before the kill: {summary(attempts)}"

    stored = await stored_messages(server.database_url, SLUG)
    sent = {m for a in attempts for m in a.messages}
    missing = acked - stored
    assert not missing, (
        f"{len(missing)} of {len(acked)} heartbeats answered 2xx are NOT in the database after "
        f"SIGKILL, e.g. {sorted(missing)[:10]}"
    )
    assert stored <= sent
    # Unacknowledged but stored is allowed (committed, then killed before the answer went out).

    # The database is usable after the crash: the server starts on it and ingests again.
    server.start()
    async with (
        aiohttp.ClientSession(server.url, headers=server.headers) as http,
        http.post(
            "/api/v1/heartbeats", json={"service": SLUG, "message": "after-restart"}
        ) as response,
    ):
        assert response.status == 201, await response.text()
    assert "after-restart" in await stored_messages(server.database_url, SLUG)
    assert server.stop() == 0, server.stderr


async def test_sigterm_under_load_answers_2xx_only_for_stored_heartbeats(
    server: ServerProcess,
) -> None:
    await register(server)
    task, attempts, stop = await load_until_acked(server, "term")
    assert server.process is not None

    signalled_at = time.monotonic()
    server.process.send_signal(signal.SIGTERM)
    code = await asyncio.to_thread(server.process.wait, 20)
    stopped_in = time.monotonic() - signalled_at
    await asyncio.sleep(0.3)
    stop.set()
    await task

    assert code == 0, f"exit code {code} after SIGTERM\n{server.stderr[-3000:]}"
    assert stopped_in < 10, f"graceful stop took {stopped_in:.1f}s"
    assert "medic stopped" in server.stderr
    assert "unwritten" not in server.stderr, server.stderr[-3000:]

    # Every request either got a 2xx, a 503 (with Retry-After), or never got an answer.
    statuses = Counter(a.status for a in attempts)
    assert set(statuses) <= {200, 201, 503, None}, summary(attempts)
    refused = [a for a in attempts if a.status == 503]
    assert all(a.retry_after for a in refused), "a 503 without Retry-After"
    assert any(a.status is None or a.status == 503 for a in attempts if a.ended >= signalled_at), (
        "nothing was refused after SIGTERM: the signal did not land during the load; "
        + summary(attempts)
    )
    # The batch endpoint answers 200 with per-item results: items refused during shutdown
    # are not acknowledged (checked by the read-back below through `acked`).

    acked = acked_messages(attempts)
    assert len(acked) >= MIN_ACKED, summary(attempts)
    stored = await stored_messages(server.database_url, SLUG)
    missing = acked - stored
    assert not missing, (
        f"{len(missing)} of {len(acked)} heartbeats answered 2xx are NOT in the database after "
        f"SIGTERM, e.g. {sorted(missing)[:10]}"
    )
    assert stored <= {m for a in attempts for m in a.messages}
