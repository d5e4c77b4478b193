"""server/: the Dockerfile, the example configuration and the compose file, checked statically
(no Docker engine here); each check is also shown to catch its defect in a temporary copy."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
from infracheck.server_image import (
    check_compose,
    check_dockerfile,
    check_example_config,
    parse_dockerfile,
)
from infracheck.tools import ROOT, yamllint

CHECKS = [check_dockerfile, check_example_config, check_compose]


def with_defect(tmp_path: Path, file: str, old: str, new: str) -> Path:
    shutil.copytree(ROOT / "server", tmp_path / "server")
    path = tmp_path / file
    text = path.read_text()
    assert old in text, f"the defect's anchor {old!r} is no longer in {file}"
    path.write_text(text.replace(old, new, 1))
    return tmp_path


@pytest.mark.parametrize("check", CHECKS, ids=lambda c: c.__name__)
def test_check_passes_on_the_server_files(check: Callable[[Path], list[str]]) -> None:
    assert check(ROOT) == []


DEFECTS = [
    (check_dockerfile, "server/Dockerfile", "USER 10001:10001", "USER root"),
    (check_dockerfile, "server/Dockerfile", "USER 10001:10001\n", ""),
    (check_dockerfile, "server/Dockerfile", "HEALTHCHECK --interval", "# HEALTHCHECK --interval"),
    (check_dockerfile, "server/Dockerfile", 'CMD ["serve"]', 'CMD ["db", "upgrade"]'),
    (check_dockerfile, "server/Dockerfile", "MEDIC_LOG_FORMAT=json", "MEDIC_ADMIN_KEY=medic_x"),
    (check_dockerfile, "server/Dockerfile", "MEDIC_LOG_FORMAT=json", "MEDIC_LOG_STYLE=json"),
    (check_dockerfile, "server/Dockerfile", "PYTHONDONTWRITEBYTECODE=1", "PYTHONOPTIMIZE=1"),
    (check_dockerfile, "server/Dockerfile", "COPY --from=build /opt/medic", "COPY . /opt/medic"),
    (check_example_config, "server/medic.example.toml", 'smtp_from = ""\n', ""),
    (
        check_example_config,
        "server/medic.example.toml",
        'smtp_from = ""',
        'smtp_from = ""\nsmtp_tls = true',
    ),
    (check_example_config, "server/medic.example.toml", "port = 8080", "port = 8081"),
    (
        check_compose,
        "server/compose.yaml",
        "condition: service_healthy",
        "condition: service_started",
    ),
    (check_compose, "server/compose.yaml", "read_only: true", "read_only: false"),
    (
        check_compose,
        "server/compose.yaml",
        "${POSTGRES_PASSWORD:?set POSTGRES_PASSWORD}\n",
        "hunter2\n",
    ),
    (check_compose, "server/compose.yaml", "MEDIC_LOG_FORMAT: text", "MEDIC_LOGFORMAT: text"),
]


@pytest.mark.parametrize(
    ("check", "file", "old", "new"),
    DEFECTS,
    ids=[f"{d[0].__name__}-{i}" for i, d in enumerate(DEFECTS)],
)
def test_check_catches_its_defect(
    tmp_path: Path, check: Callable[[Path], list[str]], file: str, old: str, new: str
) -> None:
    assert check(with_defect(tmp_path, file, old, new)) != []


def test_dockerfile_parser_reads_stages_and_continuations() -> None:
    stages = parse_dockerfile(
        "# c\nARG X=1\nFROM a AS one\nRUN x \\\n  # inner comment\n  && y\nFROM b\nUSER 1\n"
    )
    assert [(s.base, s.name) for s in stages] == [("a", "one"), ("b", "1")]
    assert stages[0].instructions == [("RUN", "x && y")]
    assert stages[1].last("USER") == "1"


def test_build_context_ignore_file_keeps_what_the_build_copies() -> None:
    """server/Dockerfile.dockerignore excludes everything but what the COPY lines need."""
    kept = {
        line[1:].rstrip("/")
        for line in (ROOT / "server" / "Dockerfile.dockerignore").read_text().splitlines()
        if line.startswith("!")
    }
    copied = set()
    for stage in parse_dockerfile((ROOT / "server" / "Dockerfile").read_text()):
        for ins, args in stage.instructions:
            if ins == "COPY" and "--from" not in args:
                copied.update(a.rstrip("/").removeprefix("./") for a in args.split()[:-1])
    assert copied <= kept, f"copied but ignored: {copied - kept}"


def test_yamllint_passes_on_compose() -> None:
    code, out = yamllint(ROOT / "server" / "compose.yaml")
    assert code == 0, out
