"""What an agent says about itself in a ``Hello`` (``AgentInfo``), and the bounds each field
must hold before anything of it is stored: a ``Hello`` comes from outside (a holder of an
``agent`` key), so every field is checked here, and the allowlist summary by the Rust verifier
(``verify.py``) before the hub stores it."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from medic_core.agent import limits
from medic_core.errors import ValidationError

# Agent ids are UUIDs in practice (the protocol says so); any slug-shaped id up to 64 characters
# is accepted, so ``agent-<id>`` is always a valid service slug.
_AGENT_ID_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")
#: A label key (also the key part of the agents list's ``label`` filter).
LABEL_KEY_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/-]{0,62}$")
_MAX_LABELS = 64


@dataclass(frozen=True, slots=True)
class AgentInfo:
    """What an agent says about itself in a ``Hello``."""

    agent_id: str
    hostname: str
    version: str
    os: str
    arch: str
    labels: dict[str, str] = field(default_factory=dict)
    allowlist: dict[str, Any] = field(default_factory=dict)
    capabilities: tuple[str, ...] = ()
    paused: bool = False
    paused_reason: str | None = None
    containment: str = ""
    max_concurrent: int = 0  # executions it runs at once; 0: not said (an older agent)

    def validated(self) -> AgentInfo:
        """Itself, once every field holds; ``ValidationError`` naming the first that does not."""
        if not _AGENT_ID_RE.match(self.agent_id):
            raise ValidationError(
                "agent_id must be 1-64 lower-case letters, digits, '.', '_' or '-' (a UUID)",
                field="agent_id",
            )
        _bounded(self.hostname, "hostname", 255, required=True)
        _bounded(self.version, "agent_version", 64)
        _bounded(self.os, "os", 32)
        _bounded(self.arch, "arch", 32)
        if len(self.labels) > _MAX_LABELS:
            raise ValidationError(f"at most {_MAX_LABELS} labels", field="labels")
        for key, value in self.labels.items():
            if not LABEL_KEY_RE.match(key):
                raise ValidationError(
                    f"label {key[:64]!r}: keys are 1-63 letters, digits, '.', '_', '/' or '-'",
                    field="labels",
                )
            _bounded(value, f"labels.{key}", 255)
        if len(self.capabilities) > 64:
            raise ValidationError("at most 64 capabilities", field="capabilities")
        for capability in self.capabilities:
            _bounded(capability, "capabilities", 64, required=True)
        if self.paused_reason is not None:
            _bounded(self.paused_reason, "paused_reason", 500)
        _no_nul(self.allowlist, "allowlist")
        limits.containment(self.containment)
        limits.max_concurrent(self.max_concurrent)
        return self


def _bounded(value: str, name: str, max_len: int, *, required: bool = False) -> None:
    if required and not value:
        raise ValidationError(f"{name} must not be empty", field=name)
    if len(value) > max_len:
        raise ValidationError(f"{name} is longer than {max_len} characters", field=name)
    if "\x00" in value:
        raise ValidationError(f"{name} must not contain NUL characters", field=name)


def _no_nul(value: Any, name: str) -> None:
    """PostgreSQL text cannot hold NUL: refuse it anywhere in a JSON document."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if "\x00" in item:
                raise ValidationError(f"{name} must not contain NUL characters", field=name)
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
