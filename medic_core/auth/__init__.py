"""API keys and scopes."""

from medic_core.auth.keys import SCOPES, ApiKeys, Principal, grants

__all__ = ["SCOPES", "ApiKeys", "Principal", "grants"]
