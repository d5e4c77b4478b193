"""``medic plugins list``: the plugins this installation loads, their hooks, and the ones that
failed to load (printed on stderr; exit 1 if any did)."""

from __future__ import annotations

import argparse
import sys

from medic_core.cli.common import Subcommands, emit
from medic_core.settings import Settings


def add_parser(sub: Subcommands) -> None:
    plugins = sub.add_parser("plugins", help="plugins")
    pl = plugins.add_subparsers(dest="plugins_command", required=True, metavar="ACTION")
    pls = pl.add_parser("list", help="list loaded plugins and their hooks")
    pls.add_argument("--json", action="store_true")
    plugins.set_defaults(func=cmd_plugins)


def cmd_plugins(args: argparse.Namespace, settings: Settings) -> None:
    from medic_core.observability.metrics import Metrics
    from medic_core.plugins.manager import PluginManager

    manager = PluginManager(Metrics(), disabled=settings.disabled_plugin_names)
    rows = [
        {
            "name": p.name,
            "module": p.module,
            "package": p.distribution or "",
            "version": p.version or "",
            "hooks": ", ".join(p.hooks),
        }
        for p in manager.describe()
    ]
    emit(args, rows, ["name", "package", "version", "module", "hooks"])
    for failure in manager.failures:
        print(f"FAILED {failure.name}: {failure.error}", file=sys.stderr)
    if manager.failures:
        raise SystemExit(1)
