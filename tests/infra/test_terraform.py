"""Terraform in infra/terraform, checked offline (no providers): HCL parse, references, unused
variables, pinned providers, thin environments, nothing hard-coded, checkov; each check is shown
to catch its defect in a temporary copy."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from infracheck import terraform as t
from infracheck.tools import ROOT

CHECKS = [
    t.check_parse,
    t.check_references,
    t.check_unused_variables,
    t.check_providers_pinned,
    t.check_no_ingress_certificate_arn,
    t.check_nothing_hard_coded,
    t.check_thin_environments,
    t.check_prod_resilience,
    t.check_elasticache_tls_and_auth,
    t.check_helm_values,
    t.check_checkov,
]


@pytest.mark.parametrize("check", CHECKS, ids=lambda c: c.__name__)
def test_check_passes_on_the_terraform_code(check: Callable[[Path], list[str]]) -> None:
    assert check(ROOT) == []


ENV_MAIN = "environments/dev/main.tf"
ENV_VARS = "environments/dev/variables.tf"
MEDIC_ENV = "modules/medic-environment/main.tf"

DEFECTS = [
    (t.check_parse, ENV_MAIN, 'module "medic" {', 'module "medic" {{'),
    # Finding 1.2: the dead certificate variable of PR #10, declared in an environment.
    (
        t.check_no_ingress_certificate_arn,
        ENV_VARS,
        'variable "host" {',
        'variable "ingress_certificate_arn" {\n  type = string\n}\n\nvariable "host" {',
    ),
    (
        t.check_unused_variables,
        ENV_VARS,
        'variable "host" {',
        'variable "ingress_certificate_arn" {\n  type = string\n}\n\nvariable "host" {',
    ),
    # References that do not resolve.
    (t.check_references, ENV_MAIN, "= var.host", "= var.hostname"),
    (t.check_references, MEDIC_ENV, "module.acm.certificate_arn", "module.acm.certificate"),
    (t.check_references, MEDIC_ENV, "local.eks_sg_id]", "local.eks_security_group]"),
    (t.check_references, MEDIC_ENV, "aws_iam_role.pods.arn", "aws_iam_role.pod.arn"),
    (t.check_references, MEDIC_ENV, "data.aws_vpc.cluster.", "data.aws_vpc.this."),
    # A module input the called module does not declare, and a required one not passed.
    (t.check_references, ENV_MAIN, "  host  ", "  hosts  "),
    (t.check_references, MEDIC_ENV, "  domain_name               = var.host\n", "\n"),
    # Providers: an unpinned one.
    (
        t.check_providers_pinned,
        "modules/rds/versions.tf",
        '      version = ">= 3.6.0, < 4.0.0"\n',
        "",
    ),
    # dev no longer passes what prod passes (or passes it from a resource of its own).
    (t.check_thin_environments, ENV_MAIN, "  tags                          = var.tags\n", ""),
    (
        t.check_thin_environments,
        ENV_MAIN,
        'module "medic" {',
        'resource "aws_s3_bucket" "extra" {\n  bucket = var.host\n}\n\nmodule "medic" {',
    ),
    (t.check_thin_environments, ENV_MAIN, '= "dev"', '= "prod"'),
    (t.check_thin_environments, "environments/dev/terraform.tfvars.example", "host ", "hostx "),
    # Hard-coded account, region, ARN and host.
    (
        t.check_nothing_hard_coded,
        MEDIC_ENV,
        "${data.aws_caller_identity.current.account_id}",
        "123456789012",
    ),
    (t.check_nothing_hard_coded, "environments/dev/providers.tf", "var.aws_region", '"us-east-1"'),
    (
        t.check_nothing_hard_coded,
        "modules/rds/main.tf",
        "arn:${data.aws_partition.current.partition}:",
        "arn:aws:",
    ),
    (
        t.check_nothing_hard_coded,
        MEDIC_ENV,
        "      host           = var.host",
        '      host = "medic.example.org"',
    ),
    # What dev may do, prod may not.
    (
        t.check_prod_resilience,
        "environments/prod/variables.tf",
        "default     = true",
        "default     = false",
    ),
    # ElastiCache without TLS or without AUTH.
    (
        t.check_elasticache_tls_and_auth,
        "modules/elasticache/main.tf",
        "transit_encryption_enabled = true",
        "transit_encryption_enabled = false",
    ),
    (
        t.check_elasticache_tls_and_auth,
        "modules/elasticache/main.tf",
        "  auth_token                 = random_password.auth.result\n",
        "",
    ),
    # checkov: no TLS in transit, a public database, an undocumented skip, a file it cannot parse.
    (
        t.check_checkov,
        "modules/elasticache/main.tf",
        "transit_encryption_enabled = true",
        "transit_encryption_enabled = false",
    ),
    (
        t.check_checkov,
        "modules/rds/main.tf",
        "publicly_accessible    = false",
        "publicly_accessible    = true",
    ),
    (
        t.check_checkov,
        "modules/ecr/main.tf",
        "#checkov:skip=CKV_AWS_51:tags must be mutable",
        "#checkov:skip=CKV_AWS_51:\n  #tags must be mutable",
    ),
    (
        t.check_checkov,
        "modules/acm/main.tf",
        'resource "aws_acm_certificate" "this" {',
        'resource "aws_acm_certificate" "this" {{',
    ),
    # The Helm values: a key missing, the certificate from anywhere but the ACM module.
    (t.check_helm_values, MEDIC_ENV, "    networkPolicy = {", "    netpol = {"),
    (
        t.check_helm_values,
        MEDIC_ENV,
        "certificateArn = module.acm.certificate_arn",
        'certificateArn = module.acm.certificate_arn == "" ? null : module.acm.certificate_arn',
    ),
    (t.check_helm_values, MEDIC_ENV, 'type        = "String"', 'type        = "SecureString"'),
    # The agents' host published, but not a name of the certificate both ingresses use.
    (t.check_helm_values, MEDIC_ENV, "  subject_alternative_names = [var.agents_host]\n", ""),
    # prod no longer passes the agents' host (dev still does).
    (
        t.check_thin_environments,
        "environments/prod/main.tf",
        "  agents_host                   = var.agents_host\n",
        "",
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
    copy = t.copy_tree(ROOT, tmp_path)
    path = t.tf_root(copy) / file
    text = path.read_text()
    assert old in text, f"the defect's anchor {old!r} is no longer in {file}"
    path.write_text(text.replace(old, new, 1))
    assert check(copy) != []


def test_a_module_that_is_not_there_is_reported(tmp_path: Path) -> None:
    copy = t.copy_tree(ROOT, tmp_path)
    path = t.tf_root(copy) / MEDIC_ENV
    path.write_text(path.read_text().replace('source = "../acm"', 'source = "../certificate"'))
    assert any("no module at" in p for p in t.check_references(copy))


def test_checkov_parsing_errors_fail_although_checkov_exits_0(tmp_path: Path) -> None:
    copy = t.copy_tree(ROOT, tmp_path)
    (t.tf_root(copy) / "modules" / "acm" / "broken.tf").write_text('resource "aws_x" "y" {\n')
    problems = t.check_checkov(copy)
    assert any("could not parse" in p for p in problems), problems
