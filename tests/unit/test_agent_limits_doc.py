"""docs/agent-protocol.md's "Limits" table says what the server does with each refusal: it must
list exactly the reasons of ``medic_core.agent.limits.REFUSALS``, ending the stream or not as the
code does."""

from __future__ import annotations

import re
from pathlib import Path

from medic_core.agent.limits import REFUSALS

DOC = Path(__file__).resolve().parents[2] / "docs" / "agent-protocol.md"


def test_the_limits_table_matches_the_code() -> None:
    text = DOC.read_text()
    section = text[text.index("## Limits") : text.index("## Versioning")]
    rows = re.findall(r"^\| `([a-z_]+)` \| (yes|no) \|", section, flags=re.MULTILINE)
    assert {reason: ends == "yes" for reason, ends in rows} == {
        reason: ends for reason, (ends, _) in REFUSALS.items()
    }
    assert len(rows) == len(REFUSALS)
