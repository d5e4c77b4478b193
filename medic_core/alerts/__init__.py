"""Alerts: one lifecycle (open -> acknowledged -> resolved), one unresolved alert per cause."""

from medic_core.alerts.book import CAUSES, STATES, AlertBook, Opening, alert_to_dict

__all__ = ["CAUSES", "STATES", "AlertBook", "Opening", "alert_to_dict"]
