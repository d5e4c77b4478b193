"""Output of executions: the chunks agents stream while a script runs.

Chunks are stored once per (execution, sequence), up to ``max_output_bytes`` per execution;
past it they are dropped and the output flagged truncated, so it never reads complete. A chunk
after the agent's final state, empty, over 16 KiB or numbered beyond what the database holds
ends the stream (``limits.py`` has the whole table). Each stored chunk is published
(``execution.output``) for live followers; reading it back is ``execution_reading.py``.
"""

from __future__ import annotations

import logging

from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from medic_core.agent import limits
from medic_core.agent.execution_finals import Finals
from medic_core.agent.execution_values import OutputChunk, rowcount
from medic_core.agent.limits import ProtocolRefusals
from medic_core.agent.sessions import Session
from medic_core.clock import Clock
from medic_core.events import EventBus
from medic_core.store import Database
from medic_core.store.models import ExecutionOutput

log = logging.getLogger(__name__)


class ExecutionOutputs:
    def __init__(
        self,
        db: Database,
        clock: Clock,
        bus: EventBus,
        finals: Finals,
        *,
        refusals: ProtocolRefusals,
        max_output_bytes: int,
    ) -> None:
        self._db = db
        self._clock = clock
        self._bus = bus
        self._finals = finals
        self._protocol = refusals
        self._max_output = max_output_bytes

    async def output(self, session: Session, chunk: OutputChunk) -> None:
        """Store one output chunk; a repeated (execution, sequence) is a no-op.

        Bounded (``limits.py``): a chunk that is empty, over 16 KiB or numbered beyond what the
        database holds, or one for an execution the agent reported finished, ends the stream
        (``ProtocolViolation``) and nothing of it is stored. Past ``max_output_bytes`` of stored
        output, chunks are dropped and the execution's output is flagged truncated, so it never
        reads complete.
        """
        if session.unconfirmed is not None:
            session.unconfirmed.discard(chunk.execution_id)
        size = len(chunk.data)
        if size == 0:
            raise self._protocol.violation("empty_chunk", "an output chunk must hold data")
        if size > limits.MAX_CHUNK:
            raise self._protocol.violation(
                "chunk_too_large",
                f"an output chunk holds {size} bytes: at most {limits.MAX_CHUNK}",
            )
        if chunk.sequence > limits.MAX_SEQUENCE:
            raise self._protocol.violation(
                "bad_sequence", f"output chunk sequence numbers stop at {limits.MAX_SEQUENCE}"
            )
        now = self._clock.now()
        async with self._db.transaction() as db:
            # Locked: the bytes stored so far decide whether this chunk fits.
            row = await self._finals.reported(db, chunk.execution_id, session.agent_id, "output")
            if row is None:
                return
            if row.output_bytes + size > self._max_output:
                self._protocol.count("output_cap")
                if not row.output_truncated:
                    log.warning(
                        "output of execution %s reached the cap of %d bytes: dropping the rest",
                        row.execution_id,
                        self._max_output,
                        extra={"agent_id": session.agent_id, "execution_id": row.execution_id},
                    )
                    row.output_truncated = True
                    row.updated_at = now
                return
            insert = pg_insert if self._db.is_postgres else sqlite_insert
            result = await db.execute(
                insert(ExecutionOutput)
                .values(
                    execution_id=row.id,
                    sequence=chunk.sequence,
                    stream=chunk.stream,
                    data=chunk.data,
                    truncated=chunk.truncated,
                    received_at=now,
                )
                .on_conflict_do_nothing(index_elements=["execution_id", "sequence"])
            )
            stored = rowcount(result) == 1
            if stored:
                row.output_bytes += size
        if stored:
            self._bus.publish(
                "execution.output",
                now,
                execution_id=row.execution_id,
                agent_id=row.agent_id,
                sequence=chunk.sequence,
                stream=chunk.stream,
                data=chunk.data.decode("utf-8", errors="replace"),
                truncated=chunk.truncated,
            )
