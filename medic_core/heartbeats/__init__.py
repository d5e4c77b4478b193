"""Heartbeat ingest: validation, the group-commit writer and what a heartbeat changes."""

from medic_core.heartbeats.model import HeartbeatIn, StoredHeartbeat, heartbeat_in
from medic_core.heartbeats.writer import HeartbeatWriter

__all__ = ["HeartbeatIn", "HeartbeatWriter", "StoredHeartbeat", "heartbeat_in"]
