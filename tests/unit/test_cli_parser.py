"""The ``medic`` parser offers exactly what the domain accepts, builds without the store, and
``python -m medic_core.cli`` is the same command.

The parser writes a few of the domain's value lists out (scopes, service states, delivery
statuses, heartbeat statuses, target periods) because importing their modules would load
SQLAlchemy for every ``medic --help``; these tests keep each copy equal to its source.
"""

from __future__ import annotations

import argparse
import runpy
import subprocess
import sys
from collections.abc import Iterator

import pytest

from medic_core import __version__
from medic_core.auth.keys import SCOPES
from medic_core.cli import build_parser, deliveries, keys, ping, services, targets
from medic_core.heartbeats.model import STATUSES as HEARTBEAT_STATUSES
from medic_core.notify.delivery import STATUSES as DELIVERY_STATUSES
from medic_core.notify.targets import PERIODS
from medic_core.services.registry import STATES
from medic_core.validation import PRIORITIES


def test_the_cli_offers_exactly_the_values_the_domain_accepts() -> None:
    assert tuple(keys.SCOPES) == SCOPES
    assert tuple(services.STATES) == STATES
    assert tuple(deliveries.STATUSES) == DELIVERY_STATUSES
    assert tuple(ping.STATUSES) == HEARTBEAT_STATUSES
    assert tuple(targets.PERIODS) == PERIODS


def _options(parser: argparse.ArgumentParser) -> Iterator[argparse.Action]:
    """Every option of every command and subcommand."""
    for action in parser._actions:
        yield action
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                yield from _options(sub)


def test_every_priority_option_offers_the_domains_priorities() -> None:
    # By identity: the alias `targets` is the same parser as `target`.
    found = {id(a): a for a in _options(build_parser()) if a.dest in ("priority", "min_priority")}
    assert len(found) == 3  # service add --priority, target add/update --min-priority
    for action in found.values():
        assert tuple(action.choices or ()) == PRIORITIES, action.option_strings


def test_building_the_parser_loads_no_database_code() -> None:
    # In a fresh interpreter: this one has SQLAlchemy loaded already.
    probe = (
        "import sys\n"
        "from medic_core.cli import build_parser\n"
        "build_parser().format_help()\n"
        "loaded = sorted(m for m in sys.modules if m.split('.')[0] in ('sqlalchemy', 'alembic'))\n"
        "print(loaded)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60
    )
    assert result.stdout.strip() == "[]", result.stdout


def test_python_dash_m_runs_the_medic_command(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(sys, "argv", ["medic", "--version"])
    with pytest.raises(SystemExit) as exit:
        runpy.run_module("medic_core.cli", run_name="__main__")
    assert exit.value.code == 0
    assert capsys.readouterr().out.strip() == f"medic {__version__}"
