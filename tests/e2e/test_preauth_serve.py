"""``medic serve`` itself, attacked before authentication: its HTTP port closes a slow-header
client at MEDIC_HTTP_HEADER_TIMEOUT, answers an over-long URL with a 414 problem document, and
refuses a source that keeps sending unknown keys (429) while another source is served.

The in-process tests (tests/integration/test_http_connection_limits.py,
test_preauth_limits.py) cover each limit; this proves the real process listens with them.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest

from support.http_port import answer_to_a_slow_head, client_from, open_from, read_response
from support.server import ServerProcess

pytestmark = pytest.mark.e2e

HEADER_TIMEOUT = 1.0
MARGIN = 3.0


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServerProcess]:
    process = ServerProcess(
        tmp_path,
        env={
            "MEDIC_HTTP_HEADER_TIMEOUT": str(HEADER_TIMEOUT),
            "MEDIC_AUTH_FAILURE_BURST": "3",
            "MEDIC_AUTH_FAILURE_RATE": "0.001",
        },
    )
    process.start()
    try:
        yield process
    finally:
        process.close()


async def test_medic_serve_bounds_what_unauthenticated_clients_can_do(
    server: ServerProcess,
) -> None:
    # A client sending its request head a byte every 50 ms is cut off at the header timeout.
    status, headers, _, seconds = await answer_to_a_slow_head(
        server.url, 0.05, HEADER_TIMEOUT + MARGIN
    )
    assert status == 408 and headers["content-type"] == "application/problem+json"
    assert seconds < HEADER_TIMEOUT + MARGIN

    # An over-long URL is a problem document, not aiohttp's plain text.
    reader, writer = await open_from(server.url)
    writer.write(b"GET /api/v1/services?q=" + b"a" * 9000 + b" HTTP/1.1\r\nHost: m\r\n\r\n")
    status, headers, body = await read_response(reader)
    writer.close()
    assert status == 414 and headers["content-type"] == "application/problem+json"
    assert json.loads(body)["status"] == 414

    # Unknown keys from one source: 401 until its budget is spent, then 429; another source
    # with the admin key is served.
    async def services(source: str, token: str) -> int:
        async with client_from(source) as session:
            response = await session.get(
                f"{server.url}/api/v1/services", headers={"Authorization": f"Bearer {token}"}
            )
            return response.status

    for _ in range(3):
        assert await services("127.0.0.1", f"medic_{secrets.token_hex(6)}_{'x' * 43}") == 401
    assert await services("127.0.0.1", f"medic_{secrets.token_hex(6)}_{'x' * 43}") == 429
    assert server.admin_key is not None
    assert await services("127.0.0.2", server.admin_key) == 200
