"""Local servers that speak real third-party wire formats (Slack, PagerDuty, SMTP...)."""
