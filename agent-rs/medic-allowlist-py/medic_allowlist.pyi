"""The Medic allowlist verifier (the agent's own Rust code), for the server.

An agent advertises its allowlist rules in its Hello (the protocol's ``AllowlistSummary``); the
server stores them as ``MessageToDict(summary, preserving_proto_field_name=True,
always_print_fields_with_no_presence=True)`` and checks each request against them with
``Rules.check`` before sending it. docs/allowlist.md ("Python bindings") is the reference.
"""

from collections.abc import Mapping, Sequence
from typing import Any, final

__all__ = [
    "CHECK_REASON_CODES",
    "LOAD_ERROR_CODES",
    "REASON_CODES",
    "SUMMARY_ERROR_CODES",
    "LoadError",
    "Refusal",
    "Rules",
    "SummaryError",
    "__version__",
    "summary_from_toml",
]

__version__: str

REASON_CODES: tuple[str, ...]
"""Every refusal code, in the order of docs/allowlist.md's table: the rule checks, then those of
the agent's file checks (the script file, its sealed copy, its interpreters: ``setuid``,
``interpreter_untrusted``, ...), which an agent reports and ``Refusal`` accepts."""

CHECK_REASON_CODES: tuple[str, ...]
"""The codes ``Rules.check`` can give (the rule checks; the others come from opening files)."""

LOAD_ERROR_CODES: tuple[str, ...]
"""Every ``LoadError.code`` of the allowlist format (some apply to files only)."""

SUMMARY_ERROR_CODES: tuple[str, ...]
"""Every ``SummaryError.code``: ``invalid_summary`` (wrong shape) and the format's codes."""

class SummaryError(ValueError):
    """An advertised summary is invalid: a dict of the wrong shape (``invalid_summary``) or rules
    that break the allowlist format (``invalid_pattern``, ``invalid_sha256``, ...)."""

    code: str

class LoadError(ValueError):
    """Allowlist text is invalid; ``code`` is the allowlist format's error code."""

    code: str

@final
class Refusal:
    """A refused request."""

    def __new__(cls, reason: str, detail: str) -> Refusal:
        """A refusal; ``reason`` must be one of ``REASON_CODES``."""
    @property
    def reason(self) -> str:
        """The stable code, e.g. ``arg_not_allowed`` (one of ``REASON_CODES``)."""
    @property
    def detail(self) -> str:
        """For people: names positions, rules and variable names, never their values."""
    def __eq__(self, other: object, /) -> bool: ...
    def __hash__(self) -> int: ...

@final
class Rules:
    """The rules an agent advertised, ready to check requests against."""

    @staticmethod
    def from_summary(summary: Mapping[str, Any]) -> Rules:
        """Build from an advertised summary dict. Absent keys and ``None`` mean the protobuf
        default. Raises ``SummaryError`` when the summary is invalid."""
    @property
    def sha256(self) -> str:
        """The SHA-256 of the agent's allowlist file (lower-case hex)."""
    def names(self) -> list[str]:
        """The entry names, sorted."""
    def to_summary(self) -> dict[str, Any]:
        """The summary dict again, entries sorted by name."""
    def check(
        self,
        script: str,
        args: Sequence[str],
        env: Mapping[str, str],
        timeout_seconds: int | None = None,
        expected_sha256: str | None = None,
    ) -> Refusal | None:
        """``None`` when the rules allow the request, otherwise why not.

        ``timeout_seconds`` of ``None`` or ``0`` means the entry's own timeout (negative:
        ``ValueError``). ``expected_sha256`` of ``None`` or ``""`` checks no script hash
        (malformed: ``ValueError``). Wrong types raise ``TypeError``.
        """
    def __len__(self) -> int: ...
    def __contains__(self, name: str, /) -> bool: ...

def summary_from_toml(text: str) -> dict[str, Any]:
    """Parse allowlist text (no file checks) and return the summary its agent advertises.
    Raises ``LoadError`` when the text is invalid."""
