"""What a heartbeat is on the way in and on the way out."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from medic_core.clock import isoformat
from medic_core.errors import ValidationError
from medic_core.validation import SLUG_RE, only_keys

STATUSES = ("ok", "start", "success", "fail")
MAX_MESSAGE = 4000
_FIELDS = {"service", "status", "run_id", "exit_code", "message"}


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


def parse_heartbeat(
    data: object,
    *,
    source: str | None = None,
    field_prefix: str = "",
) -> HeartbeatIn:
    """Validate one heartbeat document; an ``exit_code`` alone stands for success (0) or fail."""
    if not isinstance(data, dict):
        raise ValidationError("a heartbeat must be a JSON object", field=field_prefix or None)
    only_keys(data, _FIELDS, "heartbeat")
    service = data.get("service")
    if not isinstance(service, str) or not SLUG_RE.match(service):
        raise ValidationError(
            "service must be the slug of a registered service, e.g. 'nightly-backup'",
            field=f"{field_prefix}service",
        )
    exit_code = data.get("exit_code")
    if exit_code is not None and (
        isinstance(exit_code, bool)
        or not isinstance(exit_code, int)
        or not -(2**31) <= exit_code < 2**31
    ):
        raise ValidationError(
            "exit_code must be a 32-bit integer", field=f"{field_prefix}exit_code"
        )
    status = data.get("status")
    if status is None:
        status = "ok" if exit_code is None else ("success" if exit_code == 0 else "fail")
    if status not in STATUSES:
        raise ValidationError(
            f"status must be one of {', '.join(STATUSES)}", field=f"{field_prefix}status"
        )
    run_id = data.get("run_id")
    if run_id is not None and (not isinstance(run_id, str) or not 0 < len(run_id) <= 200):
        raise ValidationError(
            "run_id must be a string of 1 to 200 characters", field=f"{field_prefix}run_id"
        )
    message = data.get("message")
    if message is not None and not isinstance(message, str):
        raise ValidationError("message must be a string", field=f"{field_prefix}message")
    return bounded(HeartbeatIn(service, status, run_id, exit_code, None, False, source), message)


def bounded(hb: HeartbeatIn, message: str | None) -> HeartbeatIn:
    """Attach ``message``, cut to ``MAX_MESSAGE`` characters with the cut flagged."""
    if message is None:
        return hb
    truncated = len(message) > MAX_MESSAGE
    return HeartbeatIn(
        hb.service, hb.status, hb.run_id, hb.exit_code, message[:MAX_MESSAGE], truncated, hb.source
    )
