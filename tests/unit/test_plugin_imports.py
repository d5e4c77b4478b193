"""Plugins import only the plugin surface: Medic's own plugins can do nothing a third party cannot.

Every import statement of every module under ``medic_plugins/`` (and of the example plugin meant
to be copied) is read with ``ast`` — at any depth, type-only imports included — and each module of
``medic_core`` it names must be one of ``medic_core.plugins.PLUGIN_SURFACE``. ``from package
import name`` counts as importing ``package.name`` when that is a module, so
``from medic_core import server`` is caught like ``import medic_core.server``.
"""

from __future__ import annotations

import ast
import importlib.util
from collections.abc import Iterator
from pathlib import Path

import pytest

from medic_core.plugins import PLUGIN_SURFACE

ROOT = Path(__file__).resolve().parents[2]
PLUGIN_ROOTS = (
    (ROOT / "medic_plugins", "medic_plugins"),
    (
        ROOT / "examples" / "medic-plugin-example" / "src" / "medic_plugin_example",
        "medic_plugin_example",
    ),
)


def _is_module(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except ModuleNotFoundError:  # a parent is not a package (a function or constant's name)
        return False


def _module_name(path: Path, root: Path, package: str) -> str:
    parts = [package, *path.relative_to(root).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(path: Path, module: str) -> Iterator[tuple[int, str]]:
    """``(line, module)`` for every module an import statement of ``path`` names."""
    is_package = path.name == "__init__.py"
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against this module's package
                base = module.split(".")
                base = base[: len(base) - node.level + (1 if is_package else 0)]
                source = ".".join([*base, node.module] if node.module else base)
            else:
                source = node.module or ""
            for alias in node.names:
                candidate = f"{source}.{alias.name}"
                yield node.lineno, candidate if _is_module(candidate) else source


def violations(root: Path, package: str) -> list[str]:
    found: list[tuple[str, int, str]] = []
    for path in sorted(root.rglob("*.py")):
        module = _module_name(path, root, package)
        for line, name in imported_modules(path, module):
            if (name == "medic_core" or name.startswith("medic_core.")) and (
                name not in PLUGIN_SURFACE
            ):
                found.append((str(path.relative_to(root.parent)), line, name))
    return [f"{where}:{line} imports {name}" for where, line, name in sorted(found)]


@pytest.mark.parametrize(("root", "package"), PLUGIN_ROOTS, ids=[p for _, p in PLUGIN_ROOTS])
def test_plugins_import_nothing_of_medic_outside_the_plugin_surface(
    root: Path, package: str
) -> None:
    assert root.is_dir()
    assert violations(root, package) == []


def test_the_transport_is_not_part_of_the_plugin_surface() -> None:
    assert not any(name.startswith("medic_core.server") for name in PLUGIN_SURFACE)
    assert "medic_core.plugins.manager" not in PLUGIN_SURFACE
    assert "medic_core.app" not in PLUGIN_SURFACE


def test_every_module_of_the_surface_exists() -> None:
    assert [name for name in PLUGIN_SURFACE if not _is_module(name)] == []


def test_the_rule_catches_every_way_of_importing_the_transport(tmp_path: Path) -> None:
    plugin = tmp_path / "bad_plugin"
    (plugin / "sub").mkdir(parents=True)
    (plugin / "__init__.py").write_text("")
    (plugin / "sub" / "__init__.py").write_text("")
    (plugin / "sub" / "mod.py").write_text(
        "from typing import TYPE_CHECKING\n"
        "import aiohttp\n"
        "from medic_core.plugins import hookimpl\n"
        "from medic_core.requests import REQUEST_ID\n"
        "from medic_core.server.http.context import REQUEST_ID as OLD\n"
        "import medic_core.server.http.app\n"
        "from medic_core import server\n"
        "from medic_core.plugins import manager\n"
        "from . import mod as same\n"
        "from .. import sub\n"
        "if TYPE_CHECKING:\n"
        "    from medic_core.app import Medic\n"
        "def hook():\n"
        "    from medic_core.alerts import AlertBook\n"
    )
    assert violations(plugin, "bad_plugin") == [
        f"bad_plugin/sub/mod.py:{n} imports {name}"
        for n, name in [
            (5, "medic_core.server.http.context"),
            (6, "medic_core.server.http.app"),
            (7, "medic_core.server"),
            (8, "medic_core.plugins.manager"),
            (12, "medic_core.app"),
            (14, "medic_core.alerts"),
        ]
    ]
