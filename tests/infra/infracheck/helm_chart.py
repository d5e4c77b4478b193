"""Checks of the Helm chart infra/helm/medic, on manifests rendered by `helm template`.

Core kinds are validated against the Kubernetes OpenAPI schemas (kubernetes-validate, strict:
unknown fields fail). The CRD kinds (ExternalSecret, ServiceMonitor, PrometheusRule) have no
schema there: ``check_custom_resources`` checks what Medic depends on in them (secret names,
the scraped port, metric names that exist); their full CRD schemas are not checked offline.
"""

from __future__ import annotations

import re
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import fields
from pathlib import Path
from typing import Any

import yaml

from medic_core.observability.metrics import Metrics
from medic_core.settings import Settings

from .tools import ROOT, import_or_fail, require, run

KUBE_VERSION = "1.30.0"
NAMESPACE = "medic"
FIXTURES = ROOT / "tests" / "infra" / "fixtures"
CRD_KINDS = {"ExternalSecret", "ServiceMonitor", "PrometheusRule"}
SETTINGS = {f"MEDIC_{f.name.upper()}" for f in fields(Settings)}

# The value sets the chart is rendered with: defaults, and each environment as cd-eks.yml
# deploys it (its values file, then what Terraform publishes; fixtures stand in for SSM).
VALUE_SETS: dict[str, list[str]] = {
    "default": [],
    "dev": ["values-dev.yaml", str(FIXTURES / "terraform-helm-values-dev.yaml")],
    "prod": ["values-prod.yaml", str(FIXTURES / "terraform-helm-values-prod.yaml")],
}

# checkov findings the chart does not follow, and why (everything else must pass).
CHECKOV_SKIPS = {
    "CKV_K8S_11": "no CPU limit on purpose: CFS throttling adds latency to heartbeat ingest; "
    "requests reserve CPU",
    "CKV_K8S_35": "Medic reads secrets from MEDIC_* environment variables (settings.py)",
    "CKV_K8S_43": "images are pinned by tag (short SHA on main); the chart knows no digest",
}


def chart(root: Path) -> Path:
    return root / "infra" / "helm" / "medic"


def helm(root: Path, *args: str) -> Any:
    return run([require("helm"), *args], cwd=chart(root))


def values_args(root: Path, value_set: str, extra: Sequence[str] = ()) -> list[str]:
    args: list[str] = []
    for f in VALUE_SETS[value_set]:
        args += ["--values", f if f.startswith("/") else str(chart(root) / f)]
    return [*args, "--set-string", "image.tag=abc1234", *extra]


def render(
    root: Path, value_set: str, extra: Sequence[str] = ()
) -> tuple[list[dict[str, Any]], str]:
    """(manifests, error): the rendered documents, or the error helm printed."""
    proc = helm(
        root,
        "template",
        "medic",
        ".",
        "--namespace",
        NAMESPACE,
        "--kube-version",
        KUBE_VERSION,
        *values_args(root, value_set, extra),
    )
    if proc.returncode != 0:
        return [], proc.stderr
    return [d for d in yaml.safe_load_all(proc.stdout) if d], ""


def check_lint(root: Path) -> list[str]:
    problems = []
    for name in VALUE_SETS:
        proc = helm(
            root, "lint", ".", "--strict", "--kube-version", KUBE_VERSION, *values_args(root, name)
        )
        if proc.returncode != 0:
            problems.append(f"helm lint ({name} values): {proc.stdout[-800:]}{proc.stderr[-800:]}")
    return problems


def check_schemas(root: Path) -> list[str]:
    kv = import_or_fail("kubernetes_validate", "kubernetes-validate")
    problems = []
    for name in VALUE_SETS:
        docs, error = render(root, name)
        if error:
            problems.append(f"helm template ({name} values) failed: {error}")
            continue
        for doc in docs:
            if doc.get("kind") in CRD_KINDS:
                continue
            try:
                kv.validate(doc, KUBE_VERSION, strict=True)
            except (kv.ValidationError, kv.SchemaNotFoundError, kv.InvalidSchemaError) as exc:
                ident = f"{doc.get('kind')}/{doc.get('metadata', {}).get('name')}"
                problems.append(f"{name} values: {ident}: {getattr(exc, 'message', exc)}")
    return problems


def _by_kind(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [d for d in docs if d.get("kind") == kind]


def metric_names() -> set[str]:
    names = set()
    suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"), "gauge": ("",)}
    for family in Metrics().registry.collect():
        names.update(family.name + s for s in suffixes.get(family.type, ("",)))
    return names


def check_custom_resources(root: Path) -> list[str]:
    problems = []
    known_metrics = metric_names()
    for name in VALUE_SETS:
        docs, error = render(root, name)
        if error:
            problems.append(f"helm template ({name} values) failed: {error}")
            continue
        service_ports = {p["name"] for s in _by_kind(docs, "Service") for p in s["spec"]["ports"]}
        for sm in _by_kind(docs, "ServiceMonitor"):
            for ep in sm["spec"]["endpoints"]:
                if ep.get("port") not in service_ports or ep.get("path") != "/metrics":
                    problems.append(
                        f"{name}: ServiceMonitor scrapes {ep}, not the Service's /metrics"
                    )
        for rule_doc in _by_kind(docs, "PrometheusRule"):
            for group in rule_doc["spec"]["groups"]:
                for rule in group["rules"]:
                    for key in ("alert", "expr", "for"):
                        if key not in rule:
                            problems.append(f"{name}: rule {rule.get('alert')} has no {key}")
                    if rule.get("labels", {}).get("severity") not in ("critical", "warning"):
                        problems.append(f"{name}: rule {rule.get('alert')} has no severity")
                    for metric in re.findall(r"\b(medic_[a-z_]+)", str(rule.get("expr"))):
                        if metric not in known_metrics:
                            problems.append(f"{name}: rule {rule['alert']} uses unknown {metric}")
        keys = {}
        for es in _by_kind(docs, "ExternalSecret"):
            spec = es["spec"]
            for item in spec.get("dataFrom", []):
                keys["app"] = item["extract"]["key"]
            for item in spec.get("data", []):
                keys["database"] = item["remoteRef"]["key"]
        env = "prod" if name == "default" else name
        expected = {"app": f"medic/{env}/app-secrets", "database": f"medic/{env}/rds-credentials"}
        if keys != expected:
            problems.append(f"{name}: ExternalSecrets read {keys}, expected {expected}")
    return problems


def check_deployment(root: Path) -> list[str]:
    """Every MEDIC_* variable the pods get is a Medic setting; containers are locked down; the
    server does not migrate when the init container already did."""
    problems = []
    for name in VALUE_SETS:
        docs, error = render(root, name)
        if error:
            problems.append(f"helm template ({name} values) failed: {error}")
            continue
        for dep in _by_kind(docs, "Deployment"):
            pod = dep["spec"]["template"]["spec"]
            containers = pod.get("initContainers", []) + pod["containers"]
            for c in containers:
                for var in c.get("env", []):
                    if var["name"].startswith("MEDIC_") and var["name"] not in SETTINGS:
                        problems.append(f"{name}: {c['name']} sets {var['name']}, not a setting")
                sc = c.get("securityContext", {})
                if (
                    sc.get("readOnlyRootFilesystem") is not True
                    or sc.get("runAsNonRoot") is not True
                ):
                    problems.append(f"{name}: container {c['name']} is not read-only and non-root")
            init_args = [c.get("args") for c in pod.get("initContainers", [])]
            server_env = {v["name"]: v.get("value") for v in pod["containers"][0].get("env", [])}
            if ["db", "upgrade"] in init_args and server_env.get("MEDIC_AUTO_MIGRATE") != "false":
                problems.append(f"{name}: the server migrates again after the init container")
    return problems


def check_pdb_never_blocks_drains(root: Path) -> list[str]:
    """With one replica, the PodDisruptionBudget still lets a drain evict the pod."""
    docs, error = render(root, "default", ["--set", "replicaCount=1"])
    if error:
        return [f"helm template failed: {error}"]
    problems = []
    pdbs = _by_kind(docs, "PodDisruptionBudget")
    if not pdbs:
        problems.append("no PodDisruptionBudget")
    for pdb in pdbs:
        spec = pdb["spec"]
        if "minAvailable" in spec and str(spec["minAvailable"]) not in ("0", "0%"):
            problems.append(f"PDB minAvailable {spec['minAvailable']} blocks drains of 1 replica")
        if "maxUnavailable" in spec and str(spec["maxUnavailable"]) in ("0", "0%"):
            problems.append("PDB maxUnavailable 0 blocks every drain")
    return problems


def check_secret_defaults(root: Path) -> list[str]:
    """Finding 1.3: standalone defaults are prod, with prod's Secrets Manager names."""
    values = yaml.safe_load((chart(root) / "values.yaml").read_text())
    es = values.get("externalSecret", {})
    problems = []
    if values.get("environment") != "prod":
        problems.append(f"default environment is {values.get('environment')!r}, not 'prod'")
    for key, expected in (
        ("appSecretsName", "medic/prod/app-secrets"),
        ("databaseSecretName", "medic/prod/rds-credentials"),
    ):
        if es.get(key) != expected:
            problems.append(f"externalSecret.{key} defaults to {es.get(key)!r}, not {expected!r}")
    return problems


def check_checkov(root: Path) -> list[str]:
    import json

    checkov = require("checkov")
    problems = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in VALUE_SETS:
            proc = helm(
                root,
                "template",
                "medic",
                ".",
                "--namespace",
                NAMESPACE,
                "--kube-version",
                KUBE_VERSION,
                *values_args(root, name),
            )
            if proc.returncode != 0:
                problems.append(f"helm template ({name}) failed: {proc.stderr}")
                continue
            (Path(tmp) / f"{name}.yaml").write_text(proc.stdout)
        scan = run(
            [
                checkov,
                "-d",
                tmp,
                "--framework",
                "kubernetes",
                "--skip-download",
                "--quiet",
                "-o",
                "json",
                "--skip-check",
                ",".join(CHECKOV_SKIPS),
            ],
            timeout=300,
        )
        try:
            report = json.loads(scan.stdout)
        except json.JSONDecodeError:
            return [f"checkov printed no JSON report: {scan.stdout[-500:]} {scan.stderr[-500:]}"]
        reports = report if isinstance(report, list) else [report]
        for rep in reports:
            summary = rep.get("summary", {})
            if summary.get("parsing_errors"):
                problems.append(f"checkov could not parse: {rep['results'].get('parsing_errors')}")
            if not summary.get("passed") and not summary.get("failed"):
                problems.append("checkov checked nothing")
            for c in rep.get("results", {}).get("failed_checks", []):
                problems.append(
                    f"checkov {c['check_id']} {c['check_name']}: {c['resource']} "
                    f"({Path(c['file_path']).name})"
                )
    return problems


def copy_chart(root: Path, dest: Path) -> Path:
    shutil.copytree(chart(root), dest / "infra" / "helm" / "medic")
    return dest
