"""The append-only audit log."""

from medic_core.audit.log import SYSTEM, Actor, record_audit

__all__ = ["SYSTEM", "Actor", "record_audit"]
