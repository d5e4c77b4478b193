"""The in-process event bus: how components learn about each other's changes."""

from medic_core.events.bus import Event, EventBus, PendingEvents

__all__ = ["Event", "EventBus", "PendingEvents"]
