"""Docs that are generated from code stay identical to it."""

from __future__ import annotations

from pathlib import Path

from medic_core.settings import settings_markdown

ROOT = Path(__file__).resolve().parents[2]


def test_configuration_doc_lists_exactly_the_settings_of_the_code() -> None:
    doc = (ROOT / "docs" / "configuration.md").read_text()
    assert doc.endswith(settings_markdown()), (
        "docs/configuration.md is stale: regenerate its table with `medic config --markdown`"
    )
