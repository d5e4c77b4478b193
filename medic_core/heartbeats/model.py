"""What a heartbeat is on the way in and on the way out."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from medic_core.clock import isoformat
from medic_core.errors import ValidationError

STATUSES = ("ok", "start", "success", "fail")
MAX_MESSAGE = 4000


@dataclass(frozen=True, slots=True)
class HeartbeatIn:
    service: str
    status: str = "ok"
    run_id: str | None = None
    exit_code: int | None = None
    message: str | None = None
    message_truncated: bool = False
    source: str | None = None


@dataclass(frozen=True, slots=True)
class StoredHeartbeat:
    id: int
    service: str
    status: str
    received_at: datetime
    state: str
    message_truncated: bool

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "service": self.service,
            "status": self.status,
            "received_at": isoformat(self.received_at),
            "service_state": self.state,
            "message_truncated": self.message_truncated,
        }


def heartbeat_in(
    data: Mapping[str, Any],
    *,
    source: str | None = None,
    field_prefix: str = "",
) -> HeartbeatIn:
    """A heartbeat from a document whose shape is already checked (the API's Heartbeat schema).

    What a schema cannot say is decided here: an ``exit_code`` without a ``status`` stands for
    ``success`` (0) or ``fail`` (anything else), and a ``status`` the exit code contradicts is
    refused -- storing ``ok`` for a job that exited 3 would hide its failure.
    """
    exit_code: int | None = data.get("exit_code")
    status: str | None = data.get("status")
    if status is None:
        status = "ok" if exit_code is None else outcome_of(exit_code)
    elif exit_code is not None and _contradicts(status, exit_code):
        meant = outcome_of(exit_code)
        raise ValidationError(
            f"status {status!r} contradicts exit_code {exit_code} (which means {meant!r}): "
            f"send status {meant!r}, or leave status out and the exit code decides",
            field=f"{field_prefix}status",
        )
    message: str | None = data.get("message")
    return bounded(
        HeartbeatIn(data["service"], status, data.get("run_id"), exit_code, None, False, source),
        message,
    )


def outcome_of(exit_code: int) -> str:
    """The job signal an exit code stands for: 0 is ``success``, anything else ``fail``."""
    return "success" if exit_code == 0 else "fail"


def _contradicts(status: str, exit_code: int) -> bool:
    # A start has no exit code yet; ok (a plain ping) agrees only with a clean exit.
    if status == "start":
        return True
    if status == "ok":
        return exit_code != 0
    return status != outcome_of(exit_code)


def bounded(hb: HeartbeatIn, message: str | None) -> HeartbeatIn:
    """Attach ``message``, cut to ``MAX_MESSAGE`` characters with the cut flagged."""
    if message is None:
        return hb
    truncated = len(message) > MAX_MESSAGE
    return HeartbeatIn(
        hb.service, hb.status, hb.run_id, hb.exit_code, message[:MAX_MESSAGE], truncated, hb.source
    )
