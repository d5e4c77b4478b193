"""``medic serve`` end to end inside the test process (so it is measured by coverage):
it migrates, prints the banner with the admin key once, serves, and stops on SIGTERM."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

import aiohttp
import pytest

from medic_core.server.serve import serve
from medic_core.settings import Settings
from support.postgres import free_port


async def _wait_healthy(url: str) -> None:
    async with aiohttp.ClientSession() as session:
        for _ in range(200):
            try:
                async with session.get(f"{url}/health") as response:
                    if response.status == 200:
                        return
            except aiohttp.ClientConnectionError:
                pass
            await asyncio.sleep(0.05)
    raise AssertionError("server did not become healthy")


async def test_serve_prints_key_once_serves_and_stops_on_sigterm(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    port = free_port()
    settings = Settings.load({}, data_dir=str(tmp_path), port=port)
    task = asyncio.create_task(serve(settings))
    await _wait_healthy(f"http://127.0.0.1:{port}")
    out = capsys.readouterr().out
    assert f"Medic is running at http://127.0.0.1:{port}" in out
    token = next(w for w in out.split() if w.startswith("medic_"))
    async with (
        aiohttp.ClientSession() as session,
        session.get(
            f"http://127.0.0.1:{port}/api/v1/services",
            headers={"Authorization": f"Bearer {token}"},
        ) as response,
    ):
        assert response.status == 200
    os.kill(os.getpid(), signal.SIGTERM)
    await asyncio.wait_for(task, 15)

    # Second start on the same database: no key is printed again.
    task = asyncio.create_task(serve(settings))
    await _wait_healthy(f"http://127.0.0.1:{port}")
    out = capsys.readouterr().out
    assert "medic_" not in out and "Admin key:  created on first start" in out
    os.kill(os.getpid(), signal.SIGTERM)
    await asyncio.wait_for(task, 15)


async def test_a_replica_without_background_services_serves_but_does_not_monitor(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import medic_core.server.serve as serve_module

    started: list[bool] = []

    class Recording(serve_module.Medic):
        async def start(self, *, monitor: bool = True) -> None:
            started.append(monitor)
            await super().start(monitor=monitor)

    monkeypatch.setattr(serve_module, "Medic", Recording)
    port = free_port()
    settings = Settings.load({}, data_dir=str(tmp_path), port=port, background=False)
    task = asyncio.create_task(serve(settings))
    await _wait_healthy(f"http://127.0.0.1:{port}")
    assert "Background: off" in capsys.readouterr().out
    assert started == [False]
    os.kill(os.getpid(), signal.SIGTERM)
    await asyncio.wait_for(task, 15)


async def test_serve_explains_a_port_in_use(tmp_path: Path) -> None:
    port = free_port()
    blocker = await asyncio.start_server(lambda r, w: None, "127.0.0.1", port)
    try:
        with pytest.raises(SystemExit, match=f"cannot listen on 127.0.0.1:{port}"):
            await serve(Settings.load({}, data_dir=str(tmp_path), port=port))
    finally:
        blocker.close()
        await blocker.wait_closed()


async def test_serve_explains_a_grpc_port_in_use(tmp_path: Path) -> None:
    grpc_port = free_port()
    blocker = await asyncio.start_server(lambda r, w: None, "127.0.0.1", grpc_port)
    try:
        with pytest.raises(SystemExit, match=f"cannot listen on 127.0.0.1:{grpc_port} \\(gRPC\\)"):
            await serve(
                Settings.load({}, data_dir=str(tmp_path), port=free_port(), grpc_port=grpc_port)
            )
    finally:
        blocker.close()
        await blocker.wait_closed()


async def test_serve_explains_a_database_that_stayed_unreachable(tmp_path: Path) -> None:
    settings = Settings.load(
        {},
        database_url="postgresql://x@127.0.0.1:1/none",
        db_connect_timeout=0.5,
        db_start_wait=1.0,
        port=free_port(),
    )
    with pytest.raises(SystemExit, match=r"cannot prepare the database .* stayed unavailable"):
        await serve(settings)
