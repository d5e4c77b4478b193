"""``medic playbook apply`` runs the step types' own checks on every file before applying any,
as the API does: a file whose script step puts a secret in its arguments is refused, and no
file of the directory is applied (in process, on SQLite and PostgreSQL, as tests/e2e/test_cli.py
does). The offline ``validate`` makes the checks that need no database, that one included.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

# The in-process ``cli`` fixtures of test_cli.py (``cli_db``: on SQLite and PostgreSQL).
from test_cli import Cli, cli, cli_db  # noqa: F401

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "playbooks"

LEAKY = """slug: leaky
steps:
  - name: restart
    type: script
    params:
      agents: {ids: [web-1]}
      script: restart-service
      args: ["--token={{ secrets.API_TOKEN }}"]
"""


def test_apply_refuses_a_secret_in_script_arguments_and_applies_nothing(
    cli_db: Cli,  # noqa: F811
    tmp_path: Path,
) -> None:
    cli = cli_db  # noqa: F811
    assert cli("db", "upgrade")[0] == 0
    shutil.copy(EXAMPLES / "drain-and-check.yaml", tmp_path / "a.yaml")
    (tmp_path / "b.yaml").write_text(LEAKY)
    code, out, _ = cli("playbook", "apply", "-f", str(tmp_path))
    assert code == 1, out
    assert f"{tmp_path / 'b.yaml'}: INVALID" in out
    assert "secrets may not go in a script's arguments" in out
    assert "nothing applied" in out
    code, out, _ = cli("playbook", "list", "--json")
    assert json.loads(out) == []


def test_offline_validate_refuses_a_secret_in_script_arguments(
    cli: Cli,  # noqa: F811
    tmp_path: Path,
) -> None:
    leaky = tmp_path / "leaky.yaml"
    leaky.write_text(LEAKY)
    code, out, _ = cli("playbook", "validate", "-f", str(leaky), "-f", str(EXAMPLES))
    assert code == 1, out
    assert f"{leaky}: INVALID" in out
    assert "steps[0].params.args[0] (step 'restart'): secrets may not go" in out
    assert out.count(": OK") == len(list(EXAMPLES.iterdir()))
