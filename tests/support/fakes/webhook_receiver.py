"""A webhook receiver on 127.0.0.1 verifying Medic's signature as docs/notifiers/webhook.md says.

It is written from that page alone — it does not import the notifier — so a change to the wire
format that the docs do not follow breaks these tests. Usage::

    async with WebhookReceiver(secret="s" * 32) as receiver:
        receiver.url("/hook")                 # http://127.0.0.1:<port>/hook
        receiver.respond(503, times=2, headers={"Retry-After": "7"})   # then 200 again
        receiver.redirect_to("/elsewhere")    # answer 302 to every request from now on
        receiver.hold("/slow", times=1)       # never answer the next request to /slow
        receiver.requests                     # ReceivedRequest(path, headers, body, verified...)

With a ``secret``, requests whose signature does not verify are answered 401 (as a real receiver
would) and recorded with ``verified=False`` and the ``reason``.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import time
from dataclasses import dataclass
from types import TracebackType
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestServer

TOLERANCE = 300  # seconds: the docs' replay window


def verify(secret: str, headers: Any, body: bytes, now: float | None = None) -> tuple[bool, str]:
    """Verify ``X-Medic-Signature`` per the docs; return (ok, reason)."""
    timestamp = headers.get("X-Medic-Timestamp", "")
    if not timestamp.isdigit():
        return False, "missing or malformed X-Medic-Timestamp"
    now = time.time() if now is None else now
    if abs(now - int(timestamp)) > TOLERANCE:
        return False, "timestamp outside the 5-minute window"
    expected = hmac.new(
        secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256
    ).hexdigest()
    offered = [
        part.strip()[3:]
        for part in headers.get("X-Medic-Signature", "").split(",")
        if part.strip().startswith("v1=")
    ]
    if not offered:
        return False, "no v1 signature"
    if any(hmac.compare_digest(expected, candidate) for candidate in offered):
        return True, ""
    return False, "signature mismatch"


@dataclass
class ReceivedRequest:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    verified: bool | None
    reason: str

    def json(self) -> Any:
        return json.loads(self.body)


class WebhookReceiver:
    def __init__(self, secret: str | None = None, port: int | None = None) -> None:
        self.secret = secret
        self.requests: list[ReceivedRequest] = []
        self._responses: list[tuple[int, dict[str, str], str]] = []
        self._redirect: str | None = None
        self._held: dict[str, int] = {}
        self._release = asyncio.Event()
        #: Set when any request arrives (tests wait for it, then clear it).
        self.arrived = asyncio.Event()
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._server = TestServer(app, host="127.0.0.1", port=port)

    @property
    def port(self) -> int:
        assert self._server.port is not None
        return self._server.port

    def url(self, path: str = "/hook", host: str = "127.0.0.1") -> str:
        return f"http://{host}:{self.port}{path}"

    async def start(self) -> WebhookReceiver:
        await self._server.start_server()
        return self

    async def close(self) -> None:
        self._release.set()
        await self._server.close()

    async def __aenter__(self) -> WebhookReceiver:
        return await self.start()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    def respond(
        self, status: int, *, times: int = 1, headers: dict[str, str] | None = None, text: str = ""
    ) -> None:
        """Answer the next ``times`` requests with ``status``."""
        self._responses.extend([(status, headers or {}, text)] * times)

    def redirect_to(self, location: str) -> None:
        self._redirect = location

    def hold(self, path: str, *, times: int = 1_000_000) -> None:
        """Record the next ``times`` requests to ``path`` and never answer them (until
        ``close``): the caller sees a request its receiver got, with no answer."""
        self._held[path] = times

    def paths(self) -> list[str]:
        return [r.path for r in self.requests]

    def count(self, path: str) -> int:
        return self.paths().count(path)

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        verified: bool | None = None
        reason = ""
        if self.secret is not None:
            verified, reason = verify(self.secret, request.headers, body)
        self.requests.append(
            ReceivedRequest(
                request.method, request.path, dict(request.headers), body, verified, reason
            )
        )
        self.arrived.set()
        if self._held.get(request.path, 0) > 0:
            self._held[request.path] -= 1
            await self._release.wait()
        if self._redirect is not None:
            raise web.HTTPFound(self._redirect)
        if verified is False:
            return web.Response(status=401, text=f"bad signature: {reason}")
        if self._responses:
            status, headers, text = self._responses.pop(0)
            return web.Response(status=status, headers=headers, text=text)
        return web.Response(status=200, text="ok")
