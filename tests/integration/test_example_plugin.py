"""A third-party plugin, installed like any package, is found and used without touching Medic.

The example plugin (``examples/medic-plugin-example``) is built by pip and installed into a
temporary directory — never into the virtualenv — which the tests put on ``PYTHONPATH`` (for
``medic`` subprocesses) or ``sys.path`` (in process). Nothing in Medic names it: Medic finds it
through its entry point in the ``medic`` group. A deliberately broken plugin installed next to
it shows that a failing plugin is reported and counted while Medic keeps working.

The build is offline: ``--no-build-isolation`` uses the virtualenv's setuptools, ``--no-index``
forbids any download (``--no-deps``: Medic itself is already there).
"""

from __future__ import annotations

import importlib
import json
import os
import shutil
import subprocess
import sys
import time
import tomllib
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator
from prometheus_client.parser import text_string_to_metric_families

from conftest import START, make_settings
from medic_core.app import Medic
from medic_core.audit import Actor
from medic_core.clock import FakeClock
from medic_core.events import Event
from medic_core.heartbeats import HeartbeatIn
from medic_core.plugins.interfaces import Notification
from support.server import ServerProcess, cli_env, medic_bin

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "medic-plugin-example"
PROJECT = tomllib.loads((EXAMPLE / "pyproject.toml").read_text())["project"]
HOOKS = "medic_event, medic_health_checks, medic_notifiers, medic_shutdown, medic_startup"
BUILTINS = {"log_notifier", "redis_health"}

# A plugin whose every hook raises, and an entry point whose module cannot be imported. Written
# as pip leaves an installed distribution: the package next to its ``.dist-info``.
BROKEN_MODULE = '''"""Every hook fails."""
from medic_core.plugins import hookimpl


def _fail():
    raise RuntimeError("broken on purpose")


@hookimpl
def medic_notifiers(medic):
    _fail()


@hookimpl
def medic_health_checks(medic):
    _fail()


@hookimpl
def medic_startup(medic):
    _fail()


@hookimpl
async def medic_event(event):
    _fail()


@hookimpl
def medic_shutdown(medic):
    _fail()
'''
BROKEN_ENTRY_POINTS = """[medic]
broken = medic_plugin_broken
broken_import = medic_plugin_broken.needs_missing
"""


@pytest.fixture(scope="module")
def example_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The example plugin, installed by pip into a directory of its own."""
    # pip builds in the source tree (build/, *.egg-info): build a copy, never the checkout.
    source = tmp_path_factory.mktemp("example-source") / EXAMPLE.name
    shutil.copytree(
        EXAMPLE,
        source,
        ignore=shutil.ignore_patterns(
            "build", "*.egg-info", "__pycache__", ".pytest_cache", ".ruff_cache"
        ),
    )
    target = tmp_path_factory.mktemp("example-installed")
    command = [
        sys.executable,
        "-m",
        "pip",
        "install",
        "--no-deps",
        "--no-build-isolation",
        "--check-build-dependencies",
        "--no-index",
        "--target",
        str(target),
        str(source),
    ]
    env = {**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1", "PIP_NO_INPUT": "1"}
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
    if result.returncode != 0:
        hint = ""
        if "setuptools" in result.stdout + result.stderr:
            hint = (
                "\nThe virtualenv's setuptools cannot build the example offline: it needs "
                "setuptools>=77 (the dev extra of Medic's pyproject.toml should install it)."
            )
        pytest.fail(
            f"{' '.join(command)} failed ({result.returncode}):\n"
            f"{result.stdout[-3000:]}\n{result.stderr[-3000:]}{hint}"
        )
    assert (target / "medic_plugin_example" / "__init__.py").is_file()
    return target


@pytest.fixture(scope="module")
def broken_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    target = tmp_path_factory.mktemp("broken-installed")
    package = target / "medic_plugin_broken"
    package.mkdir()
    (package / "__init__.py").write_text(BROKEN_MODULE)
    (package / "needs_missing.py").write_text("import medic_no_such_dependency  # noqa: F401\n")
    info = target / "medic_plugin_broken-0.1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: medic-plugin-broken\nVersion: 0.1.0\n"
    )
    (info / "entry_points.txt").write_text(BROKEN_ENTRY_POINTS)
    return target


def medic_env(data_dir: Path, *paths: Path) -> dict[str, str]:
    """The environment of a ``medic`` subprocess that sees the plugins installed in ``paths``."""
    env = cli_env(data_dir)
    env.pop("PYTHONPATH", None)
    if paths:
        env["PYTHONPATH"] = os.pathsep.join(map(str, paths))
    return env


def plugins_list(*runs: tuple[dict[str, str], list[str]]) -> list[subprocess.CompletedProcess[str]]:
    """Run ``medic plugins list`` once per (environment, extra arguments), side by side."""
    command = [str(medic_bin()), "plugins", "list"]
    started = [
        (
            [*command, *extra],
            subprocess.Popen(
                [*command, *extra],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                env=env,
            ),
        )
        for env, extra in runs
    ]
    finished = []
    for args, process in started:
        out, err = process.communicate(timeout=60)
        finished.append(subprocess.CompletedProcess(args, process.returncode, out, err))
    return finished


def http(server: ServerProcess, method: str, path: str, body: Any = None) -> tuple[int, bytes]:
    headers = dict(server.headers)
    data = None
    if body is not None:
        data = json.dumps(body).encode()
        headers["Content-Type"] = "application/json"
    request = urllib.request.Request(server.url + path, data, headers, method=method)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def plugin_errors(server: ServerProcess) -> dict[tuple[str, str], float]:
    """``medic_plugin_errors_total`` by (plugin, hook), read from ``GET /metrics``."""
    status, body = http(server, "GET", "/metrics")
    assert status == 200
    return {
        (sample.labels["plugin"], sample.labels["hook"]): sample.value
        for family in text_string_to_metric_families(body.decode())
        for sample in family.samples
        if sample.name == "medic_plugin_errors_total"
    }


def log_records(stderr: str) -> list[dict[str, Any]]:
    """The JSON log lines a server wrote (MEDIC_LOG_FORMAT=json)."""
    records = []
    for line in stderr.splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict):
            records.append(record)
    return records


def the_record(records: list[dict[str, Any]], prefix: str) -> dict[str, Any]:
    found = [r for r in records if str(r.get("message", "")).startswith(prefix)]
    assert len(found) == 1, (prefix, records)
    return found[0]


def assert_example_ready(server: ServerProcess) -> None:
    status, body = http(server, "GET", "/health/ready")
    assert status == 200, body
    ready = json.loads(body)
    assert ready["status"] == "ok"
    disk = ready["checks"]["example-disk"]
    assert disk["critical"] is False
    assert disk["status"] in ("ok", "degraded"), disk
    assert str(server.data_dir) in disk["detail"], disk
    assert ready["checks"]["database"]["status"] == "ok"


# -- discovery: `medic plugins list` ------------------------------------------------------------


def test_plugins_list_shows_the_installed_example_with_its_package_and_hooks(
    example_dir: Path, tmp_path: Path
) -> None:
    without, listed, table = plugins_list(
        (medic_env(tmp_path), ["--json"]),
        (medic_env(tmp_path, example_dir), ["--json"]),
        (medic_env(tmp_path, example_dir), []),
    )
    assert without.returncode == 0, without.stderr
    assert "example" not in {row["name"] for row in json.loads(without.stdout)}

    assert listed.returncode == 0, listed.stderr
    assert "FAILED" not in listed.stderr
    rows = {row["name"]: row for row in json.loads(listed.stdout)}
    assert rows["example"] == {
        "name": "example",
        "module": "medic_plugin_example",
        "package": PROJECT["name"],
        "version": PROJECT["version"],
        "hooks": HOOKS,
    }
    assert set(rows) >= BUILTINS | {"example"}

    assert table.returncode == 0, table.stderr
    (line,) = [x for x in table.stdout.splitlines() if x.startswith("example ")]
    expected = ["example", PROJECT["name"], PROJECT["version"], "medic_plugin_example", HOOKS]
    assert " ".join(line.split()) == " ".join(expected)


def test_plugins_list_reports_a_plugin_that_cannot_load_and_still_lists_the_others(
    example_dir: Path, broken_dir: Path, tmp_path: Path
) -> None:
    (listed,) = plugins_list((medic_env(tmp_path, example_dir, broken_dir), ["--json"]))
    assert listed.returncode == 1, (listed.stdout, listed.stderr)
    failures = [x for x in listed.stderr.splitlines() if x.startswith("FAILED ")]
    assert failures == [
        "FAILED broken_import: load: ModuleNotFoundError: "
        "No module named 'medic_no_such_dependency'"
    ]
    rows = {row["name"]: row for row in json.loads(listed.stdout)}
    assert set(rows) >= BUILTINS | {"example", "broken"}
    assert "broken_import" not in rows
    assert rows["broken"]["package"] == "medic-plugin-broken"
    assert rows["broken"]["hooks"] == HOOKS
    assert rows["example"]["hooks"] == HOOKS


# -- use: a real `medic serve` ------------------------------------------------------------------


@pytest.mark.e2e
def test_a_real_server_runs_the_example_health_check_and_lifecycle_hooks(
    example_dir: Path, tmp_path: Path
) -> None:
    server = ServerProcess(
        tmp_path / "server", env={"PYTHONPATH": str(example_dir), "MEDIC_LOG_FORMAT": "json"}
    )
    server.start()
    try:
        assert_example_ready(server)
        assert [key for key in plugin_errors(server) if key[0] == "example"] == []
    finally:
        code = server.stop()
    assert code == 0, server.stderr
    records = log_records(server.stderr)
    started = the_record(records, "example plugin started")
    assert started["data_dir"] == str(server.data_dir)
    assert "events" in the_record(records, "example plugin saw")


@pytest.mark.e2e
def test_a_broken_plugin_is_counted_while_medic_and_the_example_keep_working(
    example_dir: Path, broken_dir: Path, tmp_path: Path
) -> None:
    server = ServerProcess(
        tmp_path / "server",
        env={
            "PYTHONPATH": os.pathsep.join([str(example_dir), str(broken_dir)]),
            "MEDIC_LOG_FORMAT": "json",
        },
    )
    server.start()
    try:
        assert_example_ready(server)
        errors = plugin_errors(server)
        assert {key: n for key, n in errors.items() if key[0].startswith("broken")} == {
            ("broken_import", "load"): 1.0,
            ("broken", "medic_notifiers"): 1.0,
            ("broken", "medic_health_checks"): 1.0,
            ("broken", "medic_startup"): 1.0,
        }
        assert [key for key in errors if key[0] == "example"] == []
        service = {"slug": "nightly", "expectation": {"kind": "interval", "period": 3600}}
        assert http(server, "POST", "/api/v1/services", service)[0] == 201
        assert http(server, "POST", "/api/v1/ping/nightly")[0] == 200
        # Two events (service.created, then service.state_changed new -> up): the broken
        # medic_event fails on each, after the example's has counted it.
        deadline = time.monotonic() + 10
        while plugin_errors(server).get(("broken", "medic_event"), 0) < 2:
            assert time.monotonic() < deadline, plugin_errors(server)
            time.sleep(0.05)
        status, body = http(server, "GET", "/api/v1/services/nightly")
        assert status == 200 and json.loads(body)["state"] == "up"
        assert not any(plugin == "example" for plugin, _ in plugin_errors(server))
    finally:
        code = server.stop()
    assert code == 0, server.stderr
    saw = the_record(log_records(server.stderr), "example plugin saw")
    assert saw["events"] == {"service.created": 1, "service.state_changed": 1}


# -- use: an in-process Medic -------------------------------------------------------------------


@pytest.fixture
def example_importable(example_dir: Path) -> Iterator[None]:
    """The installed example on ``sys.path`` for this test only."""
    assert "medic_plugin_example" not in sys.modules
    sys.path.insert(0, str(example_dir))
    importlib.invalidate_caches()  # importlib.metadata caches what each path entry holds
    try:
        yield
    finally:
        sys.path.remove(str(example_dir))
        for name in [n for n in sys.modules if n.partition(".")[0] == "medic_plugin_example"]:
            del sys.modules[name]
        importlib.invalidate_caches()


@pytest.mark.usefixtures("example_importable")
async def test_an_in_process_medic_loads_the_example_and_its_notifier_writes_json_lines(
    sqlite_template: Path, tmp_path: Path
) -> None:
    shutil.copy(sqlite_template, tmp_path / "medic.db")
    clock = FakeClock(START)
    medic = Medic(make_settings(f"sqlite:///{tmp_path / 'medic.db'}", tmp_path), clock=clock)
    opened: list[Event] = []

    async def record(event: Event) -> None:
        if event.type == "alert.opened":
            opened.append(event)

    medic.bus.subscribe("test-recorder", record)
    await medic.start(monitor=False)
    try:
        (info,) = [p for p in medic.plugins.describe() if p.name == "example"]
        assert (info.distribution, info.version) == (PROJECT["name"], PROJECT["version"])
        assert [f for f in medic.plugins.failures if f.name == "example"] == []
        notifier = medic.notifiers["example-file"]
        assert type(notifier).__module__ == "medic_plugin_example"
        assert (await medic.readiness())["example-disk"].status in ("ok", "degraded")

        # A real alert: a service misses its deadline.
        await medic.services.create(
            {"slug": "job", "expectation": {"kind": "interval", "period": 60}},
            actor=Actor("test"),
        )
        await medic.writer.submit(HeartbeatIn("job"))
        clock.advance(61)
        await medic.monitor.run_once()
        await medic.bus.drain()
        (event,) = opened
        alert = event.data["alert"]

        # What a target will hold: the notifier's name and a config valid for its schema.
        out = tmp_path / "alerts.jsonl"
        config = {"path": str(out)}
        assert Draft202012Validator(notifier.config_schema).is_valid(config)
        assert not Draft202012Validator(notifier.config_schema).is_valid({"path": "rel.jsonl"})
        state = await notifier.send(
            Notification(
                kind="opened",
                alert=alert,
                service=alert["service"],
                config=config,
                target="ops-file",
                dedup_key=f"medic-alert-{alert['id']}",
            )
        )
        assert state == {"lines": 1}
        (line,) = out.read_text().splitlines()
        written = json.loads(line)
        assert written["kind"] == "opened" and written["target"] == "ops-file"
        assert written["alert"]["id"] == alert["id"] and written["alert"]["cause"] == "missed"
        assert written["service"]["slug"] == "job"

        example = sys.modules["medic_plugin_example"]
        assert example.events["service.created"] == 1
        assert example.events["alert.opened"] == 1
    finally:
        await medic.stop()
    assert (
        medic.metrics.registry.get_sample_value(
            "medic_plugin_errors_total", {"plugin": "example", "hook": "medic_event"}
        )
        is None
    )
