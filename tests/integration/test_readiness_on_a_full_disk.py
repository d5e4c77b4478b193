"""A full disk under SQLite: heartbeats are refused as "database full", /health/ready says so,
and both recover by themselves once space returns.

The database lives on a small tmpfs (``mount -t tmpfs -o size=...``: tests run as root) that a
filler file fills up. Before the fix readiness answered 200 throughout (its ``SELECT 1`` reads,
and reads work on a full disk) and clients were told "the database is unreachable".
"""

from __future__ import annotations

import contextlib
import errno
import shutil
import subprocess
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from conftest import START, auth, make_settings
from medic_core.app import Medic
from medic_core.audit import Actor
from medic_core.clock import FakeClock
from medic_core.server.http.app import build_app

HEARTBEATS = "/api/v1/heartbeats"
NOT_WRITABLE = "urn:medic:problem:database-not-writable"
CHUNK = b"\0" * 65_536


class Seconds:
    """A monotonic clock the test moves (the breaker's intervals, without sleeping)."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(mount)],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        pytest.skip(
            f"the kernel refused a tmpfs mount ({done.stderr.strip()}); the full-disk logic is "
            "still tested with an injected SQLITE_FULL in tests/unit/test_database_breaker.py"
        )
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def fill(path: Path) -> None:
    """Write ``path`` until the filesystem is full.

    Unbuffered: a buffered file keeps what a short write left over and tries it again when it
    is closed, so whether closing raised ENOSPC depended on how the free space fell (it did once
    the schema grew by a few tables)."""
    with path.open("wb", buffering=0) as fh:
        while True:
            try:
                if not fh.write(CHUNK):
                    return
            except OSError as exc:
                assert exc.errno == errno.ENOSPC, exc
                return


@pytest.fixture
async def medic(
    small_disk: Path, sqlite_template: Path, tmp_path: Path
) -> AsyncIterator[tuple[Medic, Seconds]]:
    shutil.copy(sqlite_template, small_disk / "medic.db")
    seconds = Seconds()
    settings = make_settings(f"sqlite:///{small_disk / 'medic.db'}", tmp_path)
    app = Medic(settings, clock=FakeClock(START), monotonic=seconds)
    await app.start(monitor=False)
    try:
        yield app, seconds
    finally:
        await app.stop()


@pytest.fixture
async def client(medic: tuple[Medic, Seconds]) -> AsyncIterator[TestClient[Any, Any]]:
    async with TestClient(TestServer(build_app(medic[0]))) as test_client:
        yield test_client


async def test_a_full_disk_fails_readiness_until_a_write_succeeds_again(
    medic: tuple[Medic, Seconds], client: TestClient[Any, Any], small_disk: Path
) -> None:
    app, seconds = medic
    token = await app.ensure_admin_key()
    assert token is not None
    await app.services.create(
        {"slug": "backup", "expectation": {"kind": "interval", "period": 60}}, actor=Actor("t")
    )
    ready = await client.get("/health/ready", headers=auth(token))
    assert ready.status == 200, await ready.text()

    filler = small_disk / "filler"
    fill(filler)
    refused = None
    for i in range(3000):  # each beat adds a row: soon the WAL or the file must grow
        response = await client.post(
            HEARTBEATS,
            json={"service": "backup", "message": f"{i:05d}" + "x" * 2000},
            headers=auth(token),
        )
        if response.status == 503:
            refused = response
            break
        assert response.status == 202 or response.status == 201, await response.text()
    assert refused is not None, "3000 heartbeats were stored on a full disk"
    problem = await refused.json()
    assert problem["type"] == NOT_WRITABLE, problem
    assert problem["cause"] == "full"
    assert "full" in problem["detail"] and "NOT stored" in problem["detail"], problem
    assert int(refused.headers["Retry-After"]) >= 1

    ready = await client.get("/health/ready", headers=auth(token))
    assert ready.status == 503
    database = (await ready.json())["checks"]["database"]
    assert database["status"] == "down" and database["detail"].startswith("full: "), database
    assert app.metrics.database_failures.labels("full")._value.get() >= 1

    # Time passes, the disk is still full: the readiness probe (a write) fails again.
    seconds.now += 5
    ready = await client.get("/health/ready", headers=auth(token))
    assert ready.status == 503

    # Reads still work on a full disk: a key lookup is not refused for it.
    services = await client.get("/api/v1/services", headers=auth(token))
    assert services.status == 200

    filler.unlink()
    seconds.now += 5
    ready = await client.get("/health/ready", headers=auth(token))
    assert ready.status == 200, await ready.text()
    stored = await client.post(HEARTBEATS, json={"service": "backup"}, headers=auth(token))
    assert stored.status in (201, 202), await stored.text()
    with contextlib.suppress(FileNotFoundError):
        filler.unlink()
