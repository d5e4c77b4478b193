"""Static checks of the Terraform code in infra/terraform (no providers offline).

`terraform validate` and `plan` need the providers, which cannot be downloaded here, so every
``.tf`` file is parsed with python-hcl2 and checked by the functions below: references
(``var.``, ``local.``, ``module.M.output``, resources and data sources) resolve, module inputs
are variables of the called module and every required one is passed, no variable is unused,
providers are pinned, dev and prod are thin wrappers passing the same inputs, nothing
account-specific is hard-coded, and the Helm values Terraform publishes match what the chart
expects. checkov scans the whole tree (modules resolved through the environments).

The parsed form: python-hcl2 keeps string literals quoted (``'"dev"'``), block labels quoted,
and expressions as ``'${...}'``; ``_clean`` removes the quotes from labels and keys and drops
its ``__is_block__``/``__comments__`` markers, and leaves values as they are.
"""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .tools import import_or_fail, require, run

ENVIRONMENTS = ("dev", "prod")
ENV_MODULE = "medic-environment"
MODULE_META = {"source", "version", "providers", "count", "for_each", "depends_on"}
# Provider of a resource type: its prefix (aws_db_instance -> aws).
PROVIDER_OF = re.compile(r"^([a-z0-9]+)_")

REF_VAR = re.compile(r"\bvar\.(\w+)")
REF_LOCAL = re.compile(r"\blocal\.(\w+)")
REF_MODULE = re.compile(r"\bmodule\.([\w-]+)\.(\w+)")
REF_DATA = re.compile(r"\bdata\.(\w+)\.(\w+)")
# A resource reference: type.name not preceded by a word character or a dot (data.x.y, a.b.c).
REF_RESOURCE = re.compile(r"(?<![\w.])((?:aws|random)_\w+)\.(\w+)")

HARD_CODED = {
    "a 12-digit AWS account id": re.compile(r"(?<![\w-])\d{12}(?![\w-])"),
    "an AWS region": re.compile(
        r"\b(?:us|eu|ap|sa|ca|me|af|il|mx)-(?:gov-)?(?:north|south|east|west|central"
        r"|northeast|northwest|southeast|southwest)-\d\b"
    ),
    "an ARN literal (build ARNs from data.aws_partition/aws_caller_identity)": re.compile(
        r"\barn:aws[\w-]*:"
    ),
    # A host name (AWS service principals, *.amazonaws.com, are not hosts of ours: see AWS_HOST).
    "a host name": re.compile(r"\b(?:[a-z0-9-]+\.)+(?:com|org|net|io|dev|cloud)\b"),
}


AWS_HOST = re.compile(r"(?:^|\.)amazonaws\.com$")


def tf_root(root: Path) -> Path:
    return root / "infra" / "terraform"


def copy_tree(root: Path, dest: Path) -> Path:
    """A copy of what the checks read: infra/terraform, the Helm chart, the fixtures."""
    shutil.copytree(tf_root(root), tf_root(dest))
    shutil.copytree(root / "infra" / "helm", dest / "infra" / "helm")
    shutil.copytree(root / "tests" / "infra" / "fixtures", dest / "tests" / "infra" / "fixtures")
    return dest


def _unquote(value: Any) -> Any:
    if isinstance(value, str) and len(value) >= 2 and value[0] == value[-1] == '"':
        return value[1:-1]
    return value


def _clean(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {
            _unquote(k): _clean(v)
            for k, v in obj.items()
            if k not in ("__is_block__", "__comments__")
        }
    if isinstance(obj, list):
        return [_clean(v) for v in obj]
    return obj


def strings(obj: Any, skip_defaults: bool = False) -> Iterator[str]:
    """Every string (values and keys) in a parsed block."""
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield k
            if skip_defaults and k == "default":
                continue
            yield from strings(v, skip_defaults)
    elif isinstance(obj, list):
        for v in obj:
            yield from strings(v, skip_defaults)
    elif isinstance(obj, str):
        yield obj


def literal(value: Any) -> str | None:
    """The text of a string literal ('"dev"'), None for an expression."""
    if isinstance(value, str) and value.startswith('"') and value.endswith('"'):
        inner = value[1:-1]
        return None if "${" in inner else inner
    return None


@dataclass
class Module:
    """One directory of .tf files (a module or a root module)."""

    path: Path
    variables: dict[str, dict[str, Any]] = field(default_factory=dict)
    locals: dict[str, Any] = field(default_factory=dict)
    outputs: dict[str, dict[str, Any]] = field(default_factory=dict)
    modules: dict[str, dict[str, Any]] = field(default_factory=dict)
    resources: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    data: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    terraform: list[dict[str, Any]] = field(default_factory=list)
    providers: list[str] = field(default_factory=list)
    # Everything except variable blocks' own text, for the references it makes.
    blocks: list[Any] = field(default_factory=list)

    def text(self) -> str:
        return "\n".join(strings(self.blocks)) + "\n" + "\n".join(strings(self.variables))

    def module_dir(self, name: str) -> Path:
        source = _unquote(self.modules[name].get("source", ""))
        return (self.path / source).resolve()


def parse(root: Path) -> tuple[dict[Path, Module], list[str]]:
    """Every directory holding .tf files, parsed; and the files that do not parse."""
    hcl2 = import_or_fail("hcl2", "python-hcl2")
    modules: dict[Path, Module] = {}
    problems = []
    for tf in sorted(tf_root(root).rglob("*.tf")):
        if ".terraform" in tf.parts:
            continue
        try:
            doc = _clean(hcl2.loads(tf.read_text()))
        except Exception as exc:  # python-hcl2 raises lark's errors and others
            problems.append(f"{tf.relative_to(root)}: does not parse: {str(exc)[:300]}")
            continue
        mod = modules.setdefault(tf.parent.resolve(), Module(tf.parent.resolve()))
        for block in doc.get("variable", []):
            mod.variables.update(block)
        for block in doc.get("locals", []):
            mod.locals.update(block)
            mod.blocks.append(block)
        for block in doc.get("output", []):
            mod.outputs.update(block)
            mod.blocks.append(block)
        for block in doc.get("module", []):
            mod.modules.update(block)
            mod.blocks.append(block)
        for kind, target in (("resource", mod.resources), ("data", mod.data)):
            for block in doc.get(kind, []):
                for rtype, named in block.items():
                    for name, body in named.items():
                        target[(rtype, name)] = body
                        mod.blocks.append(body)
        for block in doc.get("provider", []):
            mod.providers.extend(block)
            mod.blocks.append(block)
        mod.terraform.extend(doc.get("terraform", []))
    return modules, problems


def _rel(root: Path, path: Path) -> str:
    try:
        return str(path.relative_to(tf_root(root).resolve()))
    except ValueError:
        return str(path)


def check_parse(root: Path) -> list[str]:
    modules, problems = parse(root)
    if not modules:
        problems.append("no .tf files under infra/terraform")
    return problems


def check_references(root: Path) -> list[str]:
    """Every var., local., module.M.output, data. and resource reference exists; every module
    input is a variable of the called module and every variable without default is passed."""
    modules, problems = parse(root)
    for mod in modules.values():
        where = _rel(root, mod.path)
        text = mod.text()
        for name in sorted(set(REF_VAR.findall(text)) - set(mod.variables)):
            problems.append(f"{where}: var.{name} is not declared")
        for name in sorted(set(REF_LOCAL.findall(text)) - set(mod.locals)):
            problems.append(f"{where}: local.{name} is not defined")
        for ref in sorted(set(REF_DATA.findall(text)) - set(mod.data)):
            problems.append(f"{where}: data.{ref[0]}.{ref[1]} is not declared")
        for ref in sorted(set(REF_RESOURCE.findall(text)) - set(mod.resources)):
            problems.append(f"{where}: {ref[0]}.{ref[1]} is not declared")
        for name, output in sorted(set(REF_MODULE.findall(text))):
            if name not in mod.modules:
                problems.append(f"{where}: module.{name} is not declared")
                continue
            called = modules.get(mod.module_dir(name))
            if called is not None and output not in called.outputs:
                problems.append(f"{where}: module.{name} has no output {output!r}")
        for name, block in mod.modules.items():
            called = modules.get(mod.module_dir(name))
            if called is None:
                problems.append(f"{where}: module {name}: no module at {block.get('source')}")
                continue
            inputs = set(block) - MODULE_META
            for extra in sorted(inputs - set(called.variables)):
                problems.append(f"{where}: module {name} passes {extra!r}, not a variable of it")
            required = {v for v, body in called.variables.items() if "default" not in body}
            for missing in sorted(required - inputs):
                problems.append(f"{where}: module {name} does not pass required {missing!r}")
    return problems


def check_unused_variables(root: Path) -> list[str]:
    modules, problems = parse(root)
    for mod in modules.values():
        used = set(REF_VAR.findall(mod.text()))
        for name in sorted(set(mod.variables) - used):
            problems.append(f"{_rel(root, mod.path)}: variable {name!r} is declared but unused")
    return problems


def check_providers_pinned(root: Path) -> list[str]:
    """Each directory pins terraform and every provider its resources and data sources use."""
    modules, problems = parse(root)
    for mod in modules.values():
        where = _rel(root, mod.path)
        required: dict[str, Any] = {}
        version = None
        for block in mod.terraform:
            version = version or block.get("required_version")
            for providers in block.get("required_providers", []):
                required.update(providers)
        if not version:
            problems.append(f"{where}: no required_version")
        used = {PROVIDER_OF.match(t).group(1) for t, _ in [*mod.resources, *mod.data]}  # type: ignore[union-attr]
        for provider in sorted(used):
            spec = required.get(provider)
            if not isinstance(spec, dict) or not spec.get("version") or not spec.get("source"):
                problems.append(f"{where}: provider {provider!r} has no source and version pin")
    return problems


def check_no_ingress_certificate_arn(root: Path) -> list[str]:
    """Finding 1.2: the certificate comes from the ACM module, never from a variable."""
    return [
        f"{path.relative_to(root)}: mentions ingress_certificate_arn (finding 1.2)"
        for path in sorted(tf_root(root).rglob("*"))
        if path.is_file() and "ingress_certificate_arn" in path.read_text().lower()
    ]


def check_nothing_hard_coded(root: Path) -> list[str]:
    """Account ids, regions, ARNs and hosts are variables: none in .tf files except as variable
    defaults (examples live in *.example files, which are not read here)."""
    modules, problems = parse(root)
    for mod in modules.values():
        texts = [*strings(mod.blocks), *strings(mod.variables, skip_defaults=True)]
        for text in texts:
            for what, pattern in HARD_CODED.items():
                for match in pattern.finditer(text):
                    if AWS_HOST.search(match.group(0)):
                        continue
                    problems.append(
                        f"{_rel(root, mod.path)}: {what} is hard-coded: {match.group(0)!r}"
                    )
    return problems


def _environment(modules: dict[Path, Module], root: Path, env: str) -> Module | None:
    return modules.get((tf_root(root) / "environments" / env).resolve())


def check_thin_environments(root: Path) -> list[str]:
    """Finding 1.4: environments/dev and prod only call medic-environment, with the same set of
    inputs (only values differ), and their examples name every variable they need."""
    modules, problems = parse(root)
    hcl2 = import_or_fail("hcl2", "python-hcl2")
    env_module = (tf_root(root) / "modules" / ENV_MODULE).resolve()
    inputs: dict[str, set[str]] = {}
    for env in ENVIRONMENTS:
        mod = _environment(modules, root, env)
        if mod is None:
            problems.append(f"environments/{env}: missing")
            continue
        if mod.resources or mod.data:
            found = sorted(f"{t}.{n}" for t, n in [*mod.resources, *mod.data])
            problems.append(f"environments/{env}: declares {found}; only medic-environment may")
        calls = [n for n in mod.modules if mod.module_dir(n) == env_module]
        if len(mod.modules) != 1 or len(calls) != 1:
            problems.append(f"environments/{env}: must call {ENV_MODULE} once and nothing else")
            continue
        block = mod.modules[calls[0]]
        inputs[env] = set(block) - MODULE_META
        if literal(block.get("environment")) != env:
            problems.append(f"environments/{env}: passes environment={block.get('environment')}")
        example = mod.path / "terraform.tfvars.example"
        if not example.exists():
            problems.append(f"environments/{env}: no terraform.tfvars.example")
            continue
        values = _clean(hcl2.loads(example.read_text()))
        for name in sorted(set(values) - set(mod.variables)):
            problems.append(f"environments/{env}/terraform.tfvars.example: {name} is no variable")
        needed = {v for v, body in mod.variables.items() if "default" not in body}
        for name in sorted(needed - set(values)):
            problems.append(f"environments/{env}/terraform.tfvars.example: {name} is missing")
    if len(inputs) == len(ENVIRONMENTS) and inputs["dev"] != inputs["prod"]:
        problems.append(
            f"dev and prod pass different inputs to {ENV_MODULE}: only in dev "
            f"{sorted(inputs['dev'] - inputs['prod'])}, only in prod "
            f"{sorted(inputs['prod'] - inputs['dev'])}"
        )
    return problems


def check_prod_resilience(root: Path) -> list[str]:
    """What the checkov skips for dev's sake (single AZ, no deletion protection, one Redis node)
    must not reach prod: prod's defaults turn them on."""
    modules, problems = parse(root)
    prod = _environment(modules, root, "prod")
    if prod is None:
        return ["environments/prod: missing"]
    want = {"db_multi_az": True, "db_deletion_protection": True}
    for name, value in want.items():
        if prod.variables.get(name, {}).get("default") is not value:
            problems.append(f"environments/prod: {name} must default to {value}")
    nodes = prod.variables.get("redis_num_cache_clusters", {}).get("default")
    if not isinstance(nodes, int) or nodes < 2:
        problems.append("environments/prod: redis_num_cache_clusters must default to 2 or more")
    return problems


def check_elasticache_tls_and_auth(root: Path) -> list[str]:
    modules, problems = parse(root)
    mod = modules.get((tf_root(root) / "modules" / "elasticache").resolve())
    groups = [b for (t, _), b in (mod.resources.items() if mod else []) if t.endswith("group")]
    groups = [b for b in groups if "replication_group_id" in b]
    if not groups:
        return ["modules/elasticache: no aws_elasticache_replication_group"]
    for body in groups:
        if body.get("transit_encryption_enabled") is not True:
            problems.append("modules/elasticache: transit_encryption_enabled is not true")
        if body.get("at_rest_encryption_enabled") is not True:
            problems.append("modules/elasticache: at_rest_encryption_enabled is not true")
        if not body.get("auth_token"):
            problems.append("modules/elasticache: no auth_token (AUTH off)")
    return problems


# --- Evaluating the few string expressions the agreement checks need -------------------------

_INTERP = re.compile(r"\$\{([^{}]+)\}")


class _Inputs(dict[str, str]):
    """A called module's variables, evaluated only when an expression needs one."""

    def __init__(self, compute: Callable[[str], str]) -> None:
        super().__init__()
        self._compute = compute

    def __missing__(self, name: str) -> str:
        self[name] = value = self._compute(name)
        return value


def _value(modules: dict[Path, Module], mod: Module, ref: str, env: Mapping[str, str]) -> str:
    """The string a reference evaluates to: var.X (from env), local.X, module.M.out,
    type.name.attr of a resource whose attribute is a string expression."""
    parts = ref.strip().split(".")
    if parts[0] == "var":
        return env[parts[1]]
    if parts[0] == "local":
        return evaluate(modules, mod, mod.locals[parts[1]], env)
    if parts[0] == "module":
        called = modules[mod.module_dir(parts[1])]
        block = mod.modules[parts[1]]
        inner = _Inputs(lambda name: evaluate(modules, mod, block[name], env))
        return evaluate(modules, called, called.outputs[parts[2]]["value"], inner)
    if len(parts) == 3 and (parts[0], parts[1]) in mod.resources:
        return evaluate(modules, mod, mod.resources[(parts[0], parts[1])][parts[2]], env)
    raise KeyError(ref)


def evaluate(modules: dict[Path, Module], mod: Module, expr: str, env: Mapping[str, str]) -> str:
    """A string template made only of literals and references ``_value`` knows; anything else
    raises KeyError."""
    text = _unquote(expr)
    return _INTERP.sub(lambda m: _value(modules, mod, m.group(1), env), text)


def _key_paths(obj: Any, prefix: str = "") -> set[str]:
    if isinstance(obj, dict):
        paths = set()
        for k, v in obj.items():
            paths |= _key_paths(v, f"{prefix}.{k}" if prefix else str(k))
        return paths
    return {prefix}


def fixtures(root: Path) -> Path:
    return root / "tests" / "infra" / "fixtures"


def check_helm_values(root: Path) -> list[str]:
    """medic-environment publishes /medic/<env>/helm-values as YAML of local.helm_values, with
    the fixtures' keys, the ACM module's certificate (naming both published hosts: the HTTP
    ingress's and the agents'), the secrets module's names."""
    modules, problems = parse(root)
    mod = modules.get((tf_root(root) / "modules" / ENV_MODULE).resolve())
    if mod is None:
        return [f"modules/{ENV_MODULE}: missing"]
    params = [b for (t, _), b in mod.resources.items() if t == "aws_ssm_parameter"]
    published = [p for p in params if "helm-values" in str(p.get("name"))]
    if len(published) != 1:
        return [f"modules/{ENV_MODULE}: no single aws_ssm_parameter for helm-values"]
    param = published[0]
    if _unquote(param.get("name")) != "/medic/${var.environment}/helm-values":
        problems.append(f"helm-values parameter is named {param.get('name')}")
    if param.get("type") != '"String"':
        problems.append(
            "helm-values parameter must be a String: cd-eks.yml reads it without --with-decryption"
        )
    if param.get("value") != "${yamlencode(local.helm_values)}":
        problems.append(
            f"helm-values parameter value is {param.get('value')}, not "
            "yamlencode(local.helm_values)"
        )
    values = mod.locals.get("helm_values", {})
    for env in ENVIRONMENTS:
        fixture = yaml.safe_load((fixtures(root) / f"terraform-helm-values-{env}.yaml").read_text())
        want, have = _key_paths(fixture), _key_paths(values)
        if want != have:
            problems.append(
                f"local.helm_values keys differ from the {env} fixture: missing "
                f"{sorted(want - have)}, extra {sorted(have - want)}"
            )
    ingress = values.get("ingress", {}) if isinstance(values, dict) else {}
    if ingress.get("certificateArn") != "${module.acm.certificate_arn}":
        problems.append(
            f"ingress.certificateArn is {ingress.get('certificateArn')}, not the ACM module's "
            "output module.acm.certificate_arn (finding 1.2)"
        )
    # One certificate serves both ingresses (the chart's agents Ingress reuses
    # ingress.certificateArn): it must name every host the values publish.
    acm = next(
        (b for n, b in mod.modules.items() if mod.module_dir(n).name == "acm"),
        {},
    )
    names = {acm.get("domain_name"), *(acm.get("subject_alternative_names") or [])}
    grpc = values.get("grpc", {}) if isinstance(values, dict) else {}
    for key, host in (
        ("ingress.host", ingress.get("host")),
        ("grpc.ingress.host", (grpc.get("ingress") or {}).get("host")),
    ):
        if host not in names:
            problems.append(
                f"{key} ({host}) is not a name of the ACM certificate (domain_name or "
                f"subject_alternative_names: {sorted(str(n) for n in names)})"
            )
    return problems


def _helm_values(root: Path, env: str) -> dict[str, Any]:
    chart = root / "infra" / "helm" / "medic"
    merged = yaml.safe_load((chart / "values.yaml").read_text())
    merged.update(yaml.safe_load((chart / f"values-{env}.yaml").read_text()))
    return merged


def check_secret_names_agree(root: Path) -> list[str]:
    """For dev and prod: the secrets Terraform creates are exactly the two the Helm chart reads
    (values-<env>.yaml), and the names Terraform publishes in the Helm values are the same."""
    modules, problems = parse(root)
    secrets = modules.get((tf_root(root) / "modules" / "secrets").resolve())
    env_mod = modules.get((tf_root(root) / "modules" / ENV_MODULE).resolve())
    if secrets is None or env_mod is None:
        return ["modules/secrets or modules/medic-environment is missing"]
    calls = [n for n in env_mod.modules if env_mod.module_dir(n) == secrets.path]
    if len(calls) != 1:
        return [f"{ENV_MODULE} must call the secrets module once"]
    for env in ENVIRONMENTS:
        wrapper = _environment(modules, root, env)
        block = next(iter(wrapper.modules.values()), {}) if wrapper else {}
        env_name = literal(block.get("environment"))
        if env_name is None:
            problems.append(f"environments/{env}: environment is not a literal")
            continue
        try:
            inputs = {
                k: evaluate(modules, env_mod, v, {"environment": env_name})
                for k, v in env_mod.modules[calls[0]].items()
                if k == "environment"
            }
            created = {
                evaluate(modules, secrets, body["name"], inputs)
                for (t, _), body in secrets.resources.items()
                if t == "aws_secretsmanager_secret"
            }
            es = env_mod.locals["helm_values"]["externalSecret"]
            published = {
                k: evaluate(modules, env_mod, v, {"environment": env_name}) for k, v in es.items()
            }
        except KeyError as exc:
            problems.append(f"{env}: cannot evaluate a secret name (no value for {exc})")
            continue
        helm = _helm_values(root, env)["externalSecret"]
        read = {k: helm[k] for k in ("appSecretsName", "databaseSecretName")}
        if created != set(read.values()):
            problems.append(
                f"{env}: Terraform creates {sorted(created)}, Helm reads {sorted(read.values())}"
            )
        if published != read:
            problems.append(f"{env}: Terraform publishes {published}, values-{env}.yaml has {read}")
        fixture = yaml.safe_load((fixtures(root) / f"terraform-helm-values-{env}.yaml").read_text())
        if fixture["externalSecret"] != read:
            problems.append(f"{env}: the fixture's externalSecret differs from values-{env}.yaml")
    return problems


def check_medic_names(root: Path, settings: set[str]) -> list[str]:
    """Every MEDIC_* name in infra/terraform (the keys written to app-secrets, the examples) is a
    Medic setting."""
    problems = []
    for path in sorted(tf_root(root).rglob("*")):
        if path.is_file():
            for name in sorted(set(re.findall(r"\bMEDIC_[A-Z0-9_]+", path.read_text()))):
                if name not in settings:
                    problems.append(f"{path.relative_to(root)}: {name} is not a Medic setting")
    return problems


def database_secret_keys(root: Path) -> set[str]:
    """The keys Terraform writes into medic/<env>/rds-credentials."""
    modules, _ = parse(root)
    secrets = modules[(tf_root(root) / "modules" / "secrets").resolve()]
    body = secrets.resources[("aws_secretsmanager_secret_version", "database")]
    return set(re.findall(r"\b(\w+)\s*=", body["secret_string"]))


SKIP = re.compile(r"#\s*checkov:skip=([A-Z0-9_]+)(?::(.*))?")


def check_checkov(root: Path) -> list[str]:
    """checkov over infra/terraform (modules resolved through the environments and shared):
    nothing fails, nothing fails to parse, and every inline skip gives its reason."""
    checkov = require("checkov")
    problems = []
    for tf in sorted(tf_root(root).rglob("*.tf")):
        for check_id, reason in SKIP.findall(tf.read_text()):
            if len(reason.strip()) < 20:
                problems.append(f"{tf.relative_to(root)}: checkov skip {check_id} has no reason")
    scan = run(
        [
            checkov,
            "-d",
            str(tf_root(root)),
            "--framework",
            "terraform",
            "--skip-download",
            "--quiet",
            "-o",
            "json",
        ],
        timeout=300,
    )
    try:
        report = json.loads(scan.stdout)
    except json.JSONDecodeError:
        return [
            *problems,
            f"checkov printed no JSON report: {scan.stdout[-500:]} {scan.stderr[-500:]}",
        ]
    reports = report if isinstance(report, list) else [report]
    if not reports:
        problems.append("checkov reported nothing")
    for rep in reports:
        summary = rep.get("summary", {})
        if summary.get("parsing_errors"):
            problems.append(f"checkov could not parse: {rep['results'].get('parsing_errors')}")
        if not summary.get("passed") and not summary.get("failed"):
            problems.append("checkov checked nothing")
        for c in rep.get("results", {}).get("failed_checks", []):
            problems.append(
                f"checkov {c['check_id']} {c['check_name']}: {c['resource']} ({c['file_path']})"
            )
    return problems


def check_externalsecrets(root: Path) -> list[str]:
    """In the chart rendered with default, dev and prod values, the keys the ExternalSecrets
    template into MEDIC_* variables are Medic settings, and every property read from
    rds-credentials is one Terraform writes."""
    from . import helm_chart

    problems = []
    db_keys = database_secret_keys(root)
    for value_set in helm_chart.VALUE_SETS:
        docs, error = helm_chart.render(root, value_set)
        if error:
            problems.append(f"{value_set}: helm template failed: {error}")
            continue
        secrets = [d for d in docs if d.get("kind") == "ExternalSecret"]
        if len(secrets) != 2:
            problems.append(f"{value_set}: {len(secrets)} ExternalSecrets, expected 2")
        for es in secrets:
            for name in es["spec"]["target"].get("template", {}).get("data", {}):
                if name not in helm_chart.SETTINGS:
                    problems.append(f"{value_set}: {name} is not a Medic setting")
            for prop in sorted({i["remoteRef"]["property"] for i in es["spec"].get("data", [])}):
                if prop not in db_keys:
                    problems.append(
                        f"{value_set}: the chart reads {prop!r} from rds-credentials; "
                        "Terraform does not write it"
                    )
    return problems
