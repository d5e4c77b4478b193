output "app_secrets_name" {
  description = "medic/<env>/app-secrets (Helm externalSecret.appSecretsName)."
  value       = aws_secretsmanager_secret.app.name
}

output "database_secret_name" {
  description = "medic/<env>/rds-credentials (Helm externalSecret.databaseSecretName)."
  value       = aws_secretsmanager_secret.database.name
}

output "secret_arns" {
  description = "ARNs of both secrets."
  value       = [aws_secretsmanager_secret.app.arn, aws_secretsmanager_secret.database.arn]
}
