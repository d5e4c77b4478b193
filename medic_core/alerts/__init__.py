"""Alerts: one lifecycle (open -> acknowledged -> resolved), one unresolved alert per cause.

``alerts`` never imports ``notify``: the alert book queues deliveries through the ``Outbox`` it
declares (``outbox.py``); ``notify`` imports the alert documents (``documents.py``).
"""

from medic_core.alerts.book import CAUSES, STATES, AlertBook, Opening
from medic_core.alerts.documents import alert_to_dict, service_brief
from medic_core.alerts.outbox import Outbox, Routes

__all__ = [
    "CAUSES",
    "STATES",
    "AlertBook",
    "Opening",
    "Outbox",
    "Routes",
    "alert_to_dict",
    "service_brief",
]
