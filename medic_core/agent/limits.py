"""What the server accepts from an agent's stream, and what it does with the rest.

An ``agent`` key is a low-scope credential: whoever holds one can open a stream and send any
message. Every message is bounded here, and each refusal has a stable reason code, counted in
``medic_agent_protocol_refusals_total{reason}``. Two kinds (``REFUSALS``, the table of
docs/agent-protocol.md, "Limits"):

- **Violations** end the stream with ``INVALID_ARGUMENT`` and the reason in its details
  (``ProtocolViolation``): what an honest agent never sends -- a malformed ``Hello``, an output
  chunk that is empty, over 16 KiB or numbered beyond what can be stored, or one for an
  execution whose final state the agent itself reported (the agent sends its output before its
  final state, on the same stream). Nothing of the message is stored. The agent reconnects,
  with back-off.
- **Drops** leave the stream open: what a correct agent may still send -- output past the
  per-execution cap (the agent's own cap may be larger than the server's), messages about an
  execution the server does not know for this agent (an agent replays its journal after a
  restore of the server's database), about one the server itself failed (``lost``,
  ``agent_revoked``: the script may still run on the host), an execution state or containment
  this server does not know (the protocol grows additively), an update contradicting a final
  state (the agent replays its journal after every ``Welcome``; a journal that lost a write,
  disk full, replays ``agent_stopped`` for an execution it had reported finished). Ending the
  stream for those would make a correct agent reconnect in a loop.

One more reason ends a stream, with ``UNAVAILABLE``: ``verifier_busy``, a ``Hello`` whose new
allowlist cannot be checked now because too many wait their turn (``verify.py``); the agent
reconnects later.

The server's own choices are settings (``MEDIC_AGENT_MAX_OUTPUT_BYTES``); the protocol's limits
(16 KiB a chunk) are constants shared with the agent.
"""

from __future__ import annotations

from medic_core.errors import ValidationError
from medic_core.observability.metrics import Metrics

#: The largest ``OutputChunk.data`` (the agent sends at most this much per chunk).
MAX_CHUNK = 16 * 1024
#: The largest sequence number the database can store (a signed 64-bit integer).
MAX_SEQUENCE = 2**63 - 1
#: The agent's default output cap, and the server's: honest output is never cut by default.
DEFAULT_MAX_OUTPUT_BYTES = 1024 * 1024
MAX_OUTPUT_BYTES = 256 * 1024 * 1024  # the agent's own upper bound for its cap
#: How an agent ends the processes a script starts (docs/agent.md), empty from older agents.
CONTAINMENTS = ("cgroup", "subreaper", "process_group")
#: Final states the server decides by itself: the agent may still be running the script.
SERVER_REASONS = frozenset({"lost", "agent_revoked"})
#: The most executions an agent may say it runs at once (``Hello.max_concurrent_executions``),
#: the agent's own bound of its ``max_concurrent``.
MAX_CONCURRENT = 1024
#: What the server assumes of an agent that does not say (older agents): the agent's default.
ASSUMED_CAPACITY = 16
#: How an agent refuses an execution for want of a free slot: sent again, not final (when the
#: agent advertises its capacity: such an agent does not remember the refusal).
TOO_MANY_RUNNING = "too_many_running"
#: The most times an execution refused ``too_many_running`` may be sent again (the setting
#: ``MEDIC_AGENT_BUSY_RETRIES`` is bounded by it).
MAX_BUSY_RETRIES = 100

#: reason -> (whether the stream ends, what it means). docs/agent-protocol.md lists the same
#: (a test compares them).
REFUSALS: dict[str, tuple[bool, str]] = {
    "invalid_hello": (True, "a Hello field is malformed or out of bounds"),
    "empty_chunk": (True, "an output chunk without data"),
    "chunk_too_large": (True, f"an output chunk over {MAX_CHUNK} bytes"),
    "bad_sequence": (True, f"an output chunk numbered beyond {MAX_SEQUENCE}"),
    "after_final": (True, "output for an execution whose final state the agent reported"),
    "update_after_final": (False, "an update that contradicts an execution's final state"),
    "verifier_busy": (True, "a Hello with a new allowlist while many wait to be checked"),
    "output_cap": (False, "output past the per-execution cap"),
    "unknown_execution": (False, "an update or chunk for an execution not sent to this agent"),
    "closed_by_server": (False, "an update or chunk for an execution the server failed"),
    "unknown_state": (False, "an execution state this server does not know"),
    "unknown_containment": (False, "a containment this server does not know"),
}


class ProtocolViolation(Exception):
    """The agent broke the protocol: its stream ends with ``INVALID_ARGUMENT``."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


class ProtocolRefusals:
    """Counts refusals by reason; builds the violations that end a stream."""

    def __init__(self, metrics: Metrics) -> None:
        self._counter = metrics.agent_protocol_refusals
        for reason in REFUSALS:
            self._counter.labels(reason)  # every series exists from the start, at 0

    def count(self, reason: str) -> None:
        assert reason in REFUSALS, reason
        self._counter.labels(reason).inc()

    def violation(self, reason: str, detail: str) -> ProtocolViolation:
        """Count ``reason`` and return the exception that ends the stream (raise it)."""
        assert REFUSALS[reason][0], f"{reason} does not end the stream"
        self.count(reason)
        return ProtocolViolation(reason, detail)


def containment(value: str, field: str = "containment") -> str | None:
    """A containment as stored: ``None`` for empty, ``ValidationError`` for an unknown one."""
    if not value:
        return None
    if value not in CONTAINMENTS:
        raise ValidationError(
            f"{field} must be one of {', '.join(CONTAINMENTS)} or empty (got {value[:32]!r})",
            field=field,
        )
    return value


def max_concurrent(value: int) -> int | None:
    """An advertised capacity as stored: ``None`` for 0 (not said), ``ValidationError`` out of
    bounds."""
    if value == 0:
        return None
    if not 1 <= value <= MAX_CONCURRENT:
        raise ValidationError(
            f"max_concurrent_executions must be 0 (not said) or 1 to {MAX_CONCURRENT} "
            f"(got {value})",
            field="max_concurrent_executions",
        )
    return value


def check_busy_retries(value: int) -> int:
    if not 0 <= value <= MAX_BUSY_RETRIES:
        raise ValueError(f"MEDIC_AGENT_BUSY_RETRIES must be from 0 to {MAX_BUSY_RETRIES}")
    return value


def check_max_output_bytes(value: int) -> int:
    if not MAX_CHUNK <= value <= MAX_OUTPUT_BYTES:
        raise ValueError(
            f"MEDIC_AGENT_MAX_OUTPUT_BYTES must be from {MAX_CHUNK} to {MAX_OUTPUT_BYTES}"
        )
    return value
