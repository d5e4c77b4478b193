output "helm_values_parameter" {
  description = "SSM parameter cd-eks.yml reads (/medic/<env>/helm-values)."
  value       = module.medic.helm_values_parameter
}

output "deploy_role_arn" {
  description = "Set as GitHub environment variable AWS_DEPLOY_ROLE_ARN."
  value       = module.medic.deploy_role_arn
}

output "pods_role_arn" {
  description = "IRSA role of the pods."
  value       = module.medic.pods_role_arn
}

output "certificate_arn" {
  description = "ACM certificate of the ingress."
  value       = module.medic.certificate_arn
}

output "database_address" {
  description = "RDS host name."
  value       = module.medic.database_address
}

output "redis_endpoint" {
  description = "ElastiCache primary host name."
  value       = module.medic.redis_endpoint
}

output "secret_names" {
  description = "Secrets Manager names the Helm chart reads."
  value       = module.medic.secret_names
}
