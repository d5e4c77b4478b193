"""Handing alert transitions to notifier plugins."""
