"""Outbound network access: the policy for HTTP calls Medic makes to URLs users configure.

``guard`` holds ``OutboundPolicy`` (which destinations may be called), ``check_url`` (validation
when a URL is saved) and ``guarded_session`` (an aiohttp session that connects only to checked
addresses). Webhook notifiers and playbook webhook steps send through it.
"""

from medic_core.net.guard import (
    BlockedDestination,
    GuardedConnector,
    GuardedResolver,
    OutboundPolicy,
    guarded_session,
    parse_address,
    retry_after_seconds,
)

__all__ = [
    "BlockedDestination",
    "GuardedConnector",
    "GuardedResolver",
    "OutboundPolicy",
    "guarded_session",
    "parse_address",
    "retry_after_seconds",
]
