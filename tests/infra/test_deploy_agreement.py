"""The Helm chart, Terraform and Medic's settings agree: Terraform creates exactly the Secrets
Manager names the chart reads for dev and prod and publishes them in the Helm values; the keys
the ExternalSecrets turn into MEDIC_* variables are Medic settings; the RDS secret holds every
property the chart reads. Each check is shown to catch its defect in a temporary copy."""

from __future__ import annotations

from pathlib import Path

from infracheck import helm_chart as h
from infracheck import terraform as t
from infracheck.tools import ROOT


def test_terraform_creates_the_secrets_helm_reads() -> None:
    assert t.check_secret_names_agree(ROOT) == []


def test_medic_names_in_terraform_are_settings() -> None:
    assert t.check_medic_names(ROOT, h.SETTINGS) == []


def test_externalsecrets_map_to_medic_settings_and_terraform_keys() -> None:
    assert t.check_externalsecrets(ROOT) == []


SECRETS = "modules/secrets/main.tf"


def _with_defect(tmp_path: Path, file: str, old: str, new: str) -> Path:
    copy = t.copy_tree(ROOT, tmp_path)
    path = file if file.startswith("infra/") else f"infra/terraform/{file}"
    target = copy / path
    text = target.read_text()
    assert old in text, f"the defect's anchor {old!r} is no longer in {path}"
    target.write_text(text.replace(old, new, 1))
    return copy


def test_a_secret_name_terraform_and_helm_disagree_on_is_caught(tmp_path: Path) -> None:
    # PR #10's "production" for one side only.
    copy = _with_defect(
        tmp_path,
        SECRETS,
        '"medic/${var.environment}/app-secrets"',
        '"medic/${var.environment}uction/app-secrets"',
    )
    assert any("Terraform creates" in p for p in t.check_secret_names_agree(copy))


def test_a_helm_secret_name_terraform_does_not_create_is_caught(tmp_path: Path) -> None:
    copy = _with_defect(
        tmp_path,
        "infra/helm/medic/values-dev.yaml",
        "databaseSecretName: medic/dev/rds-credentials",
        "databaseSecretName: medic/dev/rds",
    )
    assert t.check_secret_names_agree(copy) != []


def test_a_third_secret_terraform_creates_is_caught(tmp_path: Path) -> None:
    copy = _with_defect(
        tmp_path,
        SECRETS,
        'resource "aws_secretsmanager_secret" "database" {',
        'resource "aws_secretsmanager_secret" "extra" {\n'
        '  name = "medic/${var.environment}/extra"\n}\n\n'
        'resource "aws_secretsmanager_secret" "database" {',
    )
    assert t.check_secret_names_agree(copy) != []


def test_published_names_not_from_the_secrets_module_are_caught(tmp_path: Path) -> None:
    copy = _with_defect(
        tmp_path,
        "modules/medic-environment/main.tf",
        "databaseSecretName = module.secrets.database_secret_name",
        'databaseSecretName = "medic/${var.environment}/database"',
    )
    assert any("publishes" in p for p in t.check_secret_names_agree(copy))


def test_a_key_that_is_no_setting_is_caught(tmp_path: Path) -> None:
    copy = _with_defect(
        tmp_path, SECRETS, "MEDIC_REDIS_URL = var.redis_url", "MEDIC_REDIS = var.redis_url"
    )
    assert t.check_medic_names(copy, h.SETTINGS) == [
        "infra/terraform/modules/secrets/main.tf: MEDIC_REDIS is not a Medic setting"
    ]


def test_a_database_property_terraform_does_not_write_is_caught(tmp_path: Path) -> None:
    copy = _with_defect(tmp_path, SECRETS, "    dbname   = var.database.dbname\n", "")
    assert t.check_externalsecrets(copy) == [
        f"{value_set}: the chart reads 'dbname' from rds-credentials; Terraform does not write it"
        for value_set in h.VALUE_SETS
    ]


def test_an_externalsecret_key_that_is_no_setting_is_caught(tmp_path: Path) -> None:
    copy = _with_defect(
        tmp_path,
        "infra/helm/medic/templates/externalsecret.yaml",
        "MEDIC_DATABASE_URL:",
        "MEDIC_DB_URL:",
    )
    assert any("MEDIC_DB_URL is not a Medic setting" in p for p in t.check_externalsecrets(copy))
