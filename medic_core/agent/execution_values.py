"""The values of executions: their states and how they move, the commands sent to agents and
the reports they send back, the public view of a stored execution, and the bounds agent-supplied
text is stored within. No I/O here but ``find_execution`` (one read): every execution module
(``executions.py`` lists them) shares these.

Commands and reports are plain values: the transport (``medic_core/server/grpc/endpoint.py``)
turns protocol messages into them and back, so the domain never sees a protocol message.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, cast

from sqlalchemy import CursorResult, select
from sqlalchemy.ext.asyncio import AsyncSession

from medic_core.clock import isoformat
from medic_core.store.models import Execution

STATES = (
    "pending",
    "accepted",
    "running",
    "rejected",
    "succeeded",
    "failed",
    "timed_out",
    "cancelled",
)
FINAL = frozenset({"rejected", "succeeded", "failed", "timed_out", "cancelled"})
_RANK = {"pending": 0, "accepted": 1, "running": 2}
#: How long the agent remembers executions (docs/agent-protocol.md): an unanswered execution
#: older than this is never sent again, since the agent may have forgotten it already ran it.
MEMORY_WINDOW = timedelta(hours=24)
MASK = "********"
_REASON_RE = re.compile(r"^[a-z][a-z0-9_]{0,39}$")
_MAX_ID = 64
_MAX_DB_INT = 2**63 - 1


@dataclass(frozen=True, slots=True)
class ExecuteCommand:
    """Run ``script`` (``Execute`` on the wire)."""

    execution_id: str
    script: str
    args: tuple[str, ...]
    env: dict[str, str]
    timeout_seconds: int
    expected_sha256: str


@dataclass(frozen=True, slots=True)
class CancelCommand:
    """Stop an execution (``Cancel`` on the wire)."""

    execution_id: str
    reason: str


@dataclass(frozen=True, slots=True)
class ExecutionUpdate:
    """The state of one execution as the agent reports it (``state``: a name of ``STATES``,
    or ``unspecified`` for a value this server does not know)."""

    execution_id: str
    state: str
    reason: str = ""
    detail: str = ""
    exit_code: int | None = None
    signal: int | None = None
    output_chunks: int | None = 0
    output_truncated: bool = False
    duration_ms: int | None = None
    containment: str = ""


@dataclass(frozen=True, slots=True)
class OutputChunk:
    execution_id: str
    stream: str
    sequence: int
    data: bytes
    truncated: bool = False


def execution_to_dict(row: Execution) -> dict[str, Any]:
    """The public view of an execution: environment names only, values masked."""
    return {
        "id": row.execution_id,
        "agent_id": row.agent_id,
        "script": row.script,
        "args": list(row.args or []),
        "env": {name: MASK for name in row.env_names or []},
        "timeout_seconds": row.timeout_seconds,
        "expected_sha256": row.expected_sha256,
        "requested_by": row.requested_by,
        "state": row.state,
        "reason": row.reason,
        "detail": row.detail,
        "exit_code": row.exit_code,
        "signal": row.signal,
        "output_chunks": row.output_chunks,
        "output_truncated": row.output_truncated,
        "output_bytes": row.output_bytes,
        "duration_ms": row.duration_ms,
        "containment": row.containment,
        "sent_count": row.sent_count,
        "last_sent_at": isoformat(row.last_sent_at),
        "capacity_refusals": row.capacity_refusals,
        "send_after": isoformat(row.send_after),
        "cancel_requested_at": isoformat(row.cancel_requested_at),
        "created_at": isoformat(row.created_at),
        "updated_at": isoformat(row.updated_at),
        "finished_at": isoformat(row.finished_at),
    }


def stored_text(value: str, max_len: int) -> str | None:
    """Agent-supplied text as stored: bounded, and without NUL (PostgreSQL text cannot hold it:
    storing it would fail the update every time the agent replays it)."""
    return value.replace("\x00", "\ufffd")[:max_len] or None


def bounded_count(value: int) -> int:
    """An agent-supplied count as stored: at least 0, at most what the database holds."""
    return min(max(value, 0), _MAX_DB_INT)


def reason_label(reason: str | None) -> str:
    """A reason code as a metric label: agents send free text, metrics need a bounded set."""
    return reason if reason and _REASON_RE.match(reason) else "other"


def rowcount(result: Any) -> int:
    return int(cast(CursorResult[Any], result).rowcount)


def moves(current: str, new: str) -> bool:
    """Whether an update from ``current`` to ``new`` is progress (else it is a no-op)."""
    if current in FINAL or new not in STATES or new == "pending":
        return False
    if new == "rejected":
        return current == "pending"
    return new in FINAL or _RANK[new] > _RANK[current]


async def find_execution(
    db: AsyncSession, execution_id: str, *, agent_id: str | None = None, for_update: bool
) -> Execution | None:
    """The execution ``execution_id`` (of ``agent_id``, when given), its row locked when
    ``for_update`` (PostgreSQL: SQLite's write lock is the whole database's already). An id
    no execution can have (empty, too long) finds nothing without a query."""
    if not execution_id or len(execution_id) > _MAX_ID:
        return None
    query = select(Execution).where(Execution.execution_id == execution_id)
    if agent_id is not None:
        query = query.where(Execution.agent_id == agent_id)
    if for_update:
        query = query.with_for_update()
    return await db.scalar(query)
