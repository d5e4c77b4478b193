"""The service row each agent's alerts hang on: ``agent-<agent id>``, made at its first ``Hello``.

Alerts need a service, and routing, teams, priorities, mutes and maintenance windows are all
keyed by service, so each agent gets one (tag ``agent``) that operators configure like any
other. It carries the agent's ``agent_offline`` alerts and nothing else: it receives no
heartbeats, so it stays ``new`` and the monitor never claims it.

Only a service marked with the agent's id (``services.agent_id``, unique, set here) is the
agent's: a service people made is never adopted, even under the slug the agent would take
(people cannot create ``agent-`` slugs any more, but older ones exist). Then the agent's
service takes the first free slug of ``agent-<agent_id>-2``, ``-3``, ... ``-9``, else
``agent-<agent_id>-`` and 8 random hexadecimal digits: a slug never stops an alert from opening.

``AgentServices.of`` works for a whole batch of agents (the Hellos of a reconnecting fleet, the
agents one watch pass alerts on) in a constant number of statements: one query for their
services' ids and slugs, one for the slugs the missing ones would take, one insert, one audit
insert.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import NamedTuple

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from medic_core.audit import SYSTEM, AuditRecord, record_audit_many
from medic_core.services.registry import AGENT_SLUG_PREFIX
from medic_core.store import Database
from medic_core.store.models import Agent, Service

#: How many numbered slugs (``-2`` ... ``-9``) are tried before a random one.
_NUMBERED = 9


class ServiceRef(NamedTuple):
    """An agent's service as a batch of Hellos needs it: its id and slug (no ORM object)."""

    id: int
    slug: str


class AgentServices:
    def __init__(self, db: Database, *, silence: timedelta) -> None:
        self._db = db
        # The service's expectation says how long the agent may be silent (for display only:
        # the service receives no heartbeats).
        self._period = int(silence.total_seconds())

    async def of(
        self, db: AsyncSession, agents: Sequence[Agent], now: datetime
    ) -> dict[str, ServiceRef]:
        """The service of each agent (by agent id), created where missing, in ``db``'s
        transaction. Sets ``agent.service_id``. Read as plain rows: a batch of 500 Hellos
        loading 500 service objects cost more than the rest of its transaction."""
        if not agents:
            return {}
        ids = [agent.agent_id for agent in agents]
        with db.no_autoflush:  # the caller flushes its agents once, when they are complete
            rows = await db.execute(
                select(Service.agent_id, Service.id, Service.slug).where(
                    self._db.among(Service.agent_id, ids, "agent_ids")
                )
            )
        found = {row.agent_id: ServiceRef(row.id, row.slug) for row in rows}
        missing = [agent for agent in agents if agent.agent_id not in found]
        if missing:
            made = await self._create(db, missing, now)
            found.update((agent_id, ServiceRef(s.id, s.slug)) for agent_id, s in made.items())
        for agent in agents:
            agent.service_id = found[agent.agent_id].id
        return found

    async def _create(
        self, db: AsyncSession, agents: Sequence[Agent], now: datetime
    ) -> dict[str, Service]:
        bases = {agent.agent_id: f"{AGENT_SLUG_PREFIX}{agent.agent_id}" for agent in agents}
        candidates = [
            base if n == 1 else f"{base}-{n}"
            for base in bases.values()
            for n in range(1, _NUMBERED + 1)
        ]
        with db.no_autoflush:
            taken = set(
                await db.scalars(
                    select(Service.slug).where(self._db.among(Service.slug, candidates, "slugs"))
                )
            )
        made: dict[str, Service] = {}
        for agent in agents:
            slug = _free_slug(bases[agent.agent_id], taken)
            taken.add(slug)
            made[agent.agent_id] = Service(
                slug=slug,
                agent_id=agent.agent_id,
                name=f"agent {agent.hostname}"[:200],
                tags=["agent"],
                priority="p3",
                description=(
                    f"Carries the agent_offline alerts of agent {agent.agent_id}; "
                    f"its presence is GET /api/v1/agents/{agent.agent_id}."
                ),
                expectation={"kind": "interval", "period": self._period},
                grace=0,
                state="new",
                recent_beats=[],
                muted=False,
                created_at=now,
                updated_at=now,
            )
        services = list(made.values())
        # Numbered up front on SQLite, so the rows go in as one batch (Database.assign_ids).
        await self._db.assign_ids(db, Service, services)
        db.add_all(services)
        await db.flush()
        await record_audit_many(
            db,
            actor=SYSTEM,
            at=now,
            entries=[
                AuditRecord(
                    "service.create",
                    "service",
                    service.id,
                    after={"slug": service.slug, "name": service.name, "agent_id": agent_id},
                )
                for agent_id, service in made.items()
            ],
        )
        return made


def _free_slug(base: str, taken: set[str]) -> str:
    """``base``, or the first of ``base-2`` ... ``base-9`` not taken, else a random one."""
    for n in range(1, _NUMBERED + 1):
        slug = base if n == 1 else f"{base}-{n}"
        if slug not in taken:
            return slug
    return f"{base}-{uuid.uuid4().hex[:8]}"
