"""Schemathesis checks of Medic's own rules, loaded by tests/integration/test_api_fuzz.py.

Schemathesis imports this module (its ``hooks`` setting) in the process that runs the cases;
each ``@schemathesis.check`` function sees every request it sent and the response it got.
"""

from __future__ import annotations

from typing import Any

import schemathesis

#: As medic_core.validation.QUOTE_MAX (not imported: this module runs inside schemathesis, which
#: must not need Medic importable; test_api_fuzz.py asserts the two agree).
QUOTE_MAX = 200


def _strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for k, v in value.items() for s in (*_strings(k), *_strings(v))]
    if isinstance(value, list | tuple):
        return [s for item in value for s in _strings(item)]
    return []


@schemathesis.check
def errors_quote_no_long_value(ctx: Any, response: Any, case: Any) -> bool | None:
    """An error response never hands back more than QUOTE_MAX characters of a sent value."""
    if response.status_code < 400:
        return None  # a stored resource legitimately reads back what was sent
    sent = [
        *_strings(case.path_parameters),
        *_strings(case.query),
        *(_strings(case.body) if not isinstance(case.body, bytes) else []),
    ]
    text = response.text
    for value in sent:
        if len(value) > QUOTE_MAX and value[: QUOTE_MAX + 1] in text:
            raise AssertionError(
                f"the {response.status_code} response quotes more than {QUOTE_MAX} characters "
                f"of a {len(value)}-character value that was sent"
            )
    return None
