"""Clients generated from the OpenAPI document are typed and work against a real server.

- openapi-python-client (pinned in the ``dev`` extra) generates ``medic_client`` once per test
  session; no success answer is typed ``Any``/``dict`` (204s aside, which have no body), and
  tests/clients/client_script.py -- create a service, single and batch heartbeats, acknowledge
  and resolve the alert they open -- passes ``mypy --strict`` and runs against ``medic serve``.
- openapi-typescript (tests/clients/package.json, installed by ``make client-tools``) generates
  TypeScript types: every success answer is a named component (never ``unknown``), and the
  output compiles with ``tsc --strict``.
"""

from __future__ import annotations

import ast
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from medic_core.server.http.app import route_table
from medic_core.server.http.openapi import build_document
from support.server import ServerProcess

ROOT = Path(__file__).resolve().parents[2]
CLIENTS = ROOT / "tests" / "clients"
BIN = Path(sys.executable).parent
NODE_BIN = CLIENTS / "node_modules" / ".bin"
REF = "#/components/schemas/"


def run(*command: str | Path, cwd: Path | None = None, env: dict[str, str] | None = None) -> str:
    done = subprocess.run(
        [str(part) for part in command],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, f"{command}:\n{done.stdout}\n{done.stderr}"
    return done.stdout


@pytest.fixture(scope="session")
def document() -> dict[str, Any]:
    return build_document(route_table().routes)


@pytest.fixture(scope="session")
def spec_file(tmp_path_factory: pytest.TempPathFactory, document: dict[str, Any]) -> Path:
    path = tmp_path_factory.mktemp("openapi") / "openapi.json"
    path.write_text(json.dumps(document))
    return path


@pytest.fixture(scope="session")
def python_client(tmp_path_factory: pytest.TempPathFactory, spec_file: Path) -> Path:
    """The directory holding the generated ``medic_client`` package (generated once)."""
    out = tmp_path_factory.mktemp("python-client")
    # The generator formats its output with ruff, which it finds on PATH.
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    output = run(
        BIN / "openapi-python-client",
        "generate",
        "--path",
        spec_file,
        "--meta",
        "none",
        "--output-path",
        out / "medic_client",
        env=env,
    )
    assert "Warning" not in output, output
    return out


def success_status(document: dict[str, Any], operation_id: str) -> str:
    for item in document["paths"].values():
        for operation in item.values():
            if operation.get("operationId") == operation_id:
                return next(s for s in operation["responses"] if s.startswith("2"))
    raise AssertionError(f"no operation {operation_id}")


def snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def test_the_python_client_types_every_success_answer(
    python_client: Path, document: dict[str, Any]
) -> None:
    modules = sorted((python_client / "medic_client" / "api").rglob("*.py"))
    ids = {
        operation["operationId"]
        for item in document["paths"].values()
        for operation in item.values()
        if isinstance(operation, dict) and "operationId" in operation
    }
    by_module = {snake(operation_id): operation_id for operation_id in ids}
    seen = set()
    for module in modules:
        if module.name == "__init__.py":
            continue
        operation_id = by_module[module.stem]
        seen.add(operation_id)
        tree = ast.parse(module.read_text())
        (sync_detailed,) = [
            node
            for node in tree.body
            if isinstance(node, ast.FunctionDef) and node.name == "sync_detailed"
        ]
        assert sync_detailed.returns is not None
        answer = ast.unparse(sync_detailed.returns)  # Response[Service | Problem]
        kinds = {part.strip() for part in answer.removeprefix("Response[")[:-1].split("|")}
        if success_status(document, operation_id) == "204":
            assert kinds == {"Any", "Problem"}, (operation_id, answer)
            continue
        assert "Any" not in kinds and not any(k.startswith("dict") for k in kinds), (
            operation_id,
            answer,
        )
    assert seen == ids


def test_a_script_through_the_python_client_type_checks_and_runs(
    python_client: Path, tmp_path: Path
) -> None:
    env = {**os.environ, "MYPYPATH": str(python_client), "PYTHONPATH": str(python_client)}
    script = CLIENTS / "client_script.py"
    run(
        BIN / "mypy",
        "--strict",
        "--no-incremental",
        "--cache-dir",
        tmp_path / "mypy",
        script,
        cwd=tmp_path,
        env=env,
    )
    with ServerProcess(tmp_path / "server") as server:
        assert server.admin_key is not None
        output = run(sys.executable, script, server.url, server.admin_key, env=env)
    assert "client script: ok" in output


def test_typescript_types_name_every_success_answer_and_compile(
    spec_file: Path, document: dict[str, Any], tmp_path: Path
) -> None:
    generator = NODE_BIN / "openapi-typescript"
    assert generator.exists(), "run `make client-tools` (npm ci in tests/clients) first"
    types = tmp_path / "medic.d.ts"
    run(generator, spec_file, "-o", types)
    text = types.read_text()
    assert '"application/json": unknown' not in text
    for item in document["paths"].values():
        for operation in item.values():
            for status, response in operation.get("responses", {}).items():
                schema = response.get("content", {}).get("application/json", {}).get("schema")
                if not status.startswith("2") or schema is None:
                    continue
                name = schema["$ref"].removeprefix(REF)
                expected = f'"application/json": components["schemas"]["{name}"];'
                assert expected in text, (operation["operationId"], name)
                assert re.search(rf"\n        {name}: {{", text), name  # an object type
    consumer = tmp_path / "consumer.ts"
    consumer.write_text(
        'import type { components, operations } from "./medic";\n'
        'type Service = components["schemas"]["Service"];\n'
        'type Answer = operations["createService"]["responses"][201]["content"]'
        '["application/json"];\n'
        "export function slugOf(service: Answer): Service['slug'] { return service.slug; }\n"
        "export const states: Service['state'][] = ['new', 'up', 'late', 'down', 'paused'];\n"
    )
    run(NODE_BIN / "tsc", "--strict", "--noEmit", "--skipLibCheck", consumer, types, cwd=tmp_path)
