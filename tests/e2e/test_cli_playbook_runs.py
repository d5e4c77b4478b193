"""``medic playbook run`` and ``history``: in process on SQLite and PostgreSQL (variables
converted to their declared types, refused ones said so), and ``run --wait`` against a real
``medic serve`` whose engine runs the run while the CLI follows it."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import yaml

# The in-process ``cli`` fixtures of test_cli.py (``cli_db``: on SQLite and PostgreSQL).
from test_cli import Cli, cli, cli_db  # noqa: F401

from support.server import ServerProcess, cli_env, medic_bin

PLAYBOOK = {
    "slug": "pause",
    "variables": {
        "seconds": {"type": "integer", "default": 1},
        "loud": {"type": "boolean", "default": False},
        "host": {"type": "string", "required": True},
    },
    "steps": [{"name": "pause", "type": "wait", "params": {"seconds": 1}}],
}


def test_run_prints_the_id_and_history_lists_it(
    cli_db: Cli,  # noqa: F811
    tmp_path: Path,
) -> None:
    cli = cli_db  # noqa: F811
    assert cli("db", "upgrade")[0] == 0
    path = tmp_path / "pause.yaml"
    path.write_text(yaml.safe_dump(PLAYBOOK))
    assert cli("playbook", "apply", "-f", str(path))[0] == 0

    code, _, err = cli("playbook", "run", "pause", "--var", "seconds=soon", "--var", "host=a")
    assert code == 2 and "--var seconds: 'soon' is not of type integer" in err
    code, _, err = cli("playbook", "run", "pause")
    assert code != 0 and "variables.host is required" in err
    code, out, _ = cli(
        "playbook", "run", "pause", "--var", "seconds=3", "--var", "loud=true", "--var", "host=a"
    )
    assert code == 0, out
    run_id = int(out.strip())
    code, _, err = cli("playbook", "run", "pause", "--var", "host=b")
    assert code != 0 and f"already has an active run ({run_id})" in err

    code, out, _ = cli("playbook", "history", "pause", "--json")
    (run,) = json.loads(out)
    assert (run["id"], run["state"]) == (run_id, "pending")
    assert run["variables"] == {"seconds": 3, "loud": True, "host": "a"}
    code, out, _ = cli("playbook", "history")
    assert code == 0 and "pending" in out


@pytest.mark.e2e
def test_run_wait_follows_the_run_a_server_executes(tmp_path: Path) -> None:
    with ServerProcess(tmp_path / "server") as server:
        path = tmp_path / "pause.yaml"
        path.write_text(yaml.safe_dump(PLAYBOOK))
        env = cli_env(tmp_path / "cli", MEDIC_DATABASE_URL=server.database_url)
        medic = [str(medic_bin()), "playbook"]
        applied = subprocess.run(
            [*medic, "apply", "-f", str(path)], env=env, capture_output=True, text=True, timeout=60
        )
        assert applied.returncode == 0, applied.stderr
        result = subprocess.run(
            [*medic, "run", "pause", "--var", "host=web-1", "--wait"],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert result.returncode == 0, (result.stdout, result.stderr)
    lines = result.stdout.splitlines()
    assert lines[0].isdigit()
    assert "  pause (attempt 1): succeeded" in lines
    assert lines[-1] == f"run {lines[0]}: succeeded"
