"""Maintenance windows: alerts inside them are recorded but not notified."""
