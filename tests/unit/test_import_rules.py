"""Import rules of ``medic_core``, read from the source with ``ast`` (nothing is imported).

Every import counts: at module level, inside functions (lazy imports are still dependencies)
and under ``if TYPE_CHECKING:`` (a type-only import is still a door in the wall: the next
change turns it into a runtime one). A "package" is a direct child of ``medic_core``: a
subpackage (``alerts``, ``notify``, …) or a top-level module (``app``, ``settings``, …).

Rules (docs/architecture.md, "Dependencies point one way"):
- no package-level circle: if package A imports B (directly or through others), B never
  imports A back;
- no module-level circle inside a package either.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Mapping
from pathlib import Path

from medic_core.plugins import PLUGIN_SURFACE

ROOT = Path(__file__).resolve().parents[2]
TOP = "medic_core"

#: Package-level circles that another change is about to remove: each entry is the sorted
#: tuple of the packages of one circle, and must go when its circle does (a test says so).
#: The composition root: it builds every component and transport, so it imports everything; only
#: the entry points that start Medic import it (``test_only_entry_points_import_the_root``), and it
#: is left out of the circle checks (a root importing what imports it is not a layering fault).
COMPOSITION_ROOT = "medic_core.app"
#: What starts Medic: ``medic serve`` (server/serve.py), the aiohttp app built around a running
#: Medic (server/http/app.py), and the CLI.
ENTRY_POINTS = ("medic_core.server.serve", "medic_core.server.http.app", "medic_core.cli")
#: The transports: HTTP and gRPC (server/) and the command line (cli/).
TRANSPORTS = ("medic_core.server", "medic_core.cli")
#: What a plugin author reads: the hooks, what plugins return, what hooks receive.
PLUGIN_CONTRACT = (
    "medic_core.plugins.hookspecs",
    "medic_core.plugins.interfaces",
    "medic_core.plugins.context",
)
#: Package circles still allowed, each with why. None today; keep the mechanism for honesty.
ALLOWED_PACKAGE_CIRCLES: frozenset[tuple[str, ...]] = frozenset()
#: Packages whose modules may still import each other in a circle, with why. None today.
ALLOWED_MODULE_CIRCLES_IN: dict[str, str] = {}


def _within(module: str, prefixes: Iterable[str]) -> bool:
    return any(module == p or module.startswith(p + ".") for p in prefixes)


def module_files(root: Path, top: str = TOP) -> dict[str, Path]:
    """Every module under ``root/top``, by dotted name (a package by its ``__init__``)."""
    found: dict[str, Path] = {}
    for path in sorted((root / top).rglob("*.py")):
        parts = list(path.relative_to(root).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def imports_of(module: str, path: Path, known: Iterable[str], top: str = TOP) -> set[str]:
    """The modules of ``top`` that ``module`` imports, wherever in the file the import is."""
    known = set(known)
    is_package = path.name == "__init__.py"
    named: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            named.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                # Relative: level 1 is the module's own package.
                base = module.split(".")
                base = base if is_package else base[:-1]
                base = base[: len(base) - (node.level - 1)]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            for alias in node.names:
                # ``from pkg import mod`` imports the module ``pkg.mod`` when there is one.
                candidate = f"{source}.{alias.name}"
                named.add(candidate if candidate in known else source)
    result = set()
    for name in named:
        if name != top and not name.startswith(top + "."):
            continue
        # ``import medic_core.a.b.c`` where c is not a module (an attribute): its nearest module.
        while name not in known and "." in name:
            name = name.rsplit(".", 1)[0]
        if name in known and name != module:
            result.add(name)
    return result


def module_graph(root: Path = ROOT, top: str = TOP) -> dict[str, set[str]]:
    files = module_files(root, top)
    return {module: imports_of(module, path, files, top) for module, path in files.items()}


def package_of(module: str, top: str = TOP) -> str:
    parts = module.split(".")
    return ".".join(parts[:2]) if parts[0] == top and len(parts) > 1 else module


def package_graph(modules: Mapping[str, set[str]], top: str = TOP) -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {package_of(m, top): set() for m in modules}
    for module, targets in modules.items():
        source = package_of(module, top)
        graph[source].update(package_of(t, top) for t in targets if package_of(t, top) != source)
    # The root package's own __init__ is not a package of its own here, nor is the composition
    # root (held to its own rule).
    for left_out in (top, COMPOSITION_ROOT):
        graph.pop(left_out, None)
        for targets in graph.values():
            targets.discard(left_out)
    return graph


def circles(graph: Mapping[str, set[str]]) -> list[tuple[str, ...]]:
    """The strongly connected components with more than one node (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[tuple[str, ...]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph.get(node, ())):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(tuple(sorted(component)))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return sorted(found)


def explain(circle: tuple[str, ...], modules: Mapping[str, set[str]], by_package: bool) -> str:
    """One circle, with the imports that make it (so the failure says what to move)."""
    members = set(circle)
    key = package_of if by_package else (lambda m: m)
    edges = sorted(
        f"  {source} imports {target}"
        for source, targets in modules.items()
        for target in targets
        if key(source) in members and key(target) in members and key(source) != key(target)
    )
    return " <-> ".join(circle) + "\n" + "\n".join(edges)


def test_no_package_of_medic_core_imports_itself_back() -> None:
    modules = module_graph()
    found = [c for c in circles(package_graph(modules)) if c not in ALLOWED_PACKAGE_CIRCLES]
    assert not found, "package-level import circles:\n" + "\n".join(
        explain(c, modules, by_package=True) for c in found
    )


def test_no_module_imports_itself_back_inside_a_package() -> None:
    modules = module_graph()
    within = {
        source: {t for t in targets if package_of(t) == package_of(source)}
        for source, targets in modules.items()
    }
    found = [c for c in circles(within) if package_of(c[0]) not in ALLOWED_MODULE_CIRCLES_IN]
    assert not found, "module-level import circles:\n" + "\n".join(
        explain(c, within, by_package=False) for c in found
    )


def test_allowed_circles_still_exist() -> None:
    """An allow-list entry whose circle is gone must be removed, so it cannot hide a new one."""
    modules = module_graph()
    packages = set(circles(package_graph(modules)))
    within = {
        source: {t for t in targets if package_of(t) == package_of(source)}
        for source, targets in modules.items()
    }
    inside = {package_of(c[0]) for c in circles(within)}
    assert packages >= ALLOWED_PACKAGE_CIRCLES, ALLOWED_PACKAGE_CIRCLES - packages
    assert inside >= set(ALLOWED_MODULE_CIRCLES_IN), set(ALLOWED_MODULE_CIRCLES_IN) - inside


def test_only_entry_points_import_the_root() -> None:
    modules = module_graph()
    offenders = sorted(
        m
        for m, targets in modules.items()
        if COMPOSITION_ROOT in targets and not _within(m, ENTRY_POINTS)
    )
    assert not offenders, f"only {ENTRY_POINTS} may import {COMPOSITION_ROOT}: {offenders}"


def test_the_domain_never_imports_a_transport() -> None:
    modules = module_graph()
    offenders = sorted(
        f"{m} imports {t}"
        for m, targets in modules.items()
        if not _within(m, (*TRANSPORTS, COMPOSITION_ROOT))
        for t in targets
        if _within(t, TRANSPORTS)
    )
    assert not offenders, "domain -> transport imports:\n" + "\n".join(offenders)


def test_the_plugin_contract_imports_no_internals() -> None:
    """The hooks, interfaces and context import only what plugins may import themselves, plus
    (type-only) the two types the context names: the database handle and the metrics."""
    allowed = {*PLUGIN_SURFACE, "medic_core.store", "medic_core.observability.metrics"}
    modules = module_graph()
    offenders = sorted(
        f"{m} imports {t}"
        for m in PLUGIN_CONTRACT
        for t in modules[m]
        if t not in allowed and not _within(t, ("medic_core.plugins",))
    )
    assert not offenders, "\n".join(offenders)


def test_a_rule_breaker_is_named(tmp_path: Path) -> None:
    _tree(
        tmp_path,
        {
            "medic_core/__init__.py": "",
            "medic_core/app.py": "",
            "medic_core/server/__init__.py": "",
            "medic_core/server/grpc.py": "",
            "medic_core/alerts/__init__.py": "",
            "medic_core/alerts/book.py": (
                "from medic_core.server import grpc\nimport medic_core.app\n"
            ),
        },
    )
    modules = module_graph(tmp_path)
    assert modules["medic_core.alerts.book"] == {"medic_core.server.grpc", "medic_core.app"}


def _tree(root: Path, files: Mapping[str, str]) -> None:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")


def test_a_type_only_import_back_is_reported_as_a_circle(tmp_path: Path) -> None:
    _tree(
        tmp_path,
        {
            "pkg/__init__.py": "",
            "pkg/a/__init__.py": "",
            "pkg/a/book.py": "from pkg.b.router import Router\n",
            "pkg/b/__init__.py": "",
            "pkg/b/router.py": (
                "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pkg.a import book\n"
            ),
            "pkg/c.py": "def later():\n    from . import a\n",
            "pkg/d.py": "import pkg.c\n",
        },
    )
    modules = module_graph(tmp_path, "pkg")
    assert modules["pkg.b.router"] == {"pkg.a.book"}
    assert modules["pkg.c"] == {"pkg.a"}
    assert circles(package_graph(modules, "pkg")) == [("pkg.a", "pkg.b")]


def test_a_lazy_relative_import_back_is_reported_as_a_circle(tmp_path: Path) -> None:
    _tree(
        tmp_path,
        {
            "pkg/__init__.py": "",
            "pkg/a/__init__.py": "from .book import Book\n",
            "pkg/a/book.py": "import pkg.b.router\n",
            "pkg/b/__init__.py": "",
            "pkg/b/router.py": "def later():\n    from ..a import Book\n",
        },
    )
    modules = module_graph(tmp_path, "pkg")
    assert modules["pkg.a"] == {"pkg.a.book"}
    assert modules["pkg.b.router"] == {"pkg.a"}
    assert circles(package_graph(modules, "pkg")) == [("pkg.a", "pkg.b")]


def test_modules_of_one_package_importing_each_other_are_a_circle(tmp_path: Path) -> None:
    _tree(
        tmp_path,
        {
            "pkg/__init__.py": "",
            "pkg/a/__init__.py": "",
            "pkg/a/hub.py": "from pkg.a.executions import Executions\n",
            "pkg/a/executions.py": (
                "from typing import TYPE_CHECKING\n"
                "if TYPE_CHECKING:\n"
                "    from pkg.a.hub import Hub\n"
            ),
        },
    )
    modules = module_graph(tmp_path, "pkg")
    assert circles(package_graph(modules, "pkg")) == []
    assert circles(modules) == [("pkg.a.executions", "pkg.a.hub")]
