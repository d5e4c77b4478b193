"""The guarded HTTP session the built-in step types that reach out share (``webhook``, the
``condition`` step's ``http_healthy`` check): one home for opening it lazily through
``medic_core.net.guard`` and closing it when the engine stops."""

from __future__ import annotations

import aiohttp
from aiohttp.abc import AbstractResolver

from medic_core.net.guard import OutboundPolicy, guarded_session


class Outbound:
    def __init__(
        self, policy: OutboundPolicy | None = None, *, resolver: AbstractResolver | None = None
    ) -> None:
        self.policy = policy or OutboundPolicy()
        self._resolver = resolver
        self._session: aiohttp.ClientSession | None = None

    def session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            # Per-request timeouts are given with each request; this one only bounds a default.
            self._session = guarded_session(self.policy, 300.0, resolver=self._resolver)
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
