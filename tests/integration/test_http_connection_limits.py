"""The HTTP port's own limits, attacked through real sockets before any key is checked.

Slow and idle connections are closed at their timeouts, connections over the caps are refused,
and over-long or unparseable request heads are answered with problem documents like every other
error. The server is ``GuardedRunner`` -- what ``medic serve`` listens with -- in this process
(``support.http_port.listening``), so the metrics are read directly. Timings are asserted only as
"closed within the timeout plus a margin".
"""

from __future__ import annotations

import asyncio
import json
import shutil
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from conftest import make_settings
from medic_core.app import Medic
from medic_core.clock import FakeClock
from support.http_port import answer_to_a_slow_head, closed, listening, open_from, read_response

PROBLEM = "application/problem+json"
MARGIN = 3.0  # seconds a close may come after its timeout on a busy, shared machine

Serve = Callable[..., AbstractAsyncContextManager[tuple[Medic, str]]]


@pytest.fixture
def serve(tmp_path: Path, sqlite_template: Path, clock: FakeClock) -> Serve:
    @asynccontextmanager
    async def run(**settings: Any) -> AsyncIterator[tuple[Medic, str]]:
        db = tmp_path / f"medic-{time.monotonic_ns()}.db"
        shutil.copy(sqlite_template, db)
        medic = Medic(make_settings(f"sqlite:///{db}", tmp_path, **settings), clock=clock)
        await medic.start(monitor=False)
        try:
            async with listening(medic) as url:
                yield medic, url
        finally:
            await medic.stop()

    return run


def closes(medic: Medic, reason: str) -> float:
    value = medic.metrics.registry.get_sample_value(
        "medic_http_connections_closed_total", {"reason": reason}
    )
    return value or 0.0


def refusals(medic: Medic, reason: str) -> float:
    value = medic.metrics.registry.get_sample_value(
        "medic_preauth_refusals_total", {"transport": "http", "reason": reason}
    )
    return value or 0.0


def problem_of(status: int, headers: dict[str, str], body: bytes, expected: int) -> dict[str, Any]:
    assert status == expected, body
    assert headers["content-type"] == PROBLEM
    document: dict[str, Any] = json.loads(body)
    assert document["status"] == expected
    assert document["title"] and document["detail"] and document["type"] == "about:blank"
    assert document["request_id"] == headers["x-request-id"]
    return document


async def get_health(writer: asyncio.StreamWriter, reader: asyncio.StreamReader) -> int:
    writer.write(b"GET /health HTTP/1.1\r\nHost: medic\r\n\r\n")
    status, _, _ = await read_response(reader)
    return status


# -- time: slow heads, idle connections, slow bodies ---------------------------------------------


async def test_a_client_sending_its_head_a_byte_at_a_time_is_closed_at_the_header_timeout(
    serve: Serve,
) -> None:
    async with serve(http_header_timeout=1.0) as (medic, url):
        status, headers, body, seconds = await answer_to_a_slow_head(url, 0.02, 1.0 + MARGIN)
        document = problem_of(status, headers, body, 408)
        assert "1 seconds" in document["detail"]
        assert seconds < 1.0 + MARGIN
        assert closes(medic, "header_timeout") == 1


async def test_a_connection_that_sends_nothing_is_closed_at_the_header_timeout(
    serve: Serve,
) -> None:
    async with serve(http_header_timeout=1.0) as (medic, url):
        reader, writer = await open_from(url)
        async with asyncio.timeout(1.0 + MARGIN):
            assert await reader.read(100) == b""  # closed without an answer: nothing was asked
        writer.close()
        assert closes(medic, "header_timeout") == 1


async def test_a_kept_alive_connection_may_idle_past_the_header_timeout_until_the_idle_timeout(
    serve: Serve,
) -> None:
    # Like an ALB's pool: idle longer than a head may take, then reused, then left idle.
    async with serve(http_header_timeout=0.5, http_idle_timeout=2.0) as (medic, url):
        reader, writer = await open_from(url)
        assert await get_health(writer, reader) == 200
        await asyncio.sleep(1.0)  # past the header timeout, within the idle timeout
        assert await get_health(writer, reader) == 200
        async with asyncio.timeout(2.0 + MARGIN):
            assert await reader.read(100) == b""
        writer.close()
        assert closes(medic, "idle_timeout") == 1
        assert closes(medic, "header_timeout") == 0


async def test_a_body_that_does_not_arrive_in_time_is_a_408_problem(serve: Serve) -> None:
    async with serve(http_body_timeout=1.0) as (medic, url):
        token = await medic.ensure_admin_key()
        reader, writer = await open_from(url)
        writer.write(
            b"POST /api/v1/heartbeats HTTP/1.1\r\nHost: medic\r\n"
            + f"Authorization: Bearer {token}\r\n".encode()
            + b"Content-Type: application/json\r\nContent-Length: 100\r\n\r\n"
            + b'{"service": '
        )
        async with asyncio.timeout(1.0 + MARGIN):
            status, headers, body = await read_response(reader)
            assert await closed(reader)
        writer.close()
        assert (
            "body did not arrive within 1 seconds"
            in problem_of(status, headers, body, 408)["detail"]
        )
        assert closes(medic, "body_timeout") == 1


async def test_an_unread_body_is_not_taken_for_the_next_request_head(serve: Serve) -> None:
    # A 401 is answered before the body is read; the rest of the body still arrives after it.
    async with serve(
        http_header_timeout=5.0, http_max_header_bytes=9000, http_max_url_bytes=1024
    ) as (medic, url):
        reader, writer = await open_from(url)
        body = b"x" * 30_000
        writer.write(
            b"POST /api/v1/heartbeats HTTP/1.1\r\nHost: medic\r\n"
            + b"Content-Type: application/json\r\n"
            + f"Content-Length: {len(body)}\r\n\r\n".encode()
            + body[:1000]
        )
        status, _, _ = await read_response(reader)
        assert status == 401
        for start in range(1000, len(body), 5000):
            writer.write(body[start : start + 5000])
            await writer.drain()
            await asyncio.sleep(0.05)
        assert await get_health(writer, reader) == 200
        writer.close()
        assert refusals(medic, "header_too_large") == 0


# -- connection caps -----------------------------------------------------------------------------


async def test_connections_over_the_per_source_cap_are_refused_and_other_sources_are_not(
    serve: Serve,
) -> None:
    async with serve(http_max_connections_per_source=3) as (medic, url):
        held = [await open_from(url, "127.0.0.2") for _ in range(3)]
        for reader, writer in held:
            assert await get_health(writer, reader) == 200  # admitted, and kept open
        reader, writer = await open_from(url, "127.0.0.2")
        async with asyncio.timeout(MARGIN):
            assert await closed(reader)  # refused at once, no answer
        writer.close()
        assert closes(medic, "max_connections_per_source") == 1

        other = await open_from(url, "127.0.0.3")
        assert await get_health(other[1], other[0]) == 200
        other[1].close()

        held[0][1].close()  # one of the three goes: there is room for another again
        await closed(held[0][0])
        async with asyncio.timeout(MARGIN):
            while True:
                reader, writer = await open_from(url, "127.0.0.2")
                try:
                    if await get_health(writer, reader) == 200:
                        break
                except ConnectionError:
                    await asyncio.sleep(0.05)  # the server has not seen the close yet
                finally:
                    writer.close()
        for _, writer in held[1:]:
            writer.close()


async def test_connections_over_the_total_cap_are_refused(serve: Serve) -> None:
    async with serve(http_max_connections=3) as (medic, url):
        held = [await open_from(url, f"127.0.0.{n}") for n in (2, 3, 4)]
        for reader, writer in held:
            assert await get_health(writer, reader) == 200
        reader, writer = await open_from(url, "127.0.0.5")
        async with asyncio.timeout(MARGIN):
            assert await closed(reader)
        writer.close()
        assert closes(medic, "max_connections") == 1
        assert medic.metrics.registry.get_sample_value("medic_http_connections_open") == 3
        for _, writer in held:
            writer.close()


async def test_trusted_proxies_are_exempt_from_the_per_source_cap(serve: Serve) -> None:
    async with serve(http_max_connections_per_source=2, trusted_proxies="127.0.0.4/32") as (
        medic,
        url,
    ):
        held = [await open_from(url, "127.0.0.4") for _ in range(5)]
        for reader, writer in held:
            assert await get_health(writer, reader) == 200
        for _, writer in held:
            writer.close()
        assert closes(medic, "max_connections_per_source") == 0


# -- request heads ------------------------------------------------------------------------------


async def raw_exchange(url: str, request: bytes) -> tuple[int, dict[str, str], bytes]:
    reader, writer = await open_from(url)
    writer.write(request)
    try:
        async with asyncio.timeout(MARGIN * 3):
            answer = await read_response(reader)
            assert await closed(reader)  # a refused head ends its connection
    finally:
        writer.close()
    return answer


async def test_an_over_long_url_is_a_414_problem(serve: Serve) -> None:
    async with serve(http_max_url_bytes=1024) as (medic, url):
        answer = await raw_exchange(
            url, b"GET /api/v1/services?q=" + b"a" * 2000 + b" HTTP/1.1\r\nHost: medic\r\n\r\n"
        )
        assert "1024 bytes" in problem_of(*answer, 414)["detail"]
        assert refusals(medic, "url_too_long") == 1
        # Just under the limit is served (401: no key), not refused.
        async with aiohttp.ClientSession() as session:
            response = await session.get(f"{url}/api/v1/services?q=" + "a" * 900)
            assert response.status == 401


async def test_an_over_long_header_line_is_a_431_problem(serve: Serve) -> None:
    async with serve(http_max_header_bytes=4096, http_max_url_bytes=1024) as (medic, url):
        answer = await raw_exchange(
            url, b"GET /health HTTP/1.1\r\nHost: medic\r\nX-Big: " + b"a" * 5000 + b"\r\n\r\n"
        )
        problem_of(*answer, 431)
        assert refusals(medic, "header_too_large") == 1


async def test_a_head_over_the_limit_in_total_is_a_431_problem(serve: Serve) -> None:
    async with serve(http_max_header_bytes=4096, http_max_url_bytes=1024, http_max_headers=500) as (
        medic,
        url,
    ):
        headers = b"".join(b"X-H%d: %s\r\n" % (n, b"v" * 50) for n in range(100))  # ~6 KB
        answer = await raw_exchange(
            url, b"GET /health HTTP/1.1\r\nHost: medic\r\n" + headers + b"\r\n"
        )
        assert "4096 bytes" in problem_of(*answer, 431)["detail"]
        assert refusals(medic, "header_too_large") == 1
        # A head just under the limit is served.
        reader, writer = await open_from(url)
        writer.write(b"GET /health HTTP/1.1\r\nHost: medic\r\n" + headers[:3900] + b"\r\n\r\n")
        assert (await read_response(reader))[0] in (200, 400)
        writer.close()


async def test_too_many_header_lines_is_a_431_problem(serve: Serve) -> None:
    async with serve(http_max_headers=10) as (_medic, url):
        headers = b"".join(b"X-H%d: v\r\n" % n for n in range(20))
        answer = await raw_exchange(
            url, b"GET /health HTTP/1.1\r\nHost: medic\r\n" + headers + b"\r\n"
        )
        assert "10 headers" in problem_of(*answer, 431)["detail"]


async def test_an_unparseable_request_is_a_400_problem(serve: Serve) -> None:
    async with serve() as (medic, url):
        answer = await raw_exchange(url, b"HELLO THERE\r\n\r\n")
        assert "not valid HTTP/1.1" in problem_of(*answer, 400)["detail"]
        assert refusals(medic, "malformed") == 1


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"http_max_header_bytes": 4096}, "must be larger than MEDIC_HTTP_MAX_URL_BYTES"),
        ({"http_header_timeout": 0}, "MEDIC_HTTP_HEADER_TIMEOUT must be positive"),
        ({"http_max_connections_per_source": -1}, "MEDIC_HTTP_MAX_CONNECTIONS_PER_SOURCE"),
    ],
)
def test_impossible_http_limits_stop_medic_at_start(
    tmp_path: Path, settings: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        Medic(make_settings(f"sqlite:///{tmp_path}/medic.db", tmp_path, **settings))
