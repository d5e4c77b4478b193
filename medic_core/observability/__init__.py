"""Medic's own metrics, logs and traces."""
