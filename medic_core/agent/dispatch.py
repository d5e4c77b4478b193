"""The dispatch pass, on every replica agents connect to.

Every ``dispatch_interval`` seconds (and at once when an answer frees a slot of an agent) it
sends what was stored for the agents connected here and not sent yet, typically requests and
cancels that landed on another replica, or executions that waited for a free slot
(``Executions.dispatch`` decides what and how much). Every ``_KEY_CHECK`` it also ends the
streams whose API key was revoked or expired since they connected (``end_unauthorized``): the
key is checked once, at connect, and the pass is what runs on every replica holding streams.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from sqlalchemy import or_, select

from medic_core.agent.enrollment import key_of
from medic_core.agent.executions import Executions
from medic_core.agent.sessions import Session, Sessions
from medic_core.clock import Clock
from medic_core.passes import Pass, PassLoop
from medic_core.store import Database
from medic_core.store.models import ApiKey

log = logging.getLogger(__name__)

# How often each replica checks that the API keys of its open streams still hold.
_KEY_CHECK = timedelta(seconds=5)


class DispatchPass:
    def __init__(
        self,
        db: Database,
        clock: Clock,
        sessions: Sessions,
        executions: Executions,
        *,
        interval: float,
    ) -> None:
        self._db = db
        self._clock = clock
        self._sessions = sessions
        self._executions = executions
        self._keys_due: datetime | None = None  # when the pass next checks keys
        self._loop = PassLoop("agent-dispatch", self._pass, clock, max_sleep=interval)

    def wake(self) -> None:
        """Something owed may be sendable now (an answer freed a slot): look at once."""
        self._loop.wake()

    async def start(self) -> None:
        await self._loop.start()

    async def stop(self, timeout: float) -> None:
        await self._loop.stop(timeout)

    async def dispatch_once(self) -> tuple[int, bool]:
        """Send what was stored for the agents connected here and not sent yet, typically by
        another replica: ``(messages sent, more owed)`` (see ``Executions.dispatch``)."""
        return await self._executions.dispatch(self._sessions.values())

    async def _pass(self) -> Pass:
        _, more = await self.dispatch_once()
        now = self._clock.now()
        if self._keys_due is None or now >= self._keys_due:
            self._keys_due = now + _KEY_CHECK
            await self.end_unauthorized()
        return Pass(more, None)  # else look again after the interval (the loop's max_sleep)

    async def end_unauthorized(self) -> int:
        """End the streams whose API key was revoked or expired since they connected (on any
        replica): the key was checked once, at connect. Returns how many were ended.

        Runs every ``_KEY_CHECK`` on every replica holding streams (the dispatch pass), as one
        query over the distinct keys of its streams.
        """
        by_key: dict[str, list[Session]] = {}
        for session in self._sessions.values():
            key_id = key_of(session.actor)
            if key_id is not None:
                by_key.setdefault(key_id, []).append(session)
        if not by_key:
            return 0
        now = self._clock.now()
        async with self._db.sessions() as db:
            rows = await db.execute(
                select(ApiKey.key_id).where(
                    self._db.among(ApiKey.key_id, list(by_key), "key_ids"),
                    or_(ApiKey.revoked_at.is_not(None), ApiKey.expires_at <= now),
                )
            )
            gone = [row.key_id for row in rows]
        ended = 0
        for key_id in gone:
            for session in by_key[key_id]:
                if session.ended is None:
                    log.warning(
                        "ending the stream of agent %s: API key %s was revoked or expired",
                        session.agent_id,
                        key_id,
                        extra={"agent_id": session.agent_id, "key_id": key_id},
                    )
                    session.end("unauthenticated", f"API key {key_id} was revoked or expired")
                    ended += 1
        return ended
