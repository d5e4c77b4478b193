"""``medic playbook``: validate, apply (GitOps), list and show playbook definitions.

``validate -f FILE_OR_DIR`` works offline: it loads the plugins (for their step types) and
checks each file with the same validator the API uses, touching no database. ``apply`` checks
every file first and saves nothing if any is invalid; then applies each, printing
``created``, ``updated`` or ``unchanged`` -- so applying the same directory twice changes nothing
the second time. A directory means its ``*.yaml``, ``*.yml`` and ``*.json`` files, sorted by
name (``-R``: its subdirectories too).

Exit codes: 0 every file valid (and applied); 1 a file is invalid (its errors on stdout, one a
line, with their paths); 2 a usage error (no such file, an empty directory).

``run SLUG [--var k=v ...]`` stores a manual run (each value converted to the variable's
declared type) and prints its id; the engine of a running ``medic serve`` advances it (within
``MEDIC_MONITOR_MAX_SLEEP``). ``--wait`` follows it to its end, printing each step run's state,
and exits 1 unless it succeeded. ``history [SLUG]`` lists runs, newest first. ``rerun ID
[--from STEP] [--wait]`` runs a failed run again from a step (default: the one it stopped at),
a new attempt with the earlier step runs kept.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path
from typing import Any

from medic_core.cli.common import Subcommands, actor, all_pages, emit, with_medic
from medic_core.errors import MedicError
from medic_core.settings import Settings

_SUFFIXES = {".yaml": "yaml", ".yml": "yaml", ".json": "json"}
_COLUMNS = ["slug", "name", "current_version", "updated_at"]


def add_parser(sub: Subcommands) -> None:
    playbook = sub.add_parser("playbook", help="playbooks (remediation definitions)")
    pb = playbook.add_subparsers(dest="playbook_command", required=True, metavar="ACTION")
    for name, text in (
        ("validate", "check playbook files offline (no database); exit 1 if any is invalid"),
        ("apply", "create or update playbooks from files; unchanged ones make no version"),
    ):
        command = pb.add_parser(name, help=text, description=text)
        command.add_argument(
            "-f",
            "--file",
            dest="paths",
            action="append",
            required=True,
            metavar="FILE_OR_DIR",
            help="a .yaml/.yml/.json file, or a directory of them (repeatable)",
        )
        command.add_argument(
            "-R", "--recursive", action="store_true", help="read directories' subdirectories too"
        )
    ls = pb.add_parser("list", help="list playbooks")
    ls.add_argument("--json", action="store_true")
    show = pb.add_parser("show", help="print a playbook's definition (current or --version N)")
    show.add_argument("slug")
    show.add_argument("--version", type=int, metavar="N", help="an earlier version")
    show.add_argument("-o", "--output", choices=["yaml", "json"], default="yaml")
    run = pb.add_parser("run", help="start a run of a playbook (prints its id)")
    run.add_argument("slug")
    run.add_argument(
        "--var",
        dest="variables",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a variable's value (repeatable; converted to the variable's type)",
    )
    run.add_argument(
        "--wait", action="store_true", help="follow the run to its end (exit 1 unless succeeded)"
    )
    rerun = pb.add_parser(
        "rerun", help="run a failed run again from a step (default: the step it stopped at)"
    )
    rerun.add_argument("id", type=int)
    rerun.add_argument("--from", dest="from_step", metavar="STEP", help="the step to rerun from")
    rerun.add_argument(
        "--wait", action="store_true", help="follow the run to its end (exit 1 unless succeeded)"
    )
    secret = pb.add_parser(
        "webhook-secret",
        help="make a new secret for a playbook's inbound webhook (printed once)",
        description="Make a new secret for the playbook's inbound webhook and print it: the only "
        "time it is shown (stored encrypted with MEDIC_SECRET_KEY). The old secret stops working "
        "at once. Callers sign with it (docs/playbooks.md#inbound-webhook).",
    )
    secret.add_argument("slug")
    history = pb.add_parser("history", help="list playbook runs, newest first")
    history.add_argument("slug", nargs="?")
    history.add_argument("--json", action="store_true")
    playbook.set_defaults(func=cmd_playbook)


_RUN_COLUMNS = ["id", "playbook", "version", "state", "reason", "created_at", "finished_at"]
_ENDED = ("succeeded", "failed", "cancelled", "timed_out")


def run_variables(pairs: list[str], declared: dict[str, Any]) -> dict[str, Any]:
    """``NAME=VALUE`` pairs as JSON values of the declared types (an undeclared name stays a
    string: the run is refused naming it)."""
    values: dict[str, Any] = {}
    for pair in pairs:
        name, sep, text = pair.partition("=")
        if not sep or not name:
            raise MedicError(f"--var {pair!r}: write NAME=VALUE")
        kind = (declared.get(name) or {}).get("type", "string")
        try:
            if kind == "integer":
                values[name] = int(text)
            elif kind == "number":
                values[name] = float(text)
            elif kind == "boolean":
                if text.lower() not in ("true", "false"):
                    raise ValueError(text)
                values[name] = text.lower() == "true"
            else:
                values[name] = text
        except ValueError:
            raise MedicError(f"--var {name}: {text!r} is not of type {kind}") from None
    return values


async def follow(runs: Any, run_id: int, *, poll: float = 1.0) -> dict[str, Any]:
    """Print each step run's state as it changes until the run ends; the ended run."""
    seen: dict[int, str] = {}
    while True:
        run: dict[str, Any] = await runs.get(run_id)
        for step in run["steps"]:
            if seen.get(step["id"]) != step["state"]:
                seen[step["id"]] = step["state"]
                error = f": {step['error']}" if step["error"] else ""
                print(f"  {step['name']} (attempt {step['attempt']}): {step['state']}{error}")
        if run["state"] in _ENDED:
            return run
        await asyncio.sleep(poll)


async def _wait(runs: Any, run_id: int) -> None:
    ended = await follow(runs, run_id)
    detail = f" ({ended['reason']}: {ended['detail']})" if ended["reason"] else ""
    print(f"run {ended['id']}: {ended['state']}{detail}")
    if ended["state"] != "succeeded":
        raise SystemExit(1)


def playbook_files(paths: list[str], *, recursive: bool) -> list[Path]:
    """The files ``-f`` names: files as given, directories' playbook files sorted by name."""
    found: list[Path] = []
    for given in paths:
        path = Path(given)
        if path.is_dir():
            pattern = "**/*" if recursive else "*"
            inside = sorted(
                p for p in path.glob(pattern) if p.is_file() and p.suffix.lower() in _SUFFIXES
            )
            if not inside:
                raise MedicError(f"{given}: no .yaml, .yml or .json files in this directory")
            found += inside
        elif path.is_file():
            found.append(path)
        else:
            raise MedicError(f"{given}: no such file or directory")
    return found


def _format(path: Path) -> str:
    return _SUFFIXES.get(path.suffix.lower(), "yaml")


def _read_all(validator: Any, files: list[Path]) -> list[tuple[Path, dict[str, Any] | None]]:
    """Each file's valid definition, or None after printing its errors."""
    from medic_core.playbooks.definition import InvalidPlaybook

    results: list[tuple[Path, dict[str, Any] | None]] = []
    for path in files:
        try:
            results.append((path, validator.read(path.read_bytes(), _format(path))))
        except InvalidPlaybook as exc:
            print(f"{path}: INVALID")
            for problem in exc.problems:
                print(f"  {problem.message}")
            results.append((path, None))
        except (MedicError, OSError) as exc:
            print(f"{path}: INVALID\n  {exc}")
            results.append((path, None))
    return results


async def _reviewed(
    step_types: Any, context: Any, path: Path, definition: dict[str, Any] | None
) -> dict[str, Any] | None:
    """``definition`` once its step types' checks passed, or None after printing why not."""
    from medic_core.playbooks.definition import InvalidPlaybook
    from medic_core.playbooks.registry import review_steps

    if definition is None:
        return None
    try:
        await review_steps(step_types, definition, context)
    except InvalidPlaybook as exc:
        print(f"{path}: INVALID")
        for problem in exc.problems:
            print(f"  {problem.message}")
        return None
    return definition


def offline_validator(settings: Settings) -> Any:
    """The API's validator over the installed plugins' step types, without a database: hooks
    receive ``settings``, ``clock`` and ``metrics`` only."""
    from types import SimpleNamespace

    from medic_core.clock import SystemClock
    from medic_core.observability.metrics import Metrics
    from medic_core.playbooks import StepTypes, Validator
    from medic_core.plugins.manager import PluginManager

    metrics = Metrics()
    manager = PluginManager(metrics, disabled=settings.disabled_plugin_names)
    context = SimpleNamespace(settings=settings, clock=SystemClock(), metrics=metrics)
    step_types = StepTypes(manager.step_types(context))
    for failure in manager.failures:
        print(f"warning: plugin {failure.name} failed: {failure.error}", file=sys.stderr)
    return Validator(
        step_types,
        max_bytes=settings.playbook_max_bytes,
        max_steps=settings.playbook_max_steps,
        metrics=metrics,
    )


def cmd_playbook(args: argparse.Namespace, settings: Settings) -> None:
    command = args.playbook_command
    if command == "validate":
        files = playbook_files(args.paths, recursive=args.recursive)
        validator = offline_validator(settings)
        results = _read_all(validator, files)
        # The step types' checks that need no database (no agents: context None).
        results = [
            (path, asyncio.run(_reviewed(validator.step_types, None, path, doc)))
            for path, doc in results
        ]
        for path, definition in results:
            if definition is not None:
                print(f"{path}: OK")
        if any(definition is None for _, definition in results):
            raise SystemExit(1)
        return

    async def work(medic: Any) -> None:
        registry = medic.playbooks
        if command == "apply":
            results = _read_all(
                registry.validator, playbook_files(args.paths, recursive=args.recursive)
            )
            # The step types' own checks (a script against the agents' allowlists) first too,
            # so a refused file leaves every file unapplied.
            results = [
                (
                    path,
                    await _reviewed(registry.validator.step_types, medic.plugin_context, path, doc),
                )
                for path, doc in results
            ]
            if any(definition is None for _, definition in results):
                print("nothing applied: fix the invalid files first")
                raise SystemExit(1)
            for path, definition in results:
                assert definition is not None
                applied = await registry.apply(definition, actor=actor())
                slug = definition["slug"]
                print(f"{path}: {applied.change} ({slug} version {applied.version})")
                for warning in applied.warnings:
                    print(f"  warning: {warning}")
        elif command == "list":
            emit(args, await all_pages(registry.list), _COLUMNS)
        elif command == "run":
            declared = (await registry.get(args.slug))["definition"].get("variables") or {}
            variables = run_variables(args.variables, declared)
            run = await medic.runs.start(args.slug, variables, actor=actor())
            print(run["id"])
            if args.wait:
                await _wait(medic.runs, run["id"])
        elif command == "rerun":
            run = await medic.runs.rerun(args.id, from_step=args.from_step, actor=actor())
            index = run["step_index"]
            step = next((s["name"] for s in run["steps"] if s["index"] == index), f"#{index}")
            print(f"run {run['id']}: {run['state']} (rerun from step {step})")
            if args.wait:
                await _wait(medic.runs, run["id"])
        elif command == "webhook-secret":
            made = await medic.webhooks.rotate_secret(args.slug, actor=actor())
            print(made["secret"])
        elif command == "history":
            filters = {"playbook": args.slug} if args.slug else {}
            emit(args, await all_pages(medic.runs.list, **filters), _RUN_COLUMNS)
        elif args.version is not None:
            _show(args, await registry.get_version(args.slug, args.version))
        else:
            _show(args, await registry.get(args.slug))

    asyncio.run(with_medic(settings, work))


def _show(args: argparse.Namespace, document: dict[str, Any]) -> None:
    """The definition as it can be applied again; YAML opens with a comment naming the version."""
    definition = document["definition"]
    if args.output == "json":
        print(json.dumps(definition, indent=2, ensure_ascii=False))
        return
    from medic_core.playbooks.definition import dump_yaml

    version = document.get("version", document.get("current_version"))
    print(f"# {document['slug']} version {version} (sha256 {document['digest']})")
    print(dump_yaml(definition), end="")
