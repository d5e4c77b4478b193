"""A database outage costs O(duration / MEDIC_DB_OUTAGE_LOG_EVERY) log lines, not one per
request: the first failure with its cause, a summary every N seconds, one line on recovery.

The SQLite database's directory disappears (as an unmounted volume would) while clients keep
sending heartbeats and reads for ten simulated minutes; the breaker's clock is the test's, so
no test time passes. Before the fix every refused request logged its own WARNING (192,000
lines in a 30-second PostgreSQL outage).
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from conftest import START, auth, make_settings
from medic_core.app import Medic
from medic_core.audit import Actor
from medic_core.clock import FakeClock
from medic_core.server.http.app import build_app

EVERY = 10.0
DURATION = 600.0
STEP = 0.2


class Seconds:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def medic(sqlite_template: Path, tmp_path: Path) -> AsyncIterator[tuple[Medic, Seconds]]:
    data = tmp_path / "data"
    data.mkdir()
    shutil.copy(sqlite_template, data / "medic.db")
    seconds = Seconds()
    settings = make_settings(f"sqlite:///{data / 'medic.db'}", tmp_path, db_outage_log_every=EVERY)
    app = Medic(settings, clock=FakeClock(START), monotonic=seconds)
    await app.start(monitor=False)
    try:
        yield app, seconds
    finally:
        await app.stop()


async def test_an_outage_is_logged_in_a_line_per_interval_not_a_line_per_request(
    medic: tuple[Medic, Seconds],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    app, seconds = medic
    token = await app.ensure_admin_key()
    assert token is not None
    await app.services.create(
        {"slug": "backup", "expectation": {"kind": "interval", "period": 60}}, actor=Actor("t")
    )
    async with TestClient(TestServer(build_app(app))) as client:
        assert (
            await client.post("/api/v1/heartbeats", json={"service": "backup"}, headers=auth(token))
        ).status in (201, 202)
        # The volume goes away: no connection can open the file any more.
        await app.db.engine.dispose()
        (tmp_path / "data").rename(tmp_path / "gone")
        caplog.clear()
        caplog.set_level(logging.INFO)
        statuses: dict[int, int] = {}
        causes: set[str] = set()
        requests = 0
        while seconds.now < 1000.0 + DURATION:
            for response in (
                await client.post(
                    "/api/v1/heartbeats", json={"service": "backup"}, headers=auth(token)
                ),
                await client.get("/api/v1/services", headers=auth(token)),
            ):
                statuses[response.status] = statuses.get(response.status, 0) + 1
                body: dict[str, Any] = await response.json()
                causes.add(body.get("cause", ""))
                requests += 1
            seconds.now += STEP
        assert statuses == {503: requests}, statuses
        assert causes == {"unreachable"}
        during = [r for r in caplog.records if r.levelno >= logging.WARNING]

        (tmp_path / "gone").rename(tmp_path / "data")
        seconds.now += 5
        ok = await client.post(
            "/api/v1/heartbeats", json={"service": "backup"}, headers=auth(token)
        )
        assert ok.status in (201, 202), await ok.text()

    bound = DURATION / EVERY + 2
    assert len(during) <= bound, (
        f"{len(during)} WARNING lines for {requests} refused requests in a {DURATION:.0f} s "
        f"outage (at most {bound:.0f} expected), e.g. {[r.getMessage() for r in during[:5]]}"
    )
    messages = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert "is failing (unreachable)" in messages[0] and "unable to open" in messages[0]
    assert any("still failing (unreachable)" in m and "refused" in m for m in messages)
    assert "recovered after" in messages[-1], messages[-3:]
    assert not any("Traceback" in (r.exc_text or "") for r in caplog.records)
