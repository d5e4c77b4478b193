"""Medic: heartbeat monitoring and auto-remediation.

The package tree mirrors ``../shared/design/ARCHITECTURE.md``: storage in ``store``, deadline
math in ``schedule``, ingest in ``heartbeats``, the deadline loop in ``monitor``, the alert
lifecycle in ``alerts``, the plugin system in ``plugins`` and the transports under ``server``.
``medic_core.app`` is the one composition root that wires them together.
"""

__version__ = "0.1.0"
