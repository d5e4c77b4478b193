"""Replacing secret values in text with ``********`` before it is logged, stored or published.

The playbook engine builds a ``Redactor`` from the values of the secrets an execution uses and
passes every log line, stored output, event and audit text through it. A value is replaced in
each form it commonly takes on the way out: as written, JSON-escaped (as it appears inside a
JSON string, with ``\\uXXXX`` escapes or without) and URL-encoded (``%XX``, with ``+`` or
``%20`` for spaces). Other encodings (base64, HTML entities, lower-case ``%xx``, a value cut in
two by an output cap) are not recognised: a script that re-encodes a secret can still print it.

Forms are matched longest first, so of two overlapping secrets the longer is replaced whole.
Replacing can make a secret again where ``*`` meets the text around the mask (secret
``**ab`` after secret ``abcd`` in ``abcdab``), so replacing repeats until nothing matches; it
ends, because every replacement turns at least one character that is not ``*`` into ``*``
(values made only of ``*`` are refused when set, and so is any value shorter than
``MIN_LENGTH``: a short value would be replaced wherever its letters happen to occur, and
``abc`` hidden everywhere hides nothing).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from urllib.parse import quote, quote_plus

from medic_core.settings import MASK

#: Shortest value a secret may have (``Secrets.set`` refuses shorter ones).
MIN_LENGTH = 4


def forms(value: str) -> set[str]:
    """``value`` as written, JSON-escaped and URL-encoded."""
    return {
        value,
        json.dumps(value, ensure_ascii=False)[1:-1],
        json.dumps(value, ensure_ascii=True)[1:-1],
        quote(value, safe=""),
        quote(value),
        quote_plus(value, safe=""),
    }


def redactable(value: str) -> bool:
    """Whether ``value`` can be hidden reliably: long enough, and not made only of ``*``."""
    return len(value) >= MIN_LENGTH and value.strip("*") != ""


class Redactor:
    """Replaces every form of the given secret values in a text with ``MASK``."""

    def __init__(self, values: Iterable[str]) -> None:
        found: set[str] = set()
        for value in values:
            if not redactable(value):
                raise ValueError(
                    f"a secret value must be at least {MIN_LENGTH} characters and not only '*' "
                    "to be redacted"
                )
            found |= forms(value)
        ordered = sorted(found, key=lambda form: (-len(form), form))
        self._pattern = re.compile("|".join(map(re.escape, ordered))) if ordered else None

    def __call__(self, text: str) -> str:
        if self._pattern is None:
            return text
        while True:
            redacted = self._pattern.sub(MASK, text)
            if redacted == text:
                return text
            text = redacted
