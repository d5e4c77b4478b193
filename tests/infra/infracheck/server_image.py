"""Static checks of server/Dockerfile, server/compose.yaml and server/medic.example.toml (no
Docker engine runs in CI, and hadolint cannot be installed: these are the rules that matter)."""

from __future__ import annotations

import json
import re
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from medic_core.settings import Settings

from .example_config import render

SETTINGS = {f.name for f in fields(Settings)}
SECRET_NAME = re.compile(r"PASSWORD|SECRET|TOKEN|_KEY\b|CREDENTIAL", re.IGNORECASE)


@dataclass
class Stage:
    base: str
    name: str
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def last(self, instruction: str) -> str | None:
        found = [args for ins, args in self.instructions if ins == instruction]
        return found[-1] if found else None


def parse_dockerfile(text: str) -> list[Stage]:
    """Instructions per stage, with line continuations joined and comments dropped."""
    logical: list[str] = []
    current = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not current and (not line or line.startswith("#")):
            continue
        if current and line.startswith("#"):
            continue
        if line.endswith("\\"):
            current += line[:-1].rstrip() + " "
            continue
        logical.append(current + line)
        current = ""
    stages: list[Stage] = []
    for line in logical:
        instruction, _, args = line.partition(" ")
        instruction = instruction.upper()
        if instruction == "FROM":
            m = re.match(r"(\S+)(?:\s+AS\s+(\S+))?", args.strip(), re.IGNORECASE)
            assert m is not None
            stages.append(Stage(base=m.group(1), name=(m.group(2) or str(len(stages))).lower()))
        elif stages:
            stages[-1].instructions.append((instruction, args.strip()))
    return stages


def env_pairs(args: str) -> dict[str, str]:
    return {k: v.strip('"') for k, v in re.findall(r'([A-Za-z_][A-Za-z0-9_]*)=("[^"]*"|\S*)', args)}


def all_env(stage: Stage) -> dict[str, str]:
    env: dict[str, str] = {}
    for ins, args in stage.instructions:
        if ins == "ENV":
            env.update(env_pairs(args))
    return env


def check_dockerfile(root: Path) -> list[str]:
    path = root / "server" / "Dockerfile"
    text = path.read_text()
    stages = parse_dockerfile(text)
    problems: list[str] = []
    if len(stages) < 2:
        return ["server/Dockerfile is not multi-stage (build tools would ship in the image)"]
    final = stages[-1]
    user = final.last("USER")
    if user is None or user.split(":")[0] in ("root", "0"):
        problems.append(f"the runtime stage runs as root (USER {user})")
    entrypoint = json.loads(final.last("ENTRYPOINT") or "[]")
    cmd = json.loads(final.last("CMD") or "[]")
    if entrypoint + cmd != ["medic", "serve"]:
        problems.append(f"the image does not run `medic serve` (ENTRYPOINT {entrypoint} CMD {cmd})")
    healthcheck = final.last("HEALTHCHECK")
    if not healthcheck or healthcheck.upper().startswith("NONE") or "/health" not in healthcheck:
        problems.append("the runtime stage has no HEALTHCHECK of /health")
    if not any(ins == "COPY" and "--from=build" in args for ins, args in final.instructions):
        problems.append("the runtime stage does not copy the build stage's virtualenv")
    env = all_env(final)
    if env.get("PYTHONDONTWRITEBYTECODE") != "1":
        problems.append("PYTHONDONTWRITEBYTECODE is not 1: Python would write next to the code")
    for name in env:
        if name.startswith("MEDIC_") and name.removeprefix("MEDIC_").lower() not in SETTINGS:
            problems.append(f"ENV {name} is not a Medic setting")
    if (port := env.get("MEDIC_PORT", "8080")) not in (final.last("EXPOSE") or "").split():
        problems.append(f"EXPOSE does not publish MEDIC_PORT {port}")
    for stage in stages:
        for ins, args in stage.instructions:
            if ins in ("ENV", "ARG"):
                for name, value in (env_pairs(args) or {args.split("=")[0]: ""}).items():
                    if SECRET_NAME.search(name):
                        problems.append(
                            f"{ins} {name} in stage {stage.name}: secrets are not baked in"
                        )
                    del value
            if ins in ("COPY", "ADD") and re.search(r"\.env\b|\.pem\b|id_rsa|credentials", args):
                problems.append(f"{ins} {args}: copies a secret file into the image")
    for placeholder in ("AS bindings", "AS ui"):
        if placeholder not in text:
            problems.append(f"no commented place for the `{placeholder}` builder stage")
    return problems


def check_example_config(root: Path) -> list[str]:
    path = root / "server" / "medic.example.toml"
    problems: list[str] = []
    try:
        data = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        return [f"server/medic.example.toml is not TOML: {exc}"]
    if missing := sorted(SETTINGS - set(data)):
        problems.append(f"settings not documented in medic.example.toml: {missing}")
    if unknown := sorted(set(data) - SETTINGS):
        problems.append(f"keys in medic.example.toml that are not settings: {unknown}")
    if not problems:
        try:
            Settings.load(environ={"MEDIC_CONFIG_FILE": str(path)})
        except ValueError as exc:
            problems.append(f"Settings.load refuses medic.example.toml: {exc}")
    if path.read_text() != render():
        problems.append(
            "server/medic.example.toml differs from what settings.py generates "
            "(regenerate it as tests/infra/infracheck/example_config.py says)"
        )
    return problems


def check_compose(root: Path) -> list[str]:
    data: dict[str, Any] = yaml.safe_load((root / "server" / "compose.yaml").read_text())
    services = data.get("services", {})
    problems: list[str] = []
    if not {"postgres", "medic"} <= set(services):
        return [f"compose.yaml needs postgres and medic services, has {sorted(services)}"]
    medic = services["medic"]
    env = medic.get("environment", {})
    for name, value in env.items():
        if name.startswith("MEDIC_") and name.removeprefix("MEDIC_").lower() not in SETTINGS:
            problems.append(f"compose medic environment {name} is not a Medic setting")
        if SECRET_NAME.search(name) and "${" not in str(value):
            problems.append(f"compose sets {name} to a literal value")
    if not str(env.get("MEDIC_DATABASE_URL", "")).startswith("postgresql://"):
        problems.append("compose does not point Medic at PostgreSQL")
    for svc_name, svc in services.items():
        for name, value in (svc.get("environment") or {}).items():
            if SECRET_NAME.search(name) and not re.fullmatch(r"\$\{[A-Z_]+:\?[^}]*\}", str(value)):
                problems.append(f"{svc_name}: {name} is not taken from a required variable")
        secrets_in_urls = re.findall(r"://[^:/]+:([^@$]+)@", json.dumps(svc.get("environment")))
        if secrets_in_urls:
            problems.append(f"{svc_name}: a password is written into a URL: {secrets_in_urls}")
    cond = ((medic.get("depends_on") or {}).get("postgres") or {}).get("condition")
    if cond != "service_healthy":
        problems.append("medic does not wait for PostgreSQL to be healthy")
    if medic.get("read_only") is not True:
        problems.append("medic's root filesystem is not read-only in compose")
    if (medic.get("build") or {}).get("dockerfile") != "server/Dockerfile":
        problems.append("compose does not build server/Dockerfile")
    return problems
