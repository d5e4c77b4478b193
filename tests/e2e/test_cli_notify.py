"""``medic schedule|escalation|target|team|doctor``: alert-delivery commands, as people use them.

In-process tests call ``medic_core.cli.main`` on SQLite and PostgreSQL (exit codes, stdout,
stderr); subprocess tests run the installed console script for ``doctor``, whose exit code is
what scripts and probes rely on.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from medic_core.app import Medic
from medic_core.audit import Actor
from medic_core.cli import main
from medic_core.errors import NotFound
from medic_core.plugins.interfaces import HealthResult
from medic_core.settings import Settings
from medic_core.store.migrate import head_revision
from medic_core.store.models import NotificationTarget
from support.postgres import free_port
from support.server import cli_env, fresh_postgres_url, medic_bin

MASK = "********"
SECRET = "whsec-" + "z" * 26
HOOK = {"url": "https://hooks.example.com/medic", "secret": SECRET}
NEW_COMMANDS = [
    ("schedule",),
    *[("schedule", a) for a in ("add", "list", "show", "update", "remove")],
    ("escalation",),
    *[("escalation", a) for a in ("add", "list", "show", "update", "remove")],
    ("target",),
    *[("target", a) for a in ("add", "list", "show", "update", "remove", "test", "check")],
    ("team",),
    ("team", "set-escalation"),
    ("doctor",),
    ("delivery",),
    *[("delivery", a) for a in ("list", "show", "retry", "retry-failed")],
]


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
        out, err = self._capsys.readouterr()
        assert "Traceback" not in err, err
        return code, out, err

    def ok(self, *args: str) -> str:
        code, out, err = self(*args)
        assert code == 0, (args, code, out, err)
        return out

    def json(self, *args: str) -> Any:
        return json.loads(self.ok(*args))

    def fails(self, *args: str, needle: str, code: int = 2) -> str:
        got, out, err = self(*args)
        assert got == code, (args, got, out, err)
        assert err.startswith(("medic: ", "usage: medic")), (args, err)
        assert needle in err, (args, err)
        return err


@pytest.fixture
def cli(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> Cli:
    """A ``Cli`` with no MEDIC_* settings but MEDIC_DATA_DIR=tmp_path."""
    for name in [n for n in os.environ if n.startswith("MEDIC_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("MEDIC_DATA_DIR", str(tmp_path))
    return Cli(monkeypatch, capsys)


@pytest.fixture(params=["sqlite", "postgresql"])
def cli_db(request: pytest.FixtureRequest, cli: Cli) -> Cli:
    """``cli`` on SQLite (in tmp_path) or on a fresh PostgreSQL database."""
    if request.param == "postgresql":
        url = fresh_postgres_url(request.getfixturevalue("pg_cluster"), "e2e_notify")
        cli.monkeypatch.setenv("MEDIC_DATABASE_URL", url)
    return cli


def with_medic(work: Callable[[Medic], Awaitable[Any]]) -> Any:
    """Run ``work`` against the database the CLI uses (after a CLI command migrated it)."""

    async def run() -> Any:
        medic = Medic(Settings.load())
        try:
            return await work(medic)
        finally:
            await medic.stop()

    return asyncio.run(run())


def stored_config(slug: str) -> dict[str, Any]:
    async def read(medic: Medic) -> dict[str, Any]:
        async with medic.db.sessions() as session:
            target = await session.scalar(
                select(NotificationTarget).where(NotificationTarget.slug == slug)
            )
        assert target is not None
        return target.config

    result: dict[str, Any] = with_medic(read)
    return result


def table(out: str) -> list[list[str]]:
    """A printed table as rows of cells (split on runs of two or more spaces)."""
    return [re.split(r"\s{2,}", line.strip()) for line in out.splitlines()]


# -- help ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", NEW_COMMANDS, ids=" ".join)
def test_every_new_command_has_help(cli: Cli, path: tuple[str, ...]) -> None:
    out = cli.ok(*path, "--help")
    assert out.startswith(f"usage: medic {' '.join(path)}"), out
    assert "-h, --help" in out


def test_help_explains_the_formats(cli: Cli) -> None:
    assert "'mon-fri 09:00-17:30'" in cli.ok("schedule", "add", "--help")
    assert "SECONDS:TARGET" in cli.ok("escalation", "add", "--help")
    target_help = cli.ok("target", "add", "--help")
    assert "--config-file PATH" in target_help and MASK in target_help
    assert "exits 1" in cli.ok("target", "--help")
    assert "Exits 1 when a check is down" in " ".join(cli.ok("doctor", "--help").split())


# -- schedules -----------------------------------------------------------------------------------


def test_schedule_commands(cli_db: Cli) -> None:
    cli = cli_db
    out = cli.ok(
        "schedule",
        "add",
        "office",
        "--timezone",
        "Europe/Berlin",
        "--hours",
        "mon-fri 09:00-17:30",
        "--hours",
        "sun-mon 22:00-06:00",
        "--name",
        "Office",
    )
    assert table(out) == [
        ["SLUG", "NAME", "TIMEZONE", "HOURS"],
        [
            "office",
            "Office",
            "Europe/Berlin",
            "mon,tue,wed,thu,fri 09:00-17:30; mon,sun 22:00-06:00",
        ],
    ]
    shown = cli.json("schedule", "show", "office")
    assert shown["weekly"] == [
        {"days": ["mon", "tue", "wed", "thu", "fri"], "start": "09:00", "end": "17:30"},
        {"days": ["mon", "sun"], "start": "22:00", "end": "06:00"},
    ]
    weekly = json.dumps([{"days": ["sat"], "start": "10:00", "end": "24:00"}])
    cli.ok("schedule", "add", "weekend", "--timezone", "UTC", "--weekly", weekly)
    assert [s["slug"] for s in cli.json("schedule", "list", "--json")] == ["office", "weekend"]
    updated = cli.json(
        "schedule",
        "update",
        "weekend",
        "--timezone",
        "Asia/Tokyo",
        "--hours",
        "sat,sun 00:00-00:00",
        "--json",
    )
    assert updated["timezone"] == "Asia/Tokyo"
    assert updated["weekly"] == [{"days": ["sat", "sun"], "start": "00:00", "end": "00:00"}]
    assert cli.ok("schedule", "remove", "weekend") == "removed schedule weekend\n"
    assert "weekend" not in cli.ok("schedule", "list")

    cli.fails("schedule", "add", "x", "--timezone", "UTC", needle="give the hours")
    cli.fails("schedule", "add", "x", "--hours", "mon 09:00-10:00", needle="--timezone")
    cli.fails(
        "schedule",
        "add",
        "x",
        "--timezone",
        "Mars/Base",
        "--hours",
        "mon 09:00-10:00",
        needle="unknown time zone 'Mars/Base'",
    )
    cli.fails(
        "schedule",
        "add",
        "x",
        "--timezone",
        "UTC",
        "--hours",
        "mon 9-17",
        needle="weekly[0].start must be a time HH:MM",
    )
    cli.fails(
        "schedule",
        "add",
        "x",
        "--timezone",
        "UTC",
        "--hours",
        "someday 09:00-10:00",
        needle="'someday' is not a day",
    )
    cli.fails(
        "schedule",
        "add",
        "x",
        "--timezone",
        "UTC",
        "--hours",
        "09:00-10:00",
        needle="must look like 'DAYS HH:MM-HH:MM'",
    )
    cli.fails(
        "schedule",
        "add",
        "x",
        "--timezone",
        "UTC",
        "--weekly",
        "[oops",
        needle="--weekly is not valid JSON",
    )
    cli.fails(
        "schedule",
        "add",
        "x",
        "--timezone",
        "UTC",
        "--weekly",
        weekly,
        "--hours",
        "mon 09:00-10:00",
        needle="not both",
    )
    cli.fails(
        "schedule",
        "add",
        "office",
        "--timezone",
        "UTC",
        "--hours",
        "mon 09:00-10:00",
        needle="already exists",
    )
    cli.fails("schedule", "show", "nope", needle="no schedule 'nope'")
    cli.fails("schedule", "remove", "nope", needle="no schedule 'nope'")


# -- targets -------------------------------------------------------------------------------------


def test_target_commands_mask_secrets_and_keep_them_on_round_trip(
    cli_db: Cli, tmp_path: Path
) -> None:
    cli = cli_db
    cli.ok("service", "add", "billing", "--interval", "60")
    cli.ok("schedule", "add", "office", "--timezone", "UTC", "--hours", "mon-fri 09:00-17:00")
    config_file = tmp_path / "hook.json"
    config_file.write_text(json.dumps(HOOK))

    out = cli.ok(
        "target",
        "add",
        "hook",
        "--notifier",
        "webhook",
        "--config-file",
        str(config_file),
        "--service",
        "billing",
        "--min-priority",
        "p2",
    )
    assert table(out) == [
        ["SLUG", "NOTIFIER", "OWNER", "MIN_PRIORITY", "PERIOD", "SCHEDULE", "ENABLED"],
        ["hook", "webhook", "service:billing", "p2", "always", "True"],
    ]
    assert SECRET not in out
    shown = cli.json("target", "show", "hook")
    assert shown["config"] == {"url": HOOK["url"], "secret": MASK}
    assert stored_config("hook") == HOOK

    # Send back what `show` printed, with one change: the secret stays.
    changed = {**shown["config"], "url": "https://hooks.example.com/v2"}
    updated = cli.json("target", "update", "hook", "--config", json.dumps(changed), "--json")
    assert updated["config"] == {"url": "https://hooks.example.com/v2", "secret": MASK}
    assert stored_config("hook") == {**HOOK, "url": "https://hooks.example.com/v2"}

    cli.ok(
        "target",
        "add",
        "chat",
        "--notifier",
        "log",
        "--config",
        '{"level": "ERROR"}',
        "--period",
        "working_hours",
        "--schedule",
        "office",
        "--disable",
    )
    listed = cli.ok("target", "list")
    assert SECRET not in listed
    assert [row[0] for row in table(listed)] == ["SLUG", "hook", "chat"]
    assert [t["slug"] for t in cli.json("target", "list", "--disabled", "--json")] == ["chat"]
    assert [t["slug"] for t in cli.json("target", "list", "--enabled", "--json")] == ["hook"]
    assert [t["slug"] for t in cli.json("target", "list", "--service", "billing", "--json")] == [
        "hook"
    ]
    assert [t["slug"] for t in cli.json("target", "list", "--notifier", "log", "--json")] == [
        "chat"
    ]

    moved = cli.json(
        "target", "update", "chat", "--period", "always", "--enable", "--fallback", "--json"
    )
    assert (moved["period"], moved["schedule"], moved["enabled"], moved["service"]) == (
        "always",
        None,
        True,
        None,
    )
    cli.ok("target", "update", "chat", "--period", "off_hours", "--schedule", "office")
    cli.fails("target", "update", "chat", "--no-schedule", needle="needs a schedule")
    assert cli.ok("target", "remove", "chat") == "removed target chat\n"

    cli.fails("target", "add", "x", "--notifier", "smoke", needle="the loaded notifiers are ")
    cli.fails(
        "target",
        "add",
        "x",
        "--notifier",
        "webhook",
        "--config",
        '{"url": 5}',
        needle="config.url: 5 is not of type 'string'",
    )
    cli.fails(
        "target",
        "add",
        "x",
        "--notifier",
        "webhook",
        "--config",
        json.dumps({**HOOK, "secret": "short"}),
        needle="config.secret: the value (not shown",
    )
    cli.fails(
        "target",
        "add",
        "x",
        "--notifier",
        "webhook",
        "--config",
        "{nope",
        needle="--config is not valid JSON",
    )
    cli.fails(
        "target",
        "add",
        "x",
        "--notifier",
        "log",
        "--config-file",
        str(tmp_path / "missing.json"),
        needle="cannot read --config-file",
    )
    cli.fails(
        "target",
        "add",
        "x",
        "--notifier",
        "log",
        "--config",
        "{}",
        "--config-file",
        str(config_file),
        needle="not both",
    )
    cli.fails(
        "target",
        "add",
        "x",
        "--notifier",
        "log",
        "--team",
        "a",
        "--service",
        "b",
        needle="a team or to a service",
    )
    cli.fails(
        "target", "add", "x", "--notifier", "log", "--team", "ghosts", needle="no team 'ghosts'"
    )
    cli.fails(
        "target", "add", "x", "--notifier", "log", "--min-priority", "p9", needle="invalid choice"
    )
    cli.fails("target", "add", "x", needle="--notifier")
    cli.fails("target", "update", "hook", "--fallback", "--team", "a", needle="--fallback")
    cli.fails("target", "show", "nope", needle="no target 'nope'")


# -- escalation policies and a team's policy -----------------------------------------------------


def test_escalation_and_team_commands(cli_db: Cli) -> None:
    cli = cli_db
    for slug in ("primary", "manager"):
        cli.ok("target", "add", slug, "--notifier", "log")
    out = cli.ok(
        "escalation",
        "add",
        "sre",
        "--level",
        "300:primary",
        "--level",
        "1800:primary,manager",
        "--repeat-every",
        "600",
        "--name",
        "SRE",
    )
    assert table(out) == [
        ["SLUG", "NAME", "LEVELS", "REPEAT_EVERY", "MAX_REMINDERS"],
        ["sre", "SRE", "300s: primary; 1800s: primary,manager", "600", "3"],
    ]
    shown = cli.json("escalation", "show", "sre")
    assert shown["levels"] == [
        {"after": 300, "targets": ["primary"]},
        {"after": 1800, "targets": ["primary", "manager"]},
    ]
    levels = json.dumps([{"after": 120, "targets": ["manager"]}])
    updated = cli.json(
        "escalation",
        "update",
        "sre",
        "--levels",
        levels,
        "--no-repeat",
        "--max-reminders",
        "0",
        "--json",
    )
    assert (updated["levels"], updated["repeat_every"], updated["max_reminders"]) == (
        [{"after": 120, "targets": ["manager"]}],
        None,
        0,
    )
    assert [p["slug"] for p in cli.json("escalation", "list", "--json")] == ["sre"]

    with_medic(lambda medic: medic.teams.create({"slug": "payments"}, actor=Actor("test")))
    out = cli.ok("team", "set-escalation", "payments", "sre")
    assert table(out)[1] == ["payments", "payments", "sre"]
    cli.fails("escalation", "remove", "sre", needle="used by team(s) payments")
    cli.fails("target", "remove", "manager", needle="escalation policy(ies) sre")
    cleared = cli.json("team", "set-escalation", "payments", "--none", "--json")
    assert cleared["escalation_policy"] is None
    assert cli.ok("escalation", "remove", "sre") == "removed escalation policy sre\n"

    cli.fails("team", "set-escalation", "payments", needle="or --none")
    cli.fails("team", "set-escalation", "payments", "sre", "--none", needle="or --none")
    cli.fails("team", "set-escalation", "payments", "ghost", needle="no escalation policy 'ghost'")
    cli.fails("team", "set-escalation", "nobody", "--none", needle="no team 'nobody'")
    cli.fails("escalation", "add", "x", "--level", "soon:primary", needle="SECONDS:TARGET")
    cli.fails("escalation", "add", "x", "--level", "300", needle="SECONDS:TARGET")
    cli.fails("escalation", "add", "x", "--level", "30:primary", needle="between 60 and 604800")
    cli.fails("escalation", "add", "x", "--level", "300:ghost", needle="no target 'ghost'")
    cli.fails(
        "escalation",
        "add",
        "x",
        "--level",
        "600:primary",
        "--level",
        "300:primary",
        needle="levels[1].after must be greater",
    )
    cli.fails(
        "escalation", "add", "x", "--levels", "[]", "--level", "300:primary", needle="not both"
    )
    cli.fails("escalation", "add", "x", "--repeat-every", "5", needle="repeat_every")
    cli.fails("escalation", "show", "nope", needle="no escalation policy 'nope'")


# -- doctor --------------------------------------------------------------------------------------


class DeliveryStandIn:
    async def check_target(self, slug: str) -> HealthResult:
        if slug == "broken":
            return HealthResult("down", "HTTP 410 from the receiver")
        if slug == "crashing":
            raise RuntimeError("the check itself failed")
        if slug == "vanished":
            raise NotFound(f"no target {slug!r}")
        return HealthResult("ok", "reachable")


def give_medic(monkeypatch: pytest.MonkeyPatch, delivery: object | None) -> None:
    """Every ``Medic`` built from now on has ``delivery`` (None: has no delivery service)."""
    original = Medic.__init__

    def init(self: Medic, *args: Any, **kwargs: Any) -> None:
        original(self, *args, **kwargs)
        if delivery is None:
            self.__dict__.pop("delivery", None)
        else:
            self.delivery = delivery  # type: ignore[attr-defined]

    monkeypatch.setattr(Medic, "__init__", init)


def test_doctor_checks_every_enabled_target(cli_db: Cli) -> None:
    cli = cli_db
    for slug in ("fine", "broken", "crashing", "vanished", "off"):
        cli.ok("target", "add", slug, "--notifier", "log")
    cli.ok("target", "update", "off", "--disable")
    give_medic(cli.monkeypatch, DeliveryStandIn())

    code, out, err = cli("doctor")
    assert code == 1, (out, err)
    rows = table(out)
    assert rows[0] == ["CHECK", "STATUS", "DETAIL"]
    assert rows[1][:2] == ["database", "ok"]
    assert rows[2] == ["schema", "ok", f"at {head_revision()}"]
    assert rows[3] == ["playbooks", "ok", "0 active run(s), none overdue"]
    assert rows[4:] == [
        ["target:fine", "ok", "reachable"],
        ["target:broken", "down", "HTTP 410 from the receiver"],
        ["target:crashing", "down", "RuntimeError: the check itself failed"],
        ["target:vanished", "down", "no target 'vanished'"],
    ]
    code, out, _ = cli("doctor", "--json")
    assert code == 1
    assert {r["check"]: r["status"] for r in json.loads(out)}["target:broken"] == "down"

    cli.ok("target", "update", "broken", "--disable")
    cli.ok("target", "update", "crashing", "--disable")
    cli.ok("target", "remove", "vanished")
    checks = cli.json("doctor", "--json")
    assert [(c["check"], c["status"]) for c in checks] == [
        ("database", "ok"),
        ("schema", "ok"),
        ("playbooks", "ok"),
        ("target:fine", "ok"),
    ]


def test_doctor_without_a_delivery_service_says_targets_were_not_checked(cli: Cli) -> None:
    cli.ok("target", "add", "fine", "--notifier", "log")
    give_medic(cli.monkeypatch, None)
    checks = cli.json("doctor", "--json")
    assert checks[-1] == {
        "check": "targets",
        "status": "degraded",
        "detail": "1 enabled target(s) not checked: this Medic has no delivery service",
    }


def doctor(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(medic_bin()), "doctor", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
        check=False,
    )


@pytest.mark.e2e
def test_doctor_on_the_default_sqlite_database(tmp_path: Path) -> None:
    env = cli_env(tmp_path)
    fresh = doctor(env=env)
    assert fresh.returncode == 0, (fresh.stdout, fresh.stderr)
    rows = table(fresh.stdout)
    assert rows[0] == ["CHECK", "STATUS", "DETAIL"]
    assert rows[1] == ["database", "ok", "sqlite"]
    assert rows[2][:2] == ["schema", "degraded"] and "medic db upgrade" in rows[2][2]

    upgrade = subprocess.run(
        [str(medic_bin()), "db", "upgrade"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert upgrade.returncode == 0, upgrade.stderr
    ready = doctor("--json", env=env)
    assert ready.returncode == 0, (ready.stdout, ready.stderr)
    assert json.loads(ready.stdout) == [
        {"check": "database", "status": "ok", "detail": "sqlite"},
        {"check": "schema", "status": "ok", "detail": f"at {head_revision()}"},
        {"check": "playbooks", "status": "ok", "detail": "0 active run(s), none overdue"},
    ]
    assert ready.stderr == ""


@pytest.mark.e2e
def test_doctor_exits_1_when_the_database_is_down_and_2_on_a_usage_error(
    tmp_path: Path,
) -> None:
    env = cli_env(
        tmp_path,
        MEDIC_DATABASE_URL=f"postgresql://medic@127.0.0.1:{free_port()}/x",
        MEDIC_DB_CONNECT_TIMEOUT="2",
    )
    down = doctor(env=env)
    assert down.returncode == 1, (down.stdout, down.stderr)
    assert "Traceback" not in down.stderr
    rows = table(down.stdout)
    assert rows[0] == ["CHECK", "STATUS", "DETAIL"]
    assert rows[1][:2] == ["database", "down"] and len(rows) == 2
    as_json = doctor("--json", env=env)
    assert as_json.returncode == 1
    assert json.loads(as_json.stdout)[0]["status"] == "down"

    usage = doctor("--verbose", env=env)
    assert usage.returncode == 2
    assert usage.stderr.startswith("usage: medic") and "--verbose" in usage.stderr


# -- real notifiers and the outbox ----------------------------------------------------------------


def test_target_test_and_check_with_a_real_notifier(cli_db: Cli) -> None:
    cli = cli_db
    cli.ok("target", "add", "ops-log", "--notifier", "log")
    result = cli.json("target", "test", "ops-log", "--json")
    assert result["ok"] is True and result["notifier"] == "log"
    checked = cli.json("target", "check", "ops-log", "--json")
    assert checked["status"] == "ok" and "no connection test" in checked["detail"]
    cli.fails("target", "test", "nope", needle="no target 'nope'")


def test_delivery_commands_list_show_and_redrive(cli_db: Cli) -> None:
    from datetime import UTC, datetime

    from medic_core.store.models import Alert, Delivery, Service

    cli = cli_db
    cli.ok("target", "add", "ops-log", "--notifier", "log")

    async def seed(medic: Medic) -> int:
        now = datetime.now(UTC)
        async with medic.db.transaction() as session:
            service = Service(
                slug="api",
                name="api",
                tags=[],
                priority="p2",
                description="",
                expectation={"kind": "interval", "period": 60},
                grace=0,
                state="down",
                recent_beats=[],
                muted=False,
                created_at=now,
                updated_at=now,
            )
            session.add(service)
            await session.flush()
            alert = Alert(
                service_id=service.id,
                cause="failed",
                state="open",
                priority="p2",
                summary="api failed",
                details={},
                opened_at=now,
                notified_at=now,
            )
            session.add(alert)
            await session.flush()
            target_id = await session.scalar(
                select(NotificationTarget.id).where(NotificationTarget.slug == "ops-log")
            )
            delivery = Delivery(
                key=f"{alert.id}:{target_id}:opened:0",
                alert_id=alert.id,
                target_id=target_id,
                kind="opened",
                level=0,
                status="failed",
                attempts=12,
                last_error="HTTP 410 from the receiver",
                response_code=410,
                created_at=now,
                updated_at=now,
            )
            session.add(delivery)
            await session.flush()
            return delivery.id

    delivery_id: int = with_medic(seed)
    rows = cli.json("delivery", "list", "--status", "failed", "--json")
    assert [(r["id"], r["target"], r["response_code"]) for r in rows] == [
        (delivery_id, "ops-log", 410)
    ]
    shown = cli.json("delivery", "show", str(delivery_id))
    assert shown["last_error"] == "HTTP 410 from the receiver"
    retried = cli.json("delivery", "retry", str(delivery_id), "--json")
    assert retried["status"] == "pending" and retried["attempts"] == 0
    cli.fails("delivery", "retry", str(delivery_id), needle="only failed deliveries")
    out = cli.ok("delivery", "retry-failed", "--target", "ops-log")
    assert "re-driven 0 failed deliveries" in out
    assert table(cli.ok("delivery", "list"))[0][:3] == ["ID", "ALERT_ID", "TARGET"]
