"""Playbook runs survive a SIGKILL of the real ``medic serve``, on SQLite and PostgreSQL:

- a run killed during a long ``wait`` finishes after the restart at the deadline it had (the
  wait is not restarted) and no completed step runs twice (counted at the fake receiver);
- a run killed while a non-idempotent webhook waits for its answer is, after the restart,
  ``failed`` with ``outcome_unknown`` and the step ``unknown`` -- the receiver saw one request;
  with ``idempotent: true`` the step runs again and the run succeeds.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from support.fakes.webhook_receiver import WebhookReceiver
from support.server import ServerProcess, fresh_postgres_url

pytestmark = pytest.mark.e2e

#: The shortest lease: a killed server's runs are taken over 5 s after its last renewal.
ENV = {"MEDIC_OUTBOUND_ALLOW_NETWORKS": "127.0.0.1/32", "MEDIC_PLAYBOOK_LEASE": "5"}


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest) -> str:
    if request.param == "sqlite":
        return ""
    return fresh_postgres_url(request.getfixturevalue("pg_cluster"), "e2e_playbooks")


async def eventually(check: Callable[[], Awaitable[Any]], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = await check()
        if value:
            return value
        await asyncio.sleep(0.1)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


class Api:
    def __init__(self, server: ServerProcess) -> None:
        self.server = server

    async def call(self, method: str, path: str, body: Any = None) -> Any:
        async with (
            aiohttp.ClientSession(self.server.url, headers=self.server.headers) as http,
            http.request(method, path, json=body) as response,
        ):
            assert response.status < 300, (response.status, await response.text())
            return await response.json()

    async def run(self, run_id: int) -> dict[str, Any]:
        result: dict[str, Any] = await self.call("GET", f"/api/v1/playbook-runs/{run_id}")
        return result

    async def ended(self, run_id: int) -> dict[str, Any]:
        async def check() -> dict[str, Any] | None:
            run = await self.run(run_id)
            return run if run["state"] not in ("pending", "running", "waiting") else None

        result: dict[str, Any] = await eventually(check, 60, f"run {run_id} to end")
        return result


async def start(server: ServerProcess, definition: dict[str, Any]) -> tuple[Api, int]:
    await asyncio.to_thread(server.start)
    api = Api(server)
    await api.call("PUT", f"/api/v1/playbooks/{definition['slug']}", definition)
    run = await api.call("POST", f"/api/v1/playbooks/{definition['slug']}/runs", {})
    return api, run["id"]


async def test_a_run_killed_during_a_long_wait_finishes_at_its_deadline_after_restart(
    database_url: str, tmp_path: Path
) -> None:
    async with WebhookReceiver() as fake:
        definition = {
            "slug": "wait-through-a-crash",
            "steps": [
                {"name": "before", "type": "webhook", "params": {"url": fake.url("/before")}},
                {"name": "pause", "type": "wait", "params": {"seconds": 12}},
                {"name": "after", "type": "webhook", "params": {"url": fake.url("/after")}},
            ],
        }
        server = ServerProcess(tmp_path, database_url=database_url, env=ENV)
        try:
            api, run_id = await start(server, definition)

            async def waiting() -> dict[str, Any] | None:
                run = await api.run(run_id)
                return run if run["state"] == "waiting" else None

            deadline = (await eventually(waiting, 30, "the wait to start"))["next_at"]
            server.kill()
            await asyncio.to_thread(server.start)
            done = await api.ended(run_id)
        finally:
            server.close()
        assert done["state"] == "succeeded", done
        assert [(s["name"], s["attempt"], s["state"]) for s in done["steps"]] == [
            ("before", 1, "succeeded"),
            ("pause", 1, "succeeded"),
            ("after", 1, "succeeded"),
        ]
        # The deadline kept across the crash, not a new 12 s from the restart.
        waited = done["steps"][1]["output"]["waited_until"]
        assert waited.replace("+00:00", "Z") == deadline
        assert (fake.count("/before"), fake.count("/after")) == (1, 1)


@pytest.mark.parametrize("idempotent", [False, True])
async def test_a_run_killed_during_a_webhook_is_unknown_unless_the_step_is_idempotent(
    database_url: str, tmp_path: Path, idempotent: bool
) -> None:
    async with WebhookReceiver() as fake:
        fake.hold("/slow", times=1)
        step = {"name": "call", "type": "webhook", "params": {"url": fake.url("/slow")}}
        definition = {"slug": "cut", "steps": [{**step, "idempotent": idempotent}]}
        server = ServerProcess(tmp_path, database_url=database_url, env=ENV)
        try:
            api, run_id = await start(server, definition)
            await asyncio.wait_for(fake.arrived.wait(), 30)
            server.kill()
            await asyncio.to_thread(server.start)
            done = await api.ended(run_id)
        finally:
            server.close()
        if idempotent:
            assert done["state"] == "succeeded", done
            assert [(s["attempt"], s["state"]) for s in done["steps"]] == [
                (1, "unknown"),
                (2, "succeeded"),
            ]
            assert fake.count("/slow") == 2
        else:
            assert (done["state"], done["reason"]) == ("failed", "outcome_unknown"), done
            assert [(s["attempt"], s["state"]) for s in done["steps"]] == [(1, "unknown")]
            assert fake.count("/slow") == 1
