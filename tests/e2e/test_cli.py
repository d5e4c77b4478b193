"""The ``medic`` command line, used the way a person uses it.

Two halves: subprocess tests run the installed console script (exit codes, stdout/stderr, no
tracebacks), and in-process tests call ``medic_core.cli.main`` on the same paths so the CLI
counts toward coverage (subprocesses are not measured).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shlex
import socket
import subprocess
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from medic_core import __version__
from medic_core.cli import build_parser, main
from medic_core.settings import Settings
from medic_core.store.migrate import head_revision
from support.postgres import free_port
from support.server import TOKEN_RE, ServerProcess, cli_env, fresh_postgres_url, medic_bin

EXPECTED_COMMANDS = {
    ("serve",),
    ("db",),
    ("db", "upgrade"),
    ("db", "current"),
    ("apikey",),
    ("apikey", "create"),
    ("apikey", "list"),
    ("apikey", "revoke"),
    ("service",),
    ("service", "add"),
    ("service", "list"),
    ("service", "show"),
    ("service", "mute"),
    ("service", "unmute"),
    ("service", "pause"),
    ("service", "resume"),
    ("ping",),
    ("plugins",),
    ("plugins", "list"),
    ("config",),
    ("secret",),
    ("secret", "set"),
    ("secret", "list"),
    ("secret", "delete"),
    ("secret", "rotate"),
    ("secret", "keygen"),
}
BAD_KEY = "medic_000000000000_" + "A" * 43


def command_paths(
    parser: argparse.ArgumentParser, prefix: tuple[str, ...] = ()
) -> Iterator[tuple[str, ...]]:
    """Every command and subcommand the parser knows, found by walking it (an alias such as
    ``targets`` is the same parser as ``target``: its canonical path, from ``prog``)."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                path = tuple(sub.prog.split()[1:])
                yield path
                yield from command_paths(sub, path)


ALL_COMMANDS = sorted(set(command_paths(build_parser())))


def test_the_parser_has_every_expected_command() -> None:
    assert set(ALL_COMMANDS) >= EXPECTED_COMMANDS, sorted(EXPECTED_COMMANDS - set(ALL_COMMANDS))


# -- subprocess: the console script --------------------------------------------------------------


def medic(*args: str, env: dict[str, str], timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(medic_bin()), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
        check=False,
    )


def sh(command: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """``sh("service show web", env)``: run ``medic service show web`` (shell-style quoting)."""
    return medic(*shlex.split(command), env=env)


def ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, (result.args, result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr, result.stderr
    return result.stdout


def fails(result: subprocess.CompletedProcess[str], *needles: str, code: int = 2) -> str:
    """A user error: the given exit code, a one-line-ish message on stderr, no traceback."""
    where = (result.args, result.returncode, result.stdout, result.stderr)
    assert result.returncode == code, where
    assert "Traceback" not in result.stderr and "Traceback" not in result.stdout, where
    assert result.stderr.strip(), where
    assert result.stderr.startswith(("medic: ", "usage: medic")), where
    for needle in needles:
        assert needle in result.stderr, (needle, where)
    return result.stderr


@pytest.mark.e2e
def test_help_and_version_everywhere(tmp_path: Path) -> None:
    env = cli_env(tmp_path / "data")
    runs: list[tuple[tuple[str, ...], list[str]]] = [((), ["--help"]), ((), ["--version"])]
    runs += [(path, [*path, "--help"]) for path in ALL_COMMANDS]
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda run: medic(*run[1], env=env), runs))
    for (path, args), result in zip(runs, results, strict=True):
        out = ok(result)
        if args == ["--version"]:
            assert out.strip() == f"medic {__version__}"
        else:
            assert out.startswith(f"usage: {' '.join(('medic', *path))}"), (args, out)
            assert "-h, --help" in out, (args, out)
    main_help = results[0].stdout
    for command in {p[0] for p in ALL_COMMANDS}:
        assert command in main_help
    assert not (tmp_path / "data").exists(), "--help must not create the data directory"
    fails(medic(env=env), "required")  # no command at all: usage and exit 2
    fails(medic("frobnicate", env=env), "invalid choice")


@pytest.mark.e2e
def test_db_apikey_plugins_config(tmp_path: Path) -> None:
    env = cli_env(tmp_path, MEDIC_ADMIN_KEY="medic_0123456789ab_" + "s" * 43)
    out = ok(sh("db upgrade", env))
    assert f"database at revision {head_revision()}" in out
    assert str(tmp_path / "medic.db") in out

    created = json.loads(ok(sh("apikey create --name ci --scope heartbeat --json", env)))
    assert TOKEN_RE.fullmatch(created["token"]), created
    assert created["scopes"] == ["heartbeat"] and created["name"] == "ci"
    key_id = created["key_id"]
    table = ok(sh("apikey list", env))
    assert table.splitlines()[0].split()[:3] == ["ID", "KEY_ID", "NAME"]
    assert key_id in table
    assert created["token"] not in table
    assert ok(sh(f"apikey revoke {key_id}", env)).strip() == f"revoked key {key_id}"
    fails(sh(f"apikey revoke {key_id}", env), "already revoked")
    fails(sh("apikey create --name x --scope root", env), "invalid choice")

    plugins = ok(sh("plugins list", env))
    assert "log_notifier" in plugins and "redis_health" in plugins
    markdown = ok(sh("config --markdown", env))
    assert markdown.startswith("| variable | default | meaning |")
    for name in vars(Settings.load({})):
        assert f"`MEDIC_{name.upper()}`" in markdown
    shown = json.loads(ok(sh("config", env)))
    assert shown["admin_key"] == "********", "config must not print the admin key"
    assert shown["data_dir"] == str(tmp_path)


@pytest.mark.e2e
def test_service_commands(tmp_path: Path) -> None:
    env = cli_env(tmp_path)
    table = ok(
        sh("service add web --interval 60 --grace 30 --name Web --tag edge --priority p2", env)
    )
    header, row = table.splitlines()
    assert header.split() == [
        "SLUG",
        "STATE",
        "PRIORITY",
        "TEAM",
        "LAST_HEARTBEAT_AT",
        "NEXT_DUE",
        "MUTED",
    ]
    assert row.split() == ["web", "new", "p2", "False"]
    assert ok(sh("service list", env)).splitlines()[1].split()[0] == "web"
    shown = json.loads(ok(sh("service show web", env)))
    assert (shown["name"], shown["grace"], shown["tags"]) == ("Web", 30, ["edge"])
    assert shown["expectation"] == {"kind": "interval", "period": 60}

    muted = json.loads(ok(sh("service mute web --minutes 30 --reason deploy --json", env)))
    assert muted["muted"] is True and muted["mute_reason"] == "deploy"
    assert json.loads(ok(sh("service unmute web --json", env)))["muted"] is False
    assert json.loads(ok(sh("service pause web --json", env)))["state"] == "paused"
    assert json.loads(ok(sh("service resume web --json", env)))["state"] != "paused"

    fails(sh("service add 'Bad Slug!' --interval 60", env), "slug 'Bad Slug!' is not valid")
    fails(sh("service show nope", env), "no service 'nope'")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """One running server for the ping tests, with a service `cron-job` registered by the CLI."""
    process = ServerProcess(tmp_path_factory.mktemp("cli-server"))
    process.start()
    try:
        ok(sh("service add cron-job --interval 3600", cli_env(process.data_dir)))
        yield process
    finally:
        process.close()


def heartbeat_messages(server: ServerProcess, slug: str) -> list[str | None]:
    request = urllib.request.Request(
        f"{server.url}/api/v1/services/{slug}/heartbeats?limit=100", headers=server.headers
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return [item["message"] for item in json.loads(response.read())["items"]]


@pytest.mark.e2e
def test_ping_against_a_running_server(server: ServerProcess, tmp_path: Path) -> None:
    env = cli_env(tmp_path)
    admin = cli_env(server.data_dir)  # the server's own database, next to the running server
    key = json.loads(ok(sh("apikey create --name cron --scope heartbeat --json", admin)))["token"]
    url = server.url

    assert ok(sh(f"ping cron-job --url {url} --key {key} --message sub-1", env)) == "OK\n"
    # As in a cron line: URL and key from the environment, a job signal by exit code.
    cron_env = cli_env(tmp_path, MEDIC_PUBLIC_URL=url, MEDIC_API_KEY=key)
    ok(sh("ping cron-job --exit-code 0 --run-id 'r 1' --message sub-2", cron_env))
    assert {"sub-1", "sub-2"} <= set(heartbeat_messages(server, "cron-job"))

    fails(sh(f"ping cron-job --url {url} --key {BAD_KEY}", env), "HTTP 401", "invalid or revoked")
    fails(sh(f"ping no-such-job --url {url} --key {key}", env), "HTTP 404", "no-such-job")
    fails(sh(f"ping cron-job --url {url}", env), "no API key")
    dead = f"http://127.0.0.1:{free_port()}"
    fails(sh(f"ping cron-job --url {dead} --key {key} --timeout 5", env), "cannot reach")


# -- in process: medic_core.cli.main -------------------------------------------------------------


class Cli:
    """``cli(*args)`` runs ``main(args)`` in this process; returns (exit code, stdout, stderr)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]):
        self.monkeypatch = monkeypatch
        self._capsys = capsys

    def __call__(self, *args: str) -> tuple[int, str, str]:
        code = 0
        try:
            main(list(args))
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
            message = exc.code if isinstance(exc.code, str) else None
        else:
            message = None
        out, err = self._capsys.readouterr()
        if message:  # SystemExit("text"): the interpreter would print it to stderr
            err += message + "\n"
        assert "Traceback" not in err, err
        return code, out, err


@pytest.fixture
def cli(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> Cli:
    """A ``Cli`` with no MEDIC_* settings but MEDIC_DATA_DIR=tmp_path."""
    for name in [n for n in os.environ if n.startswith("MEDIC_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("MEDIC_DATA_DIR", str(tmp_path))
    return Cli(monkeypatch, capsys)


def test_in_process_help_and_version(cli: Cli) -> None:
    assert cli("--version") == (0, f"medic {__version__}\n", "")
    for path in [(), *ALL_COMMANDS]:
        code, out, _ = cli(*path, "--help")
        assert code == 0 and out.startswith(f"usage: {' '.join(('medic', *path))}"), (path, out)
    code, _, err = cli()
    assert code == 2 and "required" in err


@pytest.fixture(params=["sqlite", "postgresql"])
def cli_db(request: pytest.FixtureRequest, cli: Cli) -> Cli:
    """``cli`` on SQLite (in tmp_path) or on a fresh PostgreSQL database."""
    if request.param == "postgresql":
        url = fresh_postgres_url(request.getfixturevalue("pg_cluster"), "e2e_cli")
        cli.monkeypatch.setenv("MEDIC_DATABASE_URL", url)
    return cli


def test_in_process_db_and_apikeys(cli_db: Cli) -> None:
    cli = cli_db
    code, out, _ = cli("db", "upgrade")
    assert code == 0 and f"database at revision {head_revision()}" in out
    assert cli("db", "current") == (0, f"current: {head_revision()}; head: {head_revision()}\n", "")

    code, out, _ = cli("apikey", "create", "--name", "ops", "--scope", "read", "--scope", "write")
    assert code == 0
    key_id = out.split()[2]
    token = TOKEN_RE.search(out)
    assert token and token.group().startswith(f"medic_{key_id}_"), out
    code, out, _ = cli("apikey", "create", "--name", "tmp", "--expires-in-days", "3", "--json")
    assert code == 0 and json.loads(out)["expires_at"] is not None
    code, out, _ = cli("apikey", "list", "--json")
    assert code == 0 and {k["name"] for k in json.loads(out)} == {"ops", "tmp"}
    assert cli("apikey", "revoke", key_id)[:2] == (0, f"revoked key {key_id}\n")
    code, _, err = cli("apikey", "revoke", key_id)
    assert code == 2 and "already revoked" in err
    code, _, err = cli("apikey", "create", "--name", " ")
    assert code == 2 and "name" in err
    code, out, _ = cli("apikey", "list")
    assert code == 0 and key_id not in out and "tmp" in out


def test_in_process_service_commands(cli_db: Cli) -> None:
    cli = cli_db
    code, out, _ = cli(
        "service",
        "add",
        "web",
        "--interval",
        "60",
        "--grace",
        "5",
        "--tag",
        "a",
        "--name",
        "Web",
        "--runbook-url",
        "https://runbooks.example/web",
        "--max-duration",
        "120",
    )
    assert code == 0 and out.splitlines()[1].split()[:3] == ["web", "new", "p3"]
    code, out, _ = cli("service", "add", "hourly", "--quorum", "3", "--window", "3600", "--json")
    assert code == 0 and json.loads(out)["expectation"]["kind"] == "quorum"
    code, out, _ = cli("service", "add", "nightly", "--cron", "0 3 * * *", "--json")
    assert code == 0 and json.loads(out)["expectation"]["timezone"] == "UTC"

    code, out, _ = cli("service", "list", "--json")
    assert code == 0 and [s["slug"] for s in json.loads(out)] == ["web", "hourly", "nightly"]
    code, out, _ = cli("service", "list", "--tag", "a")
    assert code == 0 and [line.split()[0] for line in out.splitlines()[1:]] == ["web"]
    code, out, _ = cli("service", "list", "--state", "paused")
    assert (code, out) == (0, "(none)\n")
    code, out, _ = cli("service", "show", "web")
    assert code == 0 and json.loads(out)["runbook_url"] == "https://runbooks.example/web"

    code, out, _ = cli("service", "mute", "web", "--until", "2099-01-01T00:00:00Z", "--json")
    assert code == 0 and json.loads(out)["muted_until"] == "2099-01-01T00:00:00Z"
    code, out, _ = cli("service", "mute", "hourly", "--minutes", "10", "--reason", "deploy")
    assert code == 0 and out.splitlines()[1].split()[-1] == "True"
    code, out, _ = cli("service", "mute", "nightly")  # no end: muted until unmuted
    assert code == 0
    code, out, _ = cli("service", "unmute", "web", "--json")
    assert code == 0 and json.loads(out)["muted"] is False
    code, out, _ = cli("service", "pause", "web")
    assert code == 0 and out.splitlines()[1].split()[:2] == ["web", "paused"]
    code, out, _ = cli("service", "resume", "web", "--json")
    assert code == 0 and json.loads(out)["state"] != "paused"

    errors = [
        (("service", "add", "Bad_Slug", "--interval", "60"), "is not valid"),
        (("service", "add", "web", "--interval", "60"), "already exists"),
        (("service", "add", "x"), "choose exactly one"),
        (("service", "add", "x", "--interval", "60", "--cron", "* * * * *"), "choose exactly one"),
        (("service", "add", "x", "--quorum", "3"), "--quorum needs --window"),
        (("service", "add", "x", "--interval", "0"), "period"),
        (("service", "add", "x", "--interval", "ten"), "invalid int value"),
        (("service", "add", "x", "--cron", "0 3 * * *", "--timezone", "Mars/Base"), "time zone"),
        (("service", "add", "x", "--cron", "not a cron"), "cron"),
        (("service", "add", "x", "--interval", "60", "--priority", "p9"), "invalid choice"),
        (("service", "show", "nope"), "no service 'nope'"),
        (("service", "mute", "web", "--until", "tomorrow"), "ISO 8601"),
        (("service", "mute", "nope"), "no service 'nope'"),
        (("service", "pause", "nope"), "no service 'nope'"),
        (("service", "list", "--state", "dead"), "invalid choice"),
    ]
    for args, needle in errors:
        code, out, err = cli(*args)
        assert code == 2, (args, code, out, err)
        assert needle in err, (args, err)
        assert err.startswith(("medic: ", "usage: medic")), (args, err)


def test_in_process_plugins_and_config(cli: Cli) -> None:
    code, out, _ = cli("plugins", "list", "--json")
    assert code == 0
    names = {p["name"] for p in json.loads(out)}
    assert {"log_notifier", "redis_health"} <= names
    code, out, _ = cli("plugins", "list")
    assert code == 0 and "log_notifier" in out and "redis_health" in out

    code, out, _ = cli("config", "--markdown")
    assert code == 0 and "`MEDIC_DATABASE_URL`" in out
    cli.monkeypatch.setenv("MEDIC_API_KEY", "medic_0123456789ab_" + "k" * 43)
    code, out, _ = cli("config")
    assert code == 0 and json.loads(out)["api_key"] == "********" and "kkkk" not in out
    cli.monkeypatch.setenv("MEDIC_PORT", "eighty")
    code, _, err = cli("config")
    assert code == 2 and "MEDIC_PORT" in err
    cli.monkeypatch.delenv("MEDIC_PORT")
    cli.monkeypatch.setenv("MEDIC_DATABASE_URL", "mysql://db/medic")
    code, _, err = cli("db", "current")
    assert code == 2 and "unsupported database URL" in err


@pytest.mark.e2e
def test_in_process_ping(server: ServerProcess, cli: Cli) -> None:
    assert server.admin_key
    code, out, _ = cli(
        "ping",
        "cron-job",
        "--url",
        server.url,
        "--key",
        server.admin_key,
        "--message",
        "in-process",
    )
    assert (code, out) == (0, "OK\n")
    for signal in (("--status", "start"), ("--status", "success"), ("--exit-code", "3")):
        code, out, _ = cli(
            "ping",
            "cron-job",
            *signal,
            "--run-id",
            "job/42",
            "--url",
            server.url,
            "--key",
            server.admin_key,
        )
        assert (code, out) == (0, "OK\n"), signal
    assert "in-process" in heartbeat_messages(server, "cron-job")

    code, _, err = cli("ping", "cron-job", "--url", server.url, "--key", BAD_KEY)
    assert code == 2 and "HTTP 401" in err and "invalid or revoked API key" in err
    code, _, err = cli("ping", "cron-job", "--url", server.url, "--key", "not-a-key")
    assert code == 2 and "HTTP 401" in err and "malformed API key" in err
    code, _, err = cli("ping", "nope", "--url", server.url, "--key", server.admin_key)
    assert code == 2 and "HTTP 404" in err and "no service" in err
    code, _, err = cli("ping", "cron-job", "--url", server.url)
    assert code == 2 and "no API key" in err
    code, _, err = cli(
        "ping",
        "cron-job",
        "--url",
        f"http://127.0.0.1:{free_port()}",
        "--key",
        server.admin_key,
        "--timeout",
        "5",
    )
    assert code == 2 and "cannot reach" in err


@pytest.fixture
def root_logging() -> Iterator[None]:
    """`medic serve` configures the root logger; put pytest's handlers back afterwards."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    try:
        yield
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)


@pytest.mark.usefixtures("root_logging")
def test_in_process_serve_fails_clearly(cli: Cli, tmp_path: Path) -> None:
    cli.monkeypatch.setenv("MEDIC_LOG_FORMAT", "text")
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        code, out, err = cli("serve", "--host", "127.0.0.1", "--port", str(port))
    assert code == 1, (out, err)
    assert f"medic: cannot listen on 127.0.0.1:{port}" in err
    assert "Medic is running" not in out

    cli.monkeypatch.setenv("MEDIC_DATABASE_URL", f"postgresql://medic@127.0.0.1:{free_port()}/x")
    cli.monkeypatch.setenv("MEDIC_DB_CONNECT_TIMEOUT", "2")
    cli.monkeypatch.setenv("MEDIC_DB_START_WAIT", "1")  # serve waits for a database; not long here
    code, out, err = cli("serve", "--port", str(free_port()))
    assert code == 1, (out, err)
    assert "medic: cannot prepare the database postgresql+asyncpg://medic@127.0.0.1" in err
