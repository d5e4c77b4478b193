"""The Helm chart infra/helm/medic: helm lint, strict Kubernetes schemas, checkov, and the
properties the review asked for; each check is shown to catch its defect in a copy."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from infracheck import helm_chart as h
from infracheck.tools import ROOT, yamllint

CHECKS = [
    h.check_lint,
    h.check_schemas,
    h.check_custom_resources,
    h.check_deployment,
    h.check_pdb_never_blocks_drains,
    h.check_secret_defaults,
    h.check_checkov,
]


@pytest.mark.parametrize("check", CHECKS, ids=lambda c: c.__name__)
def test_check_passes_on_the_chart(check: Callable[[Path], list[str]]) -> None:
    assert check(ROOT) == []


DEFECTS = [
    # 1.3: the `production` paths of PR #10.
    (
        h.check_secret_defaults,
        "values.yaml",
        "appSecretsName: medic/prod/app-secrets",
        "appSecretsName: medic/production/app-secrets",
    ),
    (h.check_secret_defaults, "values.yaml", "environment: prod", "environment: dev"),
    (
        h.check_lint,
        "values.yaml",
        "appSecretsName: medic/prod/app-secrets",
        "appSecretsName: medic/production/app-secrets",
    ),
    # A PDB that blocks drains with one replica: in the template, and through values.
    (
        h.check_pdb_never_blocks_drains,
        "templates/pdb.yaml",
        "maxUnavailable: {{ .Values.podDisruptionBudget.maxUnavailable }}",
        "minAvailable: 1",
    ),
    (h.check_lint, "values.yaml", "  maxUnavailable: 1\n", "  minAvailable: 1\n"),
    # Strict schemas: a misspelt field is not silently dropped.
    (
        h.check_schemas,
        "templates/deployment.yaml",
        "revisionHistoryLimit: 5",
        "revisionHistoryLimt: 5",
    ),
    # checkov: a writable root filesystem.
    (
        h.check_checkov,
        "templates/_helpers.tpl",
        "readOnlyRootFilesystem: true",
        "readOnlyRootFilesystem: false",
    ),
    # Settings and metrics the chart names must exist in Medic.
    (h.check_deployment, "values.yaml", "MEDIC_LOG_LEVEL: INFO", "MEDIC_LOGLEVEL: INFO"),
    (
        h.check_deployment,
        "templates/deployment.yaml",
        "value: {{ (not .Values.migrations.enabled) | quote }}",
        'value: "true"',
    ),
    (
        h.check_custom_resources,
        "templates/prometheusrule.yaml",
        "max(medic_monitor_lag_seconds",
        "max(medic_monitor_lag",
    ),
    (h.check_custom_resources, "templates/servicemonitor.yaml", "path: /metrics", "path: /metric"),
]


@pytest.mark.parametrize(
    ("check", "file", "old", "new"),
    DEFECTS,
    ids=[f"{d[0].__name__}-{i}" for i, d in enumerate(DEFECTS)],
)
def test_check_catches_its_defect(
    tmp_path: Path, check: Callable[[Path], list[str]], file: str, old: str, new: str
) -> None:
    copy = h.copy_chart(ROOT, tmp_path)
    path = h.chart(copy) / file
    text = path.read_text()
    assert old in text, f"the defect's anchor {old!r} is no longer in {file}"
    path.write_text(text.replace(old, new, 1))
    assert check(copy) != []


def test_an_environment_cannot_read_another_environments_secrets() -> None:
    docs, error = h.render(
        ROOT, "dev", ["--set", "externalSecret.appSecretsName=medic/prod/app-secrets"]
    )
    assert docs == [] and "must not read another's secrets" in error


def test_ingress_takes_the_certificate_terraform_publishes() -> None:
    docs, error = h.render(ROOT, "prod")
    assert error == ""
    (ingress,) = [d for d in docs if d["kind"] == "Ingress"]
    arn = ingress["metadata"]["annotations"]["alb.ingress.kubernetes.io/certificate-arn"]
    assert arn.startswith("arn:aws:acm:")
    _, error = h.render(ROOT, "prod", ["--set", "ingress.certificateArn="])
    assert "ingress.certificateArn is required" in error


def test_yamllint_passes_on_values_files_and_fixtures() -> None:
    code, out = yamllint(*h.chart(ROOT).glob("values*.yaml"), h.FIXTURES)
    assert code == 0, out
