# The two Secrets Manager secrets the Helm chart's ExternalSecret reads (values.yaml
# externalSecret.*): medic/<env>/app-secrets, a JSON object of MEDIC_* secret settings, and
# medic/<env>/rds-credentials, the RDS credentials in the RDS-managed format.

locals {
  app_secrets_name      = "medic/${var.environment}/app-secrets"
  database_secrets_name = "medic/${var.environment}/rds-credentials"
}

resource "aws_secretsmanager_secret" "app" {
  #checkov:skip=CKV2_AWS_57:rotation needs a Lambda per key type; the Redis AUTH token and Slack tokens are rotated by re-applying Terraform (docs/deployment.md)
  name                    = local.app_secrets_name
  description             = "Medic ${var.environment}: MEDIC_* secret settings (every key becomes an environment variable of the pods)"
  kms_key_id              = var.kms_key_arn
  recovery_window_in_days = var.recovery_window_in_days
  tags                    = var.tags
}

resource "aws_secretsmanager_secret_version" "app" {
  secret_id = aws_secretsmanager_secret.app.id
  secret_string = jsonencode(merge(var.app_secrets, {
    MEDIC_REDIS_URL = var.redis_url
  }))
}

resource "aws_secretsmanager_secret" "database" {
  #checkov:skip=CKV2_AWS_57:the password is Terraform's random_password; rotating it outside Terraform would leave the RDS master password and this secret out of step
  name                    = local.database_secrets_name
  description             = "Medic ${var.environment}: RDS credentials (becomes MEDIC_DATABASE_URL)"
  kms_key_id              = var.kms_key_arn
  recovery_window_in_days = var.recovery_window_in_days
  tags                    = var.tags
}

resource "aws_secretsmanager_secret_version" "database" {
  secret_id = aws_secretsmanager_secret.database.id
  secret_string = jsonencode({
    engine   = "postgres"
    username = var.database.username
    password = var.database.password
    host     = var.database.host
    port     = var.database.port
    dbname   = var.database.dbname
  })
}
