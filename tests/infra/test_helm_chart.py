"""The Helm chart infra/helm/medic: helm lint, strict schemas (Kubernetes' for core kinds, the
local allow-listed ones for CRDs), checkov, the roles (combined or api + worker), the agents'
gRPC endpoint, the autoscalers, and the properties the review asked for; each check is shown to
catch its defect in a copy."""

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
    h.check_roles,
    h.check_agent_endpoint,
    h.check_autoscalers,
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
        "maxUnavailable: {{ $v.podDisruptionBudget.maxUnavailable }}",
        "minAvailable: 1",
    ),
    # ... and the worker's own PDB through its values (the values schema refuses it).
    (
        h.check_pdb_never_blocks_drains,
        "values.yaml",
        "    podDisruptionBudget:\n      enabled: true\n      maxUnavailable: 1\n",
        "    podDisruptionBudget:\n      enabled: true\n      maxUnavailable: 0\n",
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
        "value: {{ (not $.Values.migrations.enabled) | quote }}",
        'value: "true"',
    ),
    (
        h.check_custom_resources,
        "templates/prometheusrule.yaml",
        "max(medic_monitor_lag_seconds",
        "max(medic_monitor_lag",
    ),
    (h.check_custom_resources, "templates/servicemonitor.yaml", "path: /metrics", "path: /metric"),
    # CRDs against their local schemas: a misspelt ScaledObject or ExternalSecret field, a
    # value outside the CRD's enum, a KEDA trigger without its required parameter.
    (h.check_schemas, "templates/autoscaling.yaml", "minReplicaCount:", "minReplicas:"),
    (
        h.check_schemas,
        "templates/externalsecret.yaml",
        "creationPolicy: Owner",
        "creationPolicy: Own",
    ),
    (h.check_schemas, "templates/autoscaling.yaml", "threshold: {{", "limit: {{"),
    (h.check_schemas, "templates/servicemonitor.yaml", "jobLabel:", "jobLabels:"),
    # A KEDA query on a metric Medic does not export.
    (
        h.check_custom_resources,
        "values.yaml",
        "query: 'sum(rate(medic_http_requests_total",
        "query: 'sum(rate(medic_requests_total",
    ),
    # Roles: the api runs the background services too; workers get Service traffic; one PDB
    # covers both roles; the ServiceMonitor names the workers' job after their Service.
    (h.check_roles, "templates/_helpers.tpl", '{{- if eq .role "api" -}}false', "{{- if false -}}"),
    (
        h.check_roles,
        "templates/service.yaml",
        '{{- include "medic.role.selectorLabels" $serving | nindent 4 }}',
        '{{- include "medic.selectorLabels" . | nindent 4 }}',
    ),
    (
        h.check_roles,
        "templates/pdb.yaml",
        '{{- include "medic.role.selectorLabels" $ctx | nindent 6 }}',
        '{{- include "medic.selectorLabels" $ | nindent 6 }}',
    ),
    (h.check_roles, "templates/servicemonitor.yaml", "  jobLabel: medic.io/job\n", ""),
    # The agents' endpoint: HTTP/1 to the pods, a short idle timeout, a port mismatch, another
    # certificate, the gRPC port closed to the ALB, a worker listening for agents.
    (
        h.check_agent_endpoint,
        "templates/ingress.yaml",
        "backend-protocol-version: GRPC",
        "backend-protocol-version: HTTP1",
    ),
    (
        h.check_agent_endpoint,
        "values.yaml",
        "idleTimeoutSeconds: 3600",
        "idleTimeoutSeconds: 60",
    ),
    (
        h.check_agent_endpoint,
        "templates/deployment.yaml",
        "value: {{ $.Values.grpc.port | quote }}",
        'value: "50052"',
    ),
    (
        h.check_agent_endpoint,
        "templates/ingress.yaml",
        "certificate-arn: {{ .Values.ingress.certificateArn | quote }}\n"
        "    alb.ingress.kubernetes.io/backend-protocol-version",
        'certificate-arn: "arn:aws:acm:eu-west-1:111111111111:certificate/other"\n'
        "    alb.ingress.kubernetes.io/backend-protocol-version",
    ),
    (
        h.check_agent_endpoint,
        "templates/networkpolicy.yaml",
        "        - port: grpc\n",
        "        - port: 9\n",
    ),
    (
        h.check_agent_endpoint,
        "templates/deployment.yaml",
        "{{- if and $serves $.Values.grpc.enabled }}\n            - name: MEDIC_GRPC_PORT",
        "{{- if $.Values.grpc.enabled }}\n            - name: MEDIC_GRPC_PORT",
    ),
    # Autoscalers: the HPA/KEDA guard removed; an autoscaled Deployment that fixes replicas.
    (
        h.check_autoscalers,
        "templates/autoscaling.yaml",
        "{{- if and $a.enabled $a.keda.enabled }}",
        "{{- if false }}",
    ),
    (
        h.check_autoscalers,
        "templates/deployment.yaml",
        "{{- if not (or $v.autoscaling.enabled $v.autoscaling.keda.enabled) }}",
        "{{- if true }}",
    ),
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
    ingresses = [d for d in docs if d["kind"] == "Ingress"]
    assert len(ingresses) == 2  # people and API clients, and agents
    for ingress in ingresses:
        arn = ingress["metadata"]["annotations"]["alb.ingress.kubernetes.io/certificate-arn"]
        assert arn.startswith("arn:aws:acm:")
    _, error = h.render(ROOT, "prod", ["--set", "ingress.certificateArn="])
    assert "ingress.certificateArn is required" in error


def test_agents_ingress_needs_a_host_of_its_own() -> None:
    _, error = h.render(ROOT, "prod", ["--set", "grpc.ingress.host="])
    assert "grpc.ingress.host is required" in error
    _, error = h.render(ROOT, "prod", ["--set", "grpc.ingress.host=medic.example.org"])
    assert "must differ from ingress.host" in error


def test_split_mode_runs_an_api_and_a_worker_deployment() -> None:
    docs, error = h.render(ROOT, "prod-split")
    assert error == ""
    deployments = {d["metadata"]["name"]: d for d in docs if d["kind"] == "Deployment"}
    assert sorted(deployments) == ["medic-api", "medic-worker"]
    assert h.server_env(deployments["medic-api"])["MEDIC_BACKGROUND"] == "false"
    assert h.server_env(deployments["medic-worker"])["MEDIC_BACKGROUND"] == "true"
    assert "MEDIC_GRPC_PORT" not in h.server_env(deployments["medic-worker"])
    hpas = sorted(d["metadata"]["name"] for d in docs if d["kind"] == "HorizontalPodAutoscaler")
    assert hpas == ["medic-api", "medic-worker"]


def test_keda_replaces_the_hpa_and_the_chart_refuses_both() -> None:
    docs, error = h.render(ROOT, "prod-keda")
    assert error == ""
    assert not [d for d in docs if d["kind"] == "HorizontalPodAutoscaler"]
    scaled = {d["metadata"]["name"]: d for d in docs if d["kind"] == "ScaledObject"}
    assert sorted(scaled) == ["medic-api", "medic-worker"]
    triggers = {t["type"]: t for t in scaled["medic-api"]["spec"]["triggers"]}
    assert sorted(triggers) == ["cpu", "prometheus"]
    assert 'medic_http_requests_total{job="medic"}' in triggers["prometheus"]["metadata"]["query"]
    _, error = h.render(ROOT, "prod", ["--set", "autoscaling.keda.enabled=true"])
    assert "choose one" in error
    _, error = h.render(ROOT, "prod-keda", ["--set", "autoscaling.keda.prometheus.serverAddress="])
    assert "serverAddress is required" in error


def test_the_albs_networks_are_medics_trusted_proxies() -> None:
    # Behind the ALB every peer is an ALB node: without this, one client's failed
    # authentications would use up the budget of everyone behind the same node.
    docs, _ = h.render(ROOT, "prod")
    [deployment] = [d for d in docs if d["kind"] == "Deployment"]
    assert h.server_env(deployment)["MEDIC_TRUSTED_PROXIES"] == "10.0.0.0/16"
    docs, _ = h.render(ROOT, "prod", ["--set", "config.MEDIC_TRUSTED_PROXIES=10.1.2.0/24"])
    [deployment] = [d for d in docs if d["kind"] == "Deployment"]
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    chosen = [v["value"] for v in container["env"] if v["name"] == "MEDIC_TRUSTED_PROXIES"]
    assert chosen == ["10.1.2.0/24"]  # an explicit value wins, and is not set twice
    docs, _ = h.render(ROOT, "default")
    assert all(
        "MEDIC_TRUSTED_PROXIES" not in h.server_env(d) for d in docs if d["kind"] == "Deployment"
    )


@pytest.mark.parametrize("name", ["MEDIC_BACKGROUND", "MEDIC_GRPC_PORT", "MEDIC_ADMIN_KEY"])
def test_config_cannot_set_what_the_chart_sets_per_role_or_secrets(name: str) -> None:
    # Each would be a second, conflicting env entry (or a secret in plain values).
    docs, error = h.render(ROOT, "prod", ["--set", f"config.{name}=x"])
    assert docs == [] and "invalid propertyName" in error


def test_a_custom_resource_without_a_local_schema_fails_validation(tmp_path: Path) -> None:
    copy = h.copy_chart(ROOT, tmp_path)
    (h.chart(copy) / "templates" / "podmonitor.yaml").write_text(
        "apiVersion: monitoring.coreos.com/v1\nkind: PodMonitor\nmetadata:\n  name: medic\n"
        "spec:\n  selector: {}\n"
    )
    problems = h.check_schemas(copy)
    assert any("PodMonitor" in p and "without a local schema" in p for p in problems), problems


def test_yamllint_passes_on_values_files_and_fixtures() -> None:
    code, out = yamllint(*h.chart(ROOT).glob("values*.yaml"), h.FIXTURES)
    assert code == 0, out
