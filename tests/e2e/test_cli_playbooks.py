"""``medic playbook``: validate offline, apply a directory twice (the second time nothing
changes), list and show -- in process, on SQLite and PostgreSQL, as tests/e2e/test_cli.py does."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import yaml

# The in-process ``cli`` fixtures of test_cli.py (``cli_db``: on SQLite and PostgreSQL).
from test_cli import Cli, cli, cli_db  # noqa: F401

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "playbooks"


def test_validate_reports_each_file_and_fails_on_any_error(
    cli: Cli,  # noqa: F811
    tmp_path: Path,
) -> None:
    code, out, _ = cli("playbook", "validate", "-f", str(EXAMPLES))
    assert code == 0
    assert out.count(": OK") == len(list(EXAMPLES.iterdir()))
    broken = tmp_path / "broken.yaml"
    broken.write_text("slug: b\nsteps:\n  - {name: a, type: nope, params: {}}\n")
    code, out, _ = cli("playbook", "validate", "-f", str(broken), "-f", str(EXAMPLES))
    assert code == 1
    assert f"{broken}: INVALID" in out and "steps[0].type must be one of" in out
    code, _, err = cli("playbook", "validate", "-f", str(tmp_path / "missing"))
    assert code == 2 and "no such file or directory" in err


def changes(out: str) -> list[str]:
    """What ``apply`` says of each file (its warnings, indented, left out)."""
    return [line.split(": ")[1].split()[0] for line in out.splitlines() if line[:1] != " "]


def test_apply_a_directory_twice_changes_nothing_the_second_time(
    cli_db: Cli,  # noqa: F811
    tmp_path: Path,
) -> None:
    cli = cli_db  # noqa: F811
    assert cli("db", "upgrade")[0] == 0
    gitops = tmp_path / "playbooks"
    shutil.copytree(EXAMPLES, gitops)
    (gitops / "README.txt").write_text("not a playbook: skipped")
    code, out, _ = cli("playbook", "apply", "-f", str(gitops))
    assert code == 0, out
    assert changes(out) == ["created"] * 3
    # The example's script step chooses agents by labels: checked when it runs, and said so.
    assert "  warning: steps[0].params.agents.labels (step 'restart')" in out
    code, out, _ = cli("playbook", "apply", "-f", str(gitops))
    assert code == 0
    assert changes(out) == ["unchanged"] * 3

    edited = gitops / "drain-and-check.yaml"
    document = yaml.safe_load(edited.read_text())
    document["steps"][1]["params"]["seconds"] = 120
    edited.write_text(yaml.safe_dump(document))
    code, out, _ = cli("playbook", "apply", "-f", str(gitops))
    assert f"{edited}: updated (drain-api-node version 2)" in out

    code, out, _ = cli("playbook", "list", "--json")
    assert {p["slug"]: p["current_version"] for p in json.loads(out)} == {
        "restart-worker": 1,
        "drain-api-node": 2,
        "failover-db": 1,
    }
    code, out, _ = cli("playbook", "show", "drain-api-node", "--version", "1")
    assert out.startswith("# drain-api-node version 1 (sha256 ")
    assert yaml.safe_load(out)["steps"][1]["params"]["seconds"] == 60
    code, out, _ = cli("playbook", "show", "drain-api-node", "-o", "json")
    assert json.loads(out) == document


def test_apply_saves_nothing_when_one_file_is_invalid(
    cli_db: Cli,  # noqa: F811
    tmp_path: Path,
) -> None:
    cli = cli_db  # noqa: F811
    assert cli("db", "upgrade")[0] == 0
    shutil.copy(EXAMPLES / "drain-and-check.yaml", tmp_path / "a.yaml")
    (tmp_path / "b.yaml").write_text("slug: b\nsteps: []\n")
    code, out, _ = cli("playbook", "apply", "-f", str(tmp_path))
    assert code == 1 and "nothing applied" in out and "steps must hold" in out
    code, out, _ = cli("playbook", "list", "--json")
    assert json.loads(out) == []
