"""What a plugin may do with agents (``PluginContext.agents``): choose them, check a request
against their advertised allowlists, run it, follow it, cancel it.

Each action is the agent-executions API's own (``executions.py``): the same validation, the same
allowlist check by the Rust verifier, the same audit records and events. Nothing here decides
anything of its own; it only gives plugins (the ``script`` step type first) one narrow door
instead of the hub's insides.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import select

from medic_core.agent.executions import Executions
from medic_core.agent.records import agent_to_dict
from medic_core.agent.verify import Refusal
from medic_core.audit import Actor
from medic_core.store import Database
from medic_core.store.models import Agent

#: The most agents one ``find`` returns (a ``script`` step's ``agents.ids`` holds at most 100).
MAX_FOUND = 100


class HubActions:
    """The ``AgentActions`` of ``medic_core.plugins.context``, over the hub's executions."""

    def __init__(self, db: Database, executions: Executions) -> None:
        self._db = db
        self._executions = executions

    async def find(
        self,
        *,
        ids: Sequence[str] | None = None,
        labels: Mapping[str, str] | None = None,
        limit: int = MAX_FOUND,
    ) -> list[dict[str, Any]]:
        """The known agents among ``ids`` (in the order asked), or the agents carrying every one
        of ``labels`` (oldest registered first); at most ``limit`` (≤ 100), as
        ``GET /api/v1/agents/{id}`` shows each."""
        limit = max(1, min(limit, MAX_FOUND))
        query = select(Agent)
        if ids is not None:
            query = query.where(Agent.agent_id.in_(list(ids)[:MAX_FOUND]))
        for name, value in (labels or {}).items():
            query = query.where(Agent.labels[name].as_string() == value)
        async with self._db.sessions() as db:
            rows = (await db.scalars(query.order_by(Agent.id).limit(limit))).all()
        if ids is not None:
            order = {agent_id: index for index, agent_id in enumerate(ids)}
            rows = sorted(rows, key=lambda row: order.get(row.agent_id, len(order)))
        return [agent_to_dict(row) for row in rows]

    async def check(
        self,
        agent_id: str,
        script: str,
        args: Sequence[str],
        env: Mapping[str, str],
        timeout_seconds: int | None = None,
    ) -> Refusal | None:
        return await self._executions.check(
            agent_id, script, list(args), dict(env), timeout_seconds
        )

    async def execute(
        self,
        agent_id: str,
        script: str,
        args: Sequence[str],
        env: Mapping[str, str],
        timeout_seconds: int | None,
        *,
        actor: Actor,
        execution_id: str | None = None,
    ) -> dict[str, Any]:
        return await self._executions.execute(
            agent_id,
            script,
            list(args),
            dict(env),
            timeout_seconds,
            actor=actor,
            execution_id=execution_id,
        )

    async def execution(self, execution_id: str) -> dict[str, Any]:
        return await self._executions.get(execution_id)

    async def cancel(self, execution_id: str, *, actor: Actor) -> dict[str, Any]:
        return await self._executions.cancel(execution_id, actor=actor)
