"""The encryption of secret values: a ``MultiFernet`` over the keys of ``MEDIC_SECRET_KEY``.

``MEDIC_SECRET_KEY`` is a comma-separated list of Fernet keys (``medic secret keygen`` makes
one). The first key encrypts; every key decrypts, so a key is rotated by putting a new one in
front, re-encrypting (``medic secret rotate``) and then dropping the old one. Fernet is
AES-128-CBC with an HMAC-SHA256 over the ciphertext: a token altered in the database does not
decrypt to something else, it fails to decrypt.

Nothing here ever puts a key or a value into an error message: a malformed key is named by its
position in the list, a token no key opens by the secret's name.
"""

from __future__ import annotations

from collections.abc import Sequence

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from medic_core.errors import Conflict


class SecretKeyError(ValueError):
    """``MEDIC_SECRET_KEY`` is malformed: a start-up error (its text never holds the key)."""


class SecretsNotConfigured(Conflict):
    """No ``MEDIC_SECRET_KEY``: secrets cannot be stored or read (the rest of Medic works)."""

    title = "Secrets not configured"
    type = "urn:medic:problem:secrets-not-configured"

    def __init__(self) -> None:
        super().__init__(
            "secrets need MEDIC_SECRET_KEY: generate one with `medic secret keygen` and set it "
            "on every replica"
        )


class UnreadableSecret(Conflict):
    """A stored secret that no key of ``MEDIC_SECRET_KEY`` opens (its key was dropped, or the
    row was altered)."""

    title = "Secret unreadable"
    type = "urn:medic:problem:secret-unreadable"

    def __init__(self, name: str) -> None:
        super().__init__(
            f"secret {name!r} cannot be decrypted with any key in MEDIC_SECRET_KEY: it was "
            "encrypted with a key no longer listed (put that key back, after the first) or its "
            "stored value was altered; set the secret again to replace it",
            secret=name,
        )
        self.name = name


def generate_key() -> str:
    """A new random Fernet key (url-safe base64 of 32 bytes), for ``MEDIC_SECRET_KEY``."""
    return Fernet.generate_key().decode("ascii")


def parse_keys(setting: str) -> list[str]:
    """The keys of a ``MEDIC_SECRET_KEY`` value (comma-separated, blanks around them ignored)."""
    return [key.strip() for key in setting.split(",") if key.strip()]


class Box:
    """Encrypts with the first key, decrypts with any; ``rotate`` re-encrypts with the first."""

    def __init__(self, keys: Sequence[str]) -> None:
        if not keys:
            raise SecretKeyError("MEDIC_SECRET_KEY holds no key")
        fernets = []
        for position, key in enumerate(keys, start=1):
            try:
                fernets.append(Fernet(key.encode("ascii")))
            except (ValueError, UnicodeEncodeError):
                # ``from None``: the library's error is harmless today, but a traceback
                # printing the key is exactly what must never happen.
                raise SecretKeyError(
                    f"MEDIC_SECRET_KEY: key {position} of {len(keys)} is not a Fernet key "
                    "(32 random bytes, url-safe base64: 44 characters); generate one with "
                    "`medic secret keygen`"
                ) from None
        self._fernet = MultiFernet(fernets)
        self.key_count = len(fernets)

    @classmethod
    def from_setting(cls, setting: str) -> Box | None:
        """The box of a ``MEDIC_SECRET_KEY`` value; ``None`` when it is empty (no secrets)."""
        keys = parse_keys(setting)
        return cls(keys) if keys else None

    def encrypt(self, value: str) -> str:
        return self._fernet.encrypt(value.encode("utf-8")).decode("ascii")

    def decrypt(self, name: str, token: str) -> str:
        """The value of secret ``name``; ``UnreadableSecret`` when no key opens ``token``."""
        try:
            return self._fernet.decrypt(token.encode("ascii")).decode("utf-8")
        except (InvalidToken, UnicodeError):
            raise UnreadableSecret(name) from None

    def rotate(self, name: str, token: str) -> str:
        """``token`` re-encrypted with the first key; ``UnreadableSecret`` when no key opens it."""
        try:
            return self._fernet.rotate(token.encode("ascii")).decode("ascii")
        except (InvalidToken, UnicodeError):
            raise UnreadableSecret(name) from None
