"""Finding the tools the infrastructure checks run, and running them.

A missing tool fails the test that needs it, with the command that installs it: nothing is
skipped. ``make infra-tools`` installs everything (see the Makefile's ``infra-`` targets).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]


# Where `go install` puts binaries: $GOBIN, else the first $GOPATH entry's bin, else ~/go/bin.
def _go_bin() -> Path:
    if os.environ.get("GOBIN"):
        return Path(os.environ["GOBIN"])
    gopath = os.environ.get("GOPATH", "").split(os.pathsep)[0]
    return Path(gopath) / "bin" if gopath else Path.home() / "go" / "bin"


INSTALL_HINT = {
    "helm": "make infra-tools  (go install helm.sh/helm/v3/cmd/helm@<version in the Makefile>)",
    "actionlint": "make infra-tools  (go install github.com/rhysd/actionlint/cmd/actionlint@...)",
    "checkov": "make infra-tools  (creates .venv/infra-tools/checkov with pip install checkov)",
    "promtool": "make infra-tools  (apt-get install prometheus: Debian's package ships promtool)",
}


def find(tool: str) -> str | None:
    """The tool's path: $MEDIC_<TOOL> if set, then the Go bin directory, a project tool venv,
    then PATH."""
    override = os.environ.get(f"MEDIC_{tool.upper()}")
    candidates = [override] if override else []
    candidates += [
        str(_go_bin() / tool),
        str(ROOT / ".venv" / "infra-tools" / tool / "bin" / tool),
    ]
    for candidate in candidates:
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    return shutil.which(tool)


def require(tool: str) -> str:
    path = find(tool)
    if path is None:
        pytest.fail(
            f"{tool} is not installed, so this check cannot run (and is not skipped). "
            f"Install it with: {INSTALL_HINT.get(tool, tool)}",
            pytrace=False,
        )
    return path


def run(
    cmd: Sequence[str], cwd: Path | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        list(cmd), cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False
    )


def import_or_fail(module: str, package: str):  # type: ignore[no-untyped-def]
    """Import a Python tool that is a dev dependency, or fail saying which package to add."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        pytest.fail(
            f"Python package {package!r} is missing: it is a dev dependency of Medic "
            f"(pip install -e '.[dev]', or pip install {package}).",
            pytrace=False,
        )


def yamllint(*paths: Path) -> tuple[int, str]:
    """yamllint with infra/yamllint.yaml: (exit code, report)."""
    import sys

    import_or_fail("yamllint", "yamllint")
    config = str(ROOT / "infra" / "yamllint.yaml")
    proc = run([sys.executable, "-m", "yamllint", "-f", "parsable", "-c", config, *map(str, paths)])
    return proc.returncode, proc.stdout + proc.stderr
