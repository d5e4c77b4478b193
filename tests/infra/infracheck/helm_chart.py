"""Checks of the Helm chart infra/helm/medic, on manifests rendered by `helm template`.

Core kinds are validated against the Kubernetes OpenAPI schemas (kubernetes-validate, strict:
unknown fields fail). Custom resources cannot be: their CRDs' schemas are not fetched offline.
Each CRD kind the chart renders must instead be on the allow-list ``CRD_SCHEMAS``, which maps it
to a small local JSON schema in tests/infra/schemas/ (a strict subset of the CRD's
openAPIV3Schema: unknown fields fail there too). A kind that is neither a core kind nor on the
list fails the check; nothing is skipped by kind. ``check_custom_resources`` then checks what
Medic depends on in them (secret names, the scraped port, metric names that exist).

The chart runs one Deployment (roles.mode combined) or two (split: api and worker);
``check_roles``, ``check_agent_endpoint`` and ``check_autoscalers`` check how the Services,
PodDisruptionBudgets, autoscalers, NetworkPolicies and Ingresses fit those Deployments.
"""

from __future__ import annotations

import copy
import hashlib
import json
import re
import shutil
import tempfile
from collections.abc import Iterator, Mapping, Sequence
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
SETTINGS = {f"MEDIC_{f.name.upper()}" for f in fields(Settings)}

# The allow-list of custom resource kinds, each with its local schema (see the docstring).
CRD_SCHEMAS: dict[tuple[str, str], str] = {
    (api_version, kind): f"{api_version.replace('/', '_')}_{kind}.json"
    for api_version, kind in (
        ("external-secrets.io/v1beta1", "ExternalSecret"),
        ("monitoring.coreos.com/v1", "ServiceMonitor"),
        ("monitoring.coreos.com/v1", "PrometheusRule"),
        ("keda.sh/v1alpha1", "ScaledObject"),
    )
}

# The value sets the chart is rendered with: defaults, and each environment as cd-eks.yml
# deploys it (its values file, then what Terraform publishes; fixtures stand in for SSM); then
# prod in split mode with an HPA per role, and with KEDA ScaledObjects instead.
_PROD = ["values-prod.yaml", str(FIXTURES / "terraform-helm-values-prod.yaml")]
VALUE_SETS: dict[str, list[str]] = {
    "default": [],
    "dev": ["values-dev.yaml", str(FIXTURES / "terraform-helm-values-dev.yaml")],
    "prod": _PROD,
    "prod-split": [*_PROD, str(FIXTURES / "values-split.yaml")],
    "prod-keda": [*_PROD, str(FIXTURES / "values-keda.yaml")],
}
MODES = ("combined", "split")


def environment_of(value_set: str) -> str:
    """The environment a value set deploys to (the default values are prod's)."""
    return "dev" if value_set.startswith("dev") else "prod"


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


# Renderings already made, by the content of everything they read (chart and fixtures) and
# the arguments: the checks render the same value sets over and over.
_RENDERED: dict[tuple[str, str, tuple[str, ...]], tuple[list[dict[str, Any]], str]] = {}


def _inputs_digest(root: Path) -> str:
    digest = hashlib.sha256()
    for base in (chart(root), FIXTURES):
        for path in sorted(base.rglob("*")):
            if path.is_file():
                digest.update(str(path.relative_to(base)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def render(
    root: Path, value_set: str, extra: Sequence[str] = ()
) -> tuple[list[dict[str, Any]], str]:
    """(manifests, error): the rendered documents, or the error helm printed."""
    key = (_inputs_digest(root), value_set, tuple(extra))
    if key not in _RENDERED:
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
            _RENDERED[key] = [], proc.stderr
        else:
            loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
            _RENDERED[key] = [d for d in yaml.load_all(proc.stdout, Loader=loader) if d], ""
    docs, error = _RENDERED[key]
    return copy.deepcopy(docs), error


def check_lint(root: Path) -> list[str]:
    problems = []
    for name in VALUE_SETS:
        proc = helm(
            root, "lint", ".", "--strict", "--kube-version", KUBE_VERSION, *values_args(root, name)
        )
        if proc.returncode != 0:
            problems.append(f"helm lint ({name} values): {proc.stdout[-800:]}{proc.stderr[-800:]}")
    return problems


def renderings(root: Path) -> Iterator[tuple[str, list[dict[str, Any]], str]]:
    """(label, manifests, error) for every value set in both roles modes."""
    for name in VALUE_SETS:
        for mode in MODES:
            docs, error = render(root, name, ["--set", f"roles.mode={mode}"])
            yield f"{name} values, {mode}", docs, error


def crd_schema(root: Path, api_version: str, kind: str) -> dict[str, Any] | None:
    file = CRD_SCHEMAS.get((api_version, kind))
    if file is None:
        return None
    return json.loads((root / "tests" / "infra" / "schemas" / file).read_text())


def check_schemas(root: Path) -> list[str]:
    """Every rendered document against a strict schema: kubernetes-validate's for core kinds,
    the allow-listed local schema for custom resources; any other kind is a problem."""
    kv = import_or_fail("kubernetes_validate", "kubernetes-validate")
    jsonschema = import_or_fail("jsonschema", "jsonschema")
    problems = []
    seen_crds: set[tuple[str, str]] = set()
    validated: set[str] = set()
    for label, docs, error in renderings(root):
        if error:
            problems.append(f"helm template ({label}) failed: {error}")
            continue
        for doc in docs:
            text = json.dumps(doc, sort_keys=True)
            if text in validated:  # the same document in another rendering: checked already
                continue
            validated.add(text)
            api_version, kind = str(doc.get("apiVersion")), str(doc.get("kind"))
            ident = f"{kind}/{doc.get('metadata', {}).get('name')}"
            schema = crd_schema(root, api_version, kind)
            if schema is not None:
                seen_crds.add((api_version, kind))
                validator = jsonschema.Draft7Validator(schema)
                for err in sorted(validator.iter_errors(doc), key=lambda e: list(e.path)):
                    where = "/".join(str(p) for p in err.path) or "(document)"
                    problems.append(f"{label}: {ident} at {where}: {err.message}")
                continue
            if "." in api_version.split("/")[0] and not api_version.split("/")[0].endswith(
                ".k8s.io"
            ):
                problems.append(
                    f"{label}: {ident} ({api_version}) is a custom resource without a local "
                    "schema: add one to tests/infra/schemas and CRD_SCHEMAS"
                )
                continue
            try:
                kv.validate(doc, KUBE_VERSION, strict=True)
            except (kv.ValidationError, kv.SchemaNotFoundError, kv.InvalidSchemaError) as exc:
                problems.append(f"{label}: {ident}: {getattr(exc, 'message', exc)}")
    for key, file in sorted(CRD_SCHEMAS.items()):
        path = root / "tests" / "infra" / "schemas" / file
        if not path.exists():
            problems.append(f"CRD_SCHEMAS names {file}, which does not exist")
            continue
        try:
            jsonschema.Draft7Validator.check_schema(json.loads(path.read_text()))
        except (ValueError, jsonschema.SchemaError) as exc:
            problems.append(f"{file} is not a valid JSON schema: {exc}")
        if key not in seen_crds:
            problems.append(f"{key[1]} ({key[0]}) is on the allow-list but no rendering has one")
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
        for so in _by_kind(docs, "ScaledObject"):
            for trigger in so["spec"]["triggers"]:
                query = str(trigger.get("metadata", {}).get("query", ""))
                for metric in re.findall(r"\b(medic_[a-z_]+)", query):
                    if metric not in known_metrics:
                        ident = f"ScaledObject {so['metadata']['name']}"
                        problems.append(f"{name}: {ident} queries unknown {metric}")
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
        env = environment_of(name)
        expected = {"app": f"medic/{env}/app-secrets", "database": f"medic/{env}/rds-credentials"}
        if keys != expected:
            problems.append(f"{name}: ExternalSecrets read {keys}, expected {expected}")
    return problems


def check_deployment(root: Path) -> list[str]:
    """Every MEDIC_* variable the pods get is a Medic setting; containers are locked down; the
    server does not migrate when the init container already did."""
    problems = []
    for name, docs, error in renderings(root):
        if error:
            problems.append(f"helm template ({name}) failed: {error}")
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
    """With one replica per Deployment (combined, and api + worker), every PodDisruptionBudget
    still lets a drain evict the pod; each Deployment has one."""
    problems = []
    for mode in MODES:
        docs, error = render(
            root,
            "default",
            [
                *("--set", f"roles.mode={mode}"),
                *("--set", "replicaCount=1", "--set", "roles.worker.replicaCount=1"),
            ],
        )
        if error:
            return [f"helm template ({mode}) failed: {error}"]
        pdbs = _by_kind(docs, "PodDisruptionBudget")
        if len(pdbs) != len(_by_kind(docs, "Deployment")):
            problems.append(f"{mode}: {len(pdbs)} PodDisruptionBudgets for the Deployments")
        for pdb in pdbs:
            spec, pdb_name = pdb["spec"], pdb["metadata"]["name"]
            if "minAvailable" in spec and str(spec["minAvailable"]) not in ("0", "0%"):
                problems.append(
                    f"{mode}: PDB {pdb_name} minAvailable {spec['minAvailable']} blocks drains "
                    "of 1 replica"
                )
            if "maxUnavailable" in spec and str(spec["maxUnavailable"]) in ("0", "0%"):
                problems.append(f"{mode}: PDB {pdb_name} maxUnavailable 0 blocks every drain")
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


# -- the roles: Deployments and what selects their pods ---------------------------------------


def selects(selector: Mapping[str, str], labels: Mapping[str, str]) -> bool:
    """Whether a matchLabels selector selects pods with these labels."""
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def pod_labels(dep: Mapping[str, Any]) -> dict[str, str]:
    return dict(dep["spec"]["template"]["metadata"].get("labels", {}))


def server_env(dep: Mapping[str, Any]) -> dict[str, str]:
    container = dep["spec"]["template"]["spec"]["containers"][0]
    return {v["name"]: v.get("value") for v in container.get("env", [])}


def container_ports(dep: Mapping[str, Any]) -> dict[str, int]:
    container = dep["spec"]["template"]["spec"]["containers"][0]
    return {p["name"]: p["containerPort"] for p in container.get("ports", [])}


def runs_background(dep: Mapping[str, Any]) -> bool:
    """MEDIC_BACKGROUND as the server reads it (unset: true)."""
    return str(server_env(dep).get("MEDIC_BACKGROUND", "true")).lower() in ("true", "1", "yes")


def _selector_of(doc: Mapping[str, Any]) -> dict[str, str]:
    spec = doc["spec"]
    if doc["kind"] == "Service":
        return dict(spec.get("selector") or {})
    if doc["kind"] == "NetworkPolicy":
        return dict(spec["podSelector"].get("matchLabels") or {})
    return dict(spec["selector"].get("matchLabels") or {})


def _deployments_selected(doc: Mapping[str, Any], deps: list[dict[str, Any]]) -> list[str]:
    sel = _selector_of(doc)
    return [d["metadata"]["name"] for d in deps if selects(sel, pod_labels(d))]


def _routed_services(docs: list[dict[str, Any]]) -> set[str]:
    return {
        path["backend"]["service"]["name"]
        for ing in _by_kind(docs, "Ingress")
        for rule in ing["spec"].get("rules", [])
        for path in rule.get("http", {}).get("paths", [])
    }


def check_roles(root: Path) -> list[str]:
    """roles.mode combined: one Deployment running the background services; split: api
    (MEDIC_BACKGROUND=false) and worker (true). In both, the Service the Ingresses route to
    selects exactly the serving pods (never a worker); no Deployment's selector takes another's
    pods; each Deployment has its own PodDisruptionBudget; and every Deployment's pods are
    scraped by the ServiceMonitor under the job the alerts select."""
    problems = []
    for label, docs, error in renderings(root):
        if error:
            problems.append(f"helm template ({label}) failed: {error}")
            continue
        deps = _by_kind(docs, "Deployment")
        background = {d["metadata"]["name"]: runs_background(d) for d in deps}
        mode = "split" if label.endswith("split") else "combined"
        want = [True] if mode == "combined" else [False, True]
        if sorted(background.values()) != want:
            expected = (
                "one running the background services"
                if mode == "combined"
                else "an api (false) and a worker (true)"
            )
            problems.append(f"{label}: Deployments and MEDIC_BACKGROUND {background}: {expected}")
        serving = sorted(n for n, bg in background.items() if mode == "combined" or not bg)
        for dep in deps:
            others = [
                o["metadata"]["name"]
                for o in deps
                if o is not dep and selects(_selector_of(dep), pod_labels(o))
            ]
            if others:
                problems.append(
                    f"{label}: Deployment {dep['metadata']['name']}'s selector takes {others}' pods"
                )
        services = {s["metadata"]["name"]: s for s in _by_kind(docs, "Service")}
        for name in sorted(_routed_services(docs)):
            if name not in services:
                problems.append(f"{label}: an Ingress routes to a missing Service {name}")
                continue
            got = sorted(_deployments_selected(services[name], deps))
            if got != serving:
                problems.append(
                    f"{label}: Service {name} (routed by an Ingress) selects {got}, not {serving}"
                )
        pdbs = _by_kind(docs, "PodDisruptionBudget")
        for pdb in pdbs:
            got = _deployments_selected(pdb, deps)
            if len(got) != 1:
                problems.append(
                    f"{label}: PDB {pdb['metadata']['name']} covers {got}, not one Deployment"
                )
        for dep in deps:
            covered = [p for p in pdbs if selects(_selector_of(p), pod_labels(dep))]
            if len(covered) != 1:
                problems.append(
                    f"{label}: Deployment {dep['metadata']['name']} has {len(covered)} PDBs"
                )
        problems += _check_scraped(label, docs, deps, services)
    return problems


def _check_scraped(
    label: str,
    docs: list[dict[str, Any]],
    deps: list[dict[str, Any]],
    services: Mapping[str, dict[str, Any]],
) -> list[str]:
    problems: list[str] = []
    monitors = _by_kind(docs, "ServiceMonitor")
    rules = _by_kind(docs, "PrometheusRule")
    if not monitors:
        return problems
    jobs = {
        job
        for r in rules
        for g in r["spec"]["groups"]
        for rule in g["rules"]
        for job in re.findall(r'job="([^"]+)"', str(rule.get("expr")))
    }
    for dep in deps:
        found = []
        for sm in monitors:
            job_label = sm["spec"].get("jobLabel")
            for svc in services.values():
                svc_labels = svc["metadata"].get("labels", {})
                if not selects(sm["spec"]["selector"].get("matchLabels", {}), svc_labels):
                    continue
                if not selects(_selector_of(svc), pod_labels(dep)):
                    continue
                # prometheus-operator: the Service's jobLabel label, else the Service's name.
                found.append(svc_labels.get(job_label or "", svc["metadata"]["name"]))
        name = dep["metadata"]["name"]
        if not found:
            problems.append(f"{label}: no ServiceMonitor scrapes Deployment {name}'s pods")
        for job in sorted(set(found) - jobs) if jobs else []:
            problems.append(
                f"{label}: {name}'s pods are scraped as job {job!r}; alerts select {sorted(jobs)}"
            )
    return problems


# -- the agents' gRPC endpoint ---------------------------------------------------------------

ALB = "alb.ingress.kubernetes.io/"


def agent_silence_seconds(docs: list[dict[str, Any]]) -> int:
    """How long Medic lets a connected agent stay silent (interval x missed heartbeats), from the
    serving pods' environment or Medic's defaults."""
    defaults = Settings()
    interval, missed = defaults.agent_heartbeat_interval, defaults.agent_missed_heartbeats
    for dep in _by_kind(docs, "Deployment"):
        env = server_env(dep)
        interval = max(interval, int(env.get("MEDIC_AGENT_HEARTBEAT_INTERVAL") or interval))
        missed = max(missed, int(env.get("MEDIC_AGENT_MISSED_HEARTBEATS") or missed))
    return interval * missed


def check_agent_endpoint(root: Path) -> list[str]:
    """Where the agents' Ingress is on (dev, prod): an HTTPS-only ALB speaking gRPC
    (backend-protocol-version GRPC) on its own host, with the HTTP ingress's certificate, an idle
    timeout longer than the silence Medic tolerates, routed to a Service port whose pods listen
    on MEDIC_GRPC_PORT; the NetworkPolicy lets the ALB reach that port; workers have none."""
    problems = []
    for label, docs, error in renderings(root):
        if error:
            problems.append(f"helm template ({label}) failed: {error}")
            continue
        deps = _by_kind(docs, "Deployment")
        for dep in deps:
            env, ports = server_env(dep), container_ports(dep)
            name = dep["metadata"]["name"]
            if runs_background(dep) and not label.endswith("combined"):
                if "MEDIC_GRPC_PORT" in env or "grpc" in ports:
                    problems.append(f"{label}: worker {name} opens the agents' gRPC port")
            elif str(env.get("MEDIC_GRPC_PORT")) != str(ports.get("grpc")):
                problems.append(
                    f"{label}: {name} listens for agents on MEDIC_GRPC_PORT="
                    f"{env.get('MEDIC_GRPC_PORT')} but declares grpc port {ports.get('grpc')}"
                )
        ingresses = {i["metadata"]["name"]: i for i in _by_kind(docs, "Ingress")}
        agents = [i for i in ingresses.values() if i["metadata"]["name"].endswith("-agents")]
        if label.startswith("default"):
            if agents:
                problems.append(f"{label}: the agents' Ingress is on without a host")
            continue
        if len(agents) != 1 or len(ingresses) != 2:
            problems.append(f"{label}: not the HTTP and the agents' Ingress: {sorted(ingresses)}")
            continue
        agent = agents[0]
        (http,) = [i for i in ingresses.values() if i is not agent]
        ann = agent["metadata"].get("annotations", {})
        http_ann = http["metadata"].get("annotations", {})
        if ann.get(ALB + "backend-protocol-version") != "GRPC":
            problems.append(f"{label}: the agents' Ingress does not speak gRPC to the pods")
        if json.loads(ann.get(ALB + "listen-ports", "[]")) != [{"HTTPS": 443}]:
            listen = ann.get(ALB + "listen-ports")
            problems.append(f"{label}: the agents' ALB listens on {listen}, not HTTPS 443 only")
        cert = ann.get(ALB + "certificate-arn")
        if not cert or cert != http_ann.get(ALB + "certificate-arn"):
            problems.append(
                f"{label}: the agents' certificate {cert!r} is not the HTTP ingress's "
                "(Terraform's ACM certificate names both hosts)"
            )
        host = agent["spec"]["rules"][0]["host"]
        if host == http["spec"]["rules"][0]["host"] or host not in agent["spec"]["tls"][0]["hosts"]:
            problems.append(f"{label}: the agents' host {host!r} is not a TLS host of its own")
        if ann.get(ALB + "group.name"):
            problems.append(f"{label}: the agents' Ingress shares an ALB (group.name)")
        attributes = ann.get(ALB + "load-balancer-attributes", "").split(",")
        attrs = dict(a.split("=", 1) for a in attributes if "=" in a)
        idle = int(attrs.get("idle_timeout.timeout_seconds", "60"))
        silence = agent_silence_seconds(docs)
        if not silence < idle <= 4000:
            problems.append(
                f"{label}: the agents' ALB idle timeout is {idle}s: it must exceed the {silence}s "
                "of silence Medic tolerates (and ALB allows 4000s at most)"
            )
        backend = agent["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]
        services = {s["metadata"]["name"]: s for s in _by_kind(docs, "Service")}
        svc = services.get(backend["name"])
        ports = {p["name"]: p for p in (svc or {}).get("spec", {}).get("ports", [])}
        port = ports.get(backend["port"].get("name"))
        if svc is None or port is None:
            problems.append(f"{label}: the agents' Ingress routes to no Service port ({backend})")
            continue
        targets = [d for d in deps if selects(_selector_of(svc), pod_labels(d))]
        for dep in targets:
            if container_ports(dep).get(str(port["targetPort"])) != int(
                server_env(dep).get("MEDIC_GRPC_PORT") or 0
            ):
                problems.append(
                    f"{label}: Service port {port['name']} -> {port['targetPort']} is not "
                    f"{dep['metadata']['name']}'s MEDIC_GRPC_PORT"
                )
        cidrs = _cidrs_allowed(docs, targets, port["targetPort"])
        # The ALB's CIDRs: those the serving pods admit on their HTTP port.
        wanted = _cidrs_allowed(docs, targets, "http")
        if not wanted or not wanted <= cidrs:
            problems.append(
                f"{label}: the NetworkPolicy lets {sorted(cidrs)} reach the gRPC port, "
                f"not the ALB's {sorted(wanted)}"
            )
        for dep in deps:
            if dep in targets:
                continue
            if _cidrs_allowed(docs, [dep], "http") & wanted:
                problems.append(f"{label}: the ALB may reach worker {dep['metadata']['name']}")
    return problems


def _cidrs_allowed(docs: list[dict[str, Any]], deps: list[dict[str, Any]], port: Any) -> set[str]:
    """ipBlock CIDRs every one of ``deps`` admits on ``port`` (by name or number)."""
    allowed: set[str] | None = None
    for dep in deps:
        numbers = {str(port), str(container_ports(dep).get(str(port), port))}
        mine: set[str] = set()
        for np in _by_kind(docs, "NetworkPolicy"):
            if not selects(_selector_of(np), pod_labels(dep)):
                continue
            for rule in np["spec"].get("ingress", []):
                rule_ports = {str(p.get("port")) for p in rule.get("ports", [])}
                if rule_ports & numbers:
                    mine |= {f["ipBlock"]["cidr"] for f in rule.get("from", []) if "ipBlock" in f}
        allowed = mine if allowed is None else allowed & mine
    return allowed or set()


# -- autoscalers ------------------------------------------------------------------------------


def check_autoscalers(root: Path) -> list[str]:
    """Each HorizontalPodAutoscaler or KEDA ScaledObject scales an existing Deployment that has
    CPU requests and no fixed replica count; no Deployment has two autoscalers; a Deployment
    without one has its replicas. The chart refuses HPA and KEDA on for the same role."""
    problems = []
    for label, docs, error in renderings(root):
        if error:
            problems.append(f"helm template ({label}) failed: {error}")
            continue
        deps = {d["metadata"]["name"]: d for d in _by_kind(docs, "Deployment")}
        scaled: dict[str, list[str]] = {}
        for doc in _by_kind(docs, "HorizontalPodAutoscaler") + _by_kind(docs, "ScaledObject"):
            target = doc["spec"]["scaleTargetRef"]
            ident = f"{doc['kind']} {doc['metadata']['name']}"
            if target.get("kind") != "Deployment" or target.get("name") not in deps:
                problems.append(f"{label}: {ident} scales {target}, not a Deployment of the chart")
                continue
            scaled.setdefault(target["name"], []).append(ident)
        for name, dep in deps.items():
            autoscalers = scaled.get(name, [])
            if len(autoscalers) > 1:
                problems.append(f"{label}: {name} has two autoscalers: {autoscalers}")
            if autoscalers and "replicas" in dep["spec"]:
                problems.append(f"{label}: {name} is autoscaled but fixes replicas")
            if not autoscalers and "replicas" not in dep["spec"]:
                problems.append(f"{label}: {name} has neither replicas nor an autoscaler")
            requests = dep["spec"]["template"]["spec"]["containers"][0].get("resources", {})
            if autoscalers and not requests.get("requests", {}).get("cpu"):
                problems.append(f"{label}: {name} scales on CPU but requests none")
    for key, extra in (
        ("autoscaling", []),
        ("roles.worker.autoscaling", ["--set", "roles.mode=split"]),
    ):
        docs, error = render(
            root,
            "prod",
            [*extra, "--set", f"{key}.enabled=true", "--set", f"{key}.keda.enabled=true"],
        )
        if "choose one" not in error:
            problems.append(
                f"{key}.enabled and {key}.keda.enabled both on: the chart rendered "
                f"{len(docs)} documents instead of refusing"
            )
    return problems


def copy_chart(root: Path, dest: Path) -> Path:
    """A copy of what the chart checks read: the chart, the local CRD schemas, and the
    Prometheus rules' unit tests."""
    shutil.copytree(chart(root), dest / "infra" / "helm" / "medic")
    shutil.copytree(root / "tests" / "infra" / "schemas", dest / "tests" / "infra" / "schemas")
    shutil.copytree(root / "infra" / "prometheus", dest / "infra" / "prometheus")
    return dest
