"""Secrets for playbook templates (``secrets.NAME``; docs/secrets.md).

``box`` (the ``MultiFernet`` over ``MEDIC_SECRET_KEY``: encrypt, decrypt, rotate a token),
``store`` (``Secrets``: set, list names, delete, resolve values for the engine, rotate),
``redact`` (``Redactor``: every form of the values in a text replaced by ``********``).
"""

from medic_core.secrets.box import (
    Box,
    SecretKeyError,
    SecretsNotConfigured,
    UnreadableSecret,
    generate_key,
)
from medic_core.secrets.redact import Redactor
from medic_core.secrets.store import Secrets

__all__ = [
    "Box",
    "Redactor",
    "SecretKeyError",
    "Secrets",
    "SecretsNotConfigured",
    "UnreadableSecret",
    "generate_key",
]
