"""``medic secret``: keygen needs no database; set reads the value from stdin or a file (never
argv), list shows names only, delete, and rotate moves every value to a new first key -- in
process, on SQLite and PostgreSQL, as tests/e2e/test_cli.py does."""

from __future__ import annotations

import io
import json
from pathlib import Path

from cryptography.fernet import Fernet

# The in-process ``cli`` fixtures of test_cli.py (``cli_db``: on SQLite and PostgreSQL).
from test_cli import Cli, cli, cli_db  # noqa: F401


def stdin(runner: Cli, text: str) -> None:
    runner.monkeypatch.setattr("sys.stdin", io.StringIO(text))


def test_keygen_prints_a_fernet_key_and_needs_no_database(
    cli: Cli,  # noqa: F811
    tmp_path: Path,
) -> None:
    cli.monkeypatch.setenv("MEDIC_DATA_DIR", str(tmp_path / "never-made"))
    code, out, _ = cli("secret", "keygen")
    assert code == 0
    Fernet(out.strip().encode())  # a valid key
    assert cli("secret", "keygen")[1] != out  # random each time
    assert not (tmp_path / "never-made").exists()


def test_set_help_says_why_the_value_is_never_an_argument(cli: Cli) -> None:  # noqa: F811
    code, out, _ = cli("secret", "set", "--help")
    assert code == 0 and "shell history" in out and "`ps`" in out and "--from-file" in out


def test_set_list_delete_and_rotate_end_to_end(
    cli_db: Cli,  # noqa: F811
    tmp_path: Path,
) -> None:
    cli = cli_db  # noqa: F811
    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    code, _, err = cli("secret", "set", "NO_KEY_YET")
    assert code == 2 and "medic secret keygen" in err
    cli.monkeypatch.setenv("MEDIC_SECRET_KEY", old)

    stdin(cli, "from-stdin-value\n")
    assert cli("secret", "set", "FROM_STDIN") == (0, "created secret FROM_STDIN\n", "")
    value_file = tmp_path / "value.txt"
    value_file.write_text("from-file-value\n")
    assert cli("secret", "set", "FROM_FILE", "--from-file", str(value_file))[1] == (
        "created secret FROM_FILE\n"
    )
    stdin(cli, "replaced-value")
    assert cli("secret", "set", "FROM_STDIN")[1] == "replaced secret FROM_STDIN\n"
    stdin(cli, "abc")
    code, _, err = cli("secret", "set", "TOO_SHORT")
    assert code == 2 and "at least 4 characters" in err and "abc" not in err.split("'*'")[-1]
    code, _, err = cli("secret", "set", "X", "--from-file", str(tmp_path / "missing"))
    assert code == 2 and "cannot read the secret" in err

    code, out, _ = cli("secret", "list")
    assert code == 0 and "FROM_FILE" in out and "FROM_STDIN" in out
    assert "value" not in out.replace("updated", "")  # no value, not even a column of them
    code, out, _ = cli("secret", "list", "--json")
    assert [s["name"] for s in json.loads(out)] == ["FROM_STDIN", "FROM_FILE"]
    assert "from-" not in out and "replaced-value" not in out

    cli.monkeypatch.setenv("MEDIC_SECRET_KEY", f"{new},{old}")
    code, out, _ = cli("secret", "rotate")
    assert code == 0
    assert out.splitlines() == [
        "rotated 2 so far",
        "rotated 2 secret(s), playbook webhook secrets included, to the first key of "
        "MEDIC_SECRET_KEY",
    ]
    cli.monkeypatch.setenv("MEDIC_SECRET_KEY", new)
    assert cli("secret", "rotate")[0] == 0  # the new key alone opens everything now

    assert cli("secret", "delete", "FROM_FILE") == (0, "deleted secret FROM_FILE\n", "")
    code, _, err = cli("secret", "delete", "FROM_FILE")
    assert code == 2 and "no secret 'FROM_FILE'" in err
    assert [s["name"] for s in json.loads(cli("secret", "list", "--json")[1])] == ["FROM_STDIN"]

    cli.monkeypatch.setenv("MEDIC_SECRET_KEY", old)  # dropped too early: a clear error
    code, _, err = cli("secret", "rotate")
    assert code == 2 and "'FROM_STDIN'" in err and "replaced-value" not in err


def test_a_malformed_key_is_refused_without_showing_it(cli_db: Cli) -> None:  # noqa: F811
    cli_db.monkeypatch.setenv("MEDIC_SECRET_KEY", "this-is-not-a-fernet-key")
    code, out, err = cli_db("secret", "list")
    assert code == 2 and "key 1 of 1 is not a Fernet key" in err
    assert "this-is-not-a-fernet-key" not in out + err
