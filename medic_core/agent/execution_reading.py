"""Reading executions back: one with its output (``get``), or a page of them (``list``)."""

from __future__ import annotations

import base64
from collections.abc import Callable
from typing import Any

from sqlalchemy import func, select

from medic_core.agent.execution_values import FINAL, STATES, execution_to_dict, find_execution
from medic_core.errors import NotFound, ValidationError
from medic_core.store import Database
from medic_core.store.models import Agent, Execution, ExecutionOutput
from medic_core.store.pagination import Page, check_limit, keyset, rows_page
from medic_core.validation import quote


class ExecutionReader:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def get(self, execution_id: str, *, output: str = "text") -> dict[str, Any]:
        """One execution with its output per stream: ``text`` (UTF-8, invalid bytes replaced)
        or ``raw`` (base64). ``output_complete``: every chunk the agent said it sent is here."""
        if output not in ("text", "raw"):
            raise ValidationError("output must be text or raw", field="output")
        async with self._db.sessions() as db:
            row = await find_execution(db, execution_id, for_update=False)
            if row is None:
                raise NotFound(f"no execution {quote(execution_id)}")
            chunks = (
                await db.execute(
                    select(ExecutionOutput.sequence, ExecutionOutput.stream, ExecutionOutput.data)
                    .where(ExecutionOutput.execution_id == row.id)
                    .order_by(ExecutionOutput.sequence)
                )
            ).all()
        streams = {"stdout": bytearray(), "stderr": bytearray()}
        for _, stream, data in chunks:
            streams.setdefault(stream, bytearray()).extend(data)
        expected = row.output_chunks
        body = execution_to_dict(row)
        body["output_complete"] = (
            row.state in FINAL
            and expected is not None
            and sum(1 for sequence, _, _ in chunks if sequence < expected) == expected
        )
        encode: Callable[[bytes], str] = (
            (lambda b: b.decode("utf-8", errors="replace"))
            if output == "text"
            else (lambda b: base64.b64encode(b).decode("ascii"))
        )
        body["output"] = {
            "encoding": "text" if output == "text" else "base64",
            "stdout": encode(bytes(streams["stdout"])),
            "stderr": encode(bytes(streams["stderr"])),
            "chunks_received": len(chunks),
        }
        return body

    async def list(
        self,
        *,
        agent: str | None = None,
        state: str | None = None,
        cursor: str | None = None,
        limit: int | None = None,
        agent_must_exist: bool = False,
    ) -> Page[dict[str, Any]]:
        """Executions newest first (filters: ``agent`` id, ``state``), cursor-paged."""
        size = check_limit(limit)
        query = select(Execution)
        if state is not None:
            if state not in STATES:
                raise ValidationError(f"state must be one of {', '.join(STATES)}", field="state")
            query = query.where(Execution.state == state)
        if agent is not None:
            query = query.where(Execution.agent_id == agent)
        async with self._db.sessions() as db:
            if agent_must_exist:
                known = await db.scalar(
                    select(func.count()).select_from(Agent).where(Agent.agent_id == agent)
                )
                if not known:
                    raise NotFound(f"no agent {quote(agent)}")
            query = keyset(query, Execution.id, cursor, size, newest_first=True)
            rows = (await db.scalars(query)).all()
        return rows_page(rows, size, execution_to_dict, lambda row: row.id)
