output "helm_values_parameter" {
  description = "SSM parameter cd-eks.yml reads the Helm values from."
  value       = aws_ssm_parameter.helm_values.name
}

output "certificate_arn" {
  description = "ACM certificate of the ingress."
  value       = module.acm.certificate_arn
}

output "pods_role_arn" {
  description = "IRSA role of the pods."
  value       = aws_iam_role.pods.arn
}

output "deploy_role_arn" {
  description = "GitHub environment variable AWS_DEPLOY_ROLE_ARN."
  value       = aws_iam_role.deploy.arn
}

output "database_address" {
  description = "RDS host name."
  value       = module.rds.address
}

output "redis_endpoint" {
  description = "ElastiCache primary host name."
  value       = module.elasticache.primary_endpoint
}

output "secret_names" {
  description = "Secrets Manager names the Helm chart reads."
  value       = [module.secrets.app_secrets_name, module.secrets.database_secret_name]
}
