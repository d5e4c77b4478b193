"""The append-only audit log."""

from medic_core.audit.writer import SYSTEM, Actor, AuditRecord, record_audit, record_audit_many

__all__ = ["SYSTEM", "Actor", "AuditRecord", "record_audit", "record_audit_many"]
