"""The HTTP port as ``medic serve`` runs it, in the test's process, and raw-socket helpers.

``listening(medic)`` serves ``build_app(medic)`` through ``GuardedRunner`` (connection caps,
header/idle/body timeouts, head limits) on 127.0.0.1 and a free port, and yields the base URL;
aiohttp's ``TestServer`` would bypass those limits. ``client_from(address)`` is an aiohttp
session whose connections come from ``address`` (any of 127.0.0.0/8 reaches a server listening
on 127.0.0.1, so tests get distinct sources on one machine). ``read_response`` reads one raw
HTTP/1.1 response (status, headers, body) from a stream, for tests that write bytes themselves;
``answer_to_a_slow_head`` sends a request head a byte at a time and returns what came back.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
from aiohttp import web

from medic_core.app import Medic
from medic_core.server.http.app import build_app
from medic_core.server.http.listener import GuardedRunner


@asynccontextmanager
async def listening(medic: Medic) -> AsyncIterator[str]:
    runner = GuardedRunner(
        build_app(medic),
        limits=medic.http_limits,
        proxies=medic.trusted_proxies,
        metrics=medic.metrics,
        access_log=None,
    )
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield f"http://127.0.0.1:{site.port}"
    finally:
        await runner.cleanup()


def client_from(address: str, **kwargs: Any) -> aiohttp.ClientSession:
    connector = aiohttp.TCPConnector(local_addr=(address, 0), force_close=True)
    return aiohttp.ClientSession(connector=connector, **kwargs)


async def open_from(
    url: str, address: str = "127.0.0.1"
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A raw TCP connection to ``url``'s host and port, from ``address``."""
    host, _, port = url.removeprefix("http://").partition(":")
    return await asyncio.open_connection(host, int(port), local_addr=(address, 0))


async def read_response(reader: asyncio.StreamReader) -> tuple[int, dict[str, str], bytes]:
    """One HTTP/1.1 response with a Content-Length body: (status, headers, body)."""
    status_line = await reader.readline()
    if not status_line:
        raise ConnectionError("closed before a response")
    status = int(status_line.split()[1])
    headers: dict[str, str] = {}
    while (line := await reader.readline()) not in (b"\r\n", b""):
        name, _, value = line.decode("latin-1").partition(":")
        headers[name.strip().lower()] = value.strip()
    body = await reader.readexactly(int(headers.get("content-length", "0")))
    return status, headers, body


async def closed(reader: asyncio.StreamReader) -> bool:
    """True once the server closed the connection (EOF or reset), reading anything left."""
    try:
        while await reader.read(65536):
            pass
    except ConnectionError:
        pass
    return True


async def answer_to_a_slow_head(
    url: str, every: float, within: float
) -> tuple[int, dict[str, str], bytes, float]:
    """Send a request head to ``url`` one byte every ``every`` seconds (never finishing it) and
    read the answer and the close, for at most ``within`` seconds: (status, headers, body,
    seconds from the connect to the close)."""
    reader, writer = await open_from(url)
    started = time.monotonic()

    async def dribble() -> None:
        for byte in b"GET /health HTTP/1.1\r\nHost: medic\r\nX-Slow: " + b"a" * 100_000:
            writer.write(bytes([byte]))
            await asyncio.sleep(every)

    sender = asyncio.create_task(dribble())
    try:
        async with asyncio.timeout(within):
            status, headers, body = await read_response(reader)
            assert await closed(reader)
    finally:
        sender.cancel()
        writer.close()
    return status, headers, body, time.monotonic() - started
