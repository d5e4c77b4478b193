variable "aws_account_id" {
  description = "AWS account of this environment (the provider refuses any other)."
  type        = string
}

variable "aws_region" {
  description = "AWS region of this environment."
  type        = string
}

variable "eks_cluster_name" {
  description = "Existing EKS cluster Medic runs in."
  type        = string
}

variable "private_subnet_ids" {
  description = "Private subnets (two zones or more) for RDS and ElastiCache."
  type        = list(string)
}

variable "host" {
  description = "Host name of Medic in this environment."
  type        = string
}

variable "agents_host" {
  description = "Host name agents connect to (gRPC), e.g. agents.<host>; in the zone of host."
  type        = string
}

variable "route53_zone_id" {
  description = "Route 53 hosted zone of host."
  type        = string
}

variable "image_repository_url" {
  description = "ECR repository URI (output repository_url of infra/terraform/shared)."
  type        = string
}

variable "github_repository" {
  description = "owner/name of the GitHub repository that deploys."
  type        = string
}

variable "github_oidc_url" {
  description = "Issuer URL of GitHub's OIDC provider."
  type        = string
  default     = "https://token.actions.githubusercontent.com"
}

variable "deployer_kubernetes_group" {
  description = "Kubernetes group the deploy role is mapped to."
  type        = string
  default     = "medic-deployers"
}

variable "kubernetes_namespace" {
  description = "Namespace of the Helm release."
  type        = string
  default     = "medic"
}

variable "service_account_name" {
  description = "Service account of the pods (the Helm release name)."
  type        = string
  default     = "medic"
}

variable "app_secrets" {
  description = "MEDIC_* secret settings besides MEDIC_REDIS_URL; set with TF_VAR_app_secrets, not in a file."
  type        = map(string)
  sensitive   = true
  default     = {}
}

variable "postgres_engine_version" {
  description = "PostgreSQL version."
  type        = string
  default     = "16.4"
}

variable "db_instance_class" {
  description = "RDS instance class."
  type        = string
  default     = "db.t4g.medium"
}

variable "db_allocated_storage" {
  description = "RDS storage in GiB."
  type        = number
  default     = 50
}

variable "db_max_allocated_storage" {
  description = "RDS storage autoscaling ceiling in GiB."
  type        = number
  default     = 500
}

variable "db_multi_az" {
  description = "RDS standby in a second zone."
  type        = bool
  default     = true
}

variable "db_deletion_protection" {
  description = "RDS refuses deletion."
  type        = bool
  default     = true
}

variable "db_backup_retention_days" {
  description = "Days RDS backups are kept."
  type        = number
  default     = 14
}

variable "redis_engine_version" {
  description = "Redis version."
  type        = string
  default     = "7.1"
}

variable "redis_node_type" {
  description = "ElastiCache node type."
  type        = string
  default     = "cache.t4g.small"
}

variable "redis_num_cache_clusters" {
  description = "ElastiCache nodes (2 or more: failover)."
  type        = number
  default     = 2
}

variable "redis_snapshot_retention_days" {
  description = "Days ElastiCache snapshots are kept."
  type        = number
  default     = 7
}

variable "secret_recovery_window_days" {
  description = "Days a deleted secret can be restored (0: at once)."
  type        = number
  default     = 30
}

variable "tags" {
  description = "Tags for every resource (also the provider's default tags)."
  type        = map(string)
  default     = {}
}
