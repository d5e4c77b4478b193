"""Teams own services (and, later, notification targets and schedules)."""
