"""The deadline monitor."""

from medic_core.monitor.monitor import Monitor, MonitorPass

__all__ = ["Monitor", "MonitorPass"]
