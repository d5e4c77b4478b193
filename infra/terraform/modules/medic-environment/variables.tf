variable "environment" {
  description = "dev or prod: names (medic-<env>), secrets (medic/<env>/*), the SSM parameter."
  type        = string

  validation {
    condition     = contains(["dev", "prod"], var.environment)
    error_message = "environment is dev or prod (the Helm chart's values-<env>.yaml)."
  }
}

variable "eks_cluster_name" {
  description = "Existing EKS cluster Medic runs in (its VPC, security group and OIDC issuer are looked up)."
  type        = string
}

variable "private_subnet_ids" {
  description = "Private subnets (at least two zones) for RDS and ElastiCache."
  type        = list(string)
}

variable "host" {
  description = "Host name people and API clients reach Medic at (ingress host and certificate)."
  type        = string
}

variable "agents_host" {
  description = "Host name agents reach Medic's gRPC endpoint at (its own ALB; a second name of the certificate; must differ from host)."
  type        = string
}

variable "route53_zone_id" {
  description = "Route 53 hosted zone of host (certificate validation)."
  type        = string
}

variable "image_repository_url" {
  description = "ECR repository URI the image is deployed from (output of infra/terraform/shared)."
  type        = string
}

variable "github_repository" {
  description = "owner/name of the GitHub repository whose cd-eks.yml may assume the deploy role."
  type        = string
}

variable "github_oidc_url" {
  description = "Issuer URL of GitHub's OIDC provider, registered once per AWS account."
  type        = string
}

variable "deployer_kubernetes_group" {
  description = "Kubernetes group the deploy role is mapped to (bind it to deploy rights in the namespace)."
  type        = string
}

variable "kubernetes_namespace" {
  description = "Namespace of the Helm release."
  type        = string
}

variable "service_account_name" {
  description = "Service account of the pods (the chart's fullname: the release name, medic)."
  type        = string
}

variable "app_secrets" {
  description = "MEDIC_* secret settings besides MEDIC_REDIS_URL (MEDIC_ADMIN_KEY, Slack tokens...)."
  type        = map(string)
  sensitive   = true
}

variable "postgres_engine_version" {
  description = "PostgreSQL version of RDS."
  type        = string
}

variable "db_instance_class" {
  description = "RDS instance class."
  type        = string
}

variable "db_allocated_storage" {
  description = "RDS storage in GiB."
  type        = number
}

variable "db_max_allocated_storage" {
  description = "RDS storage autoscaling ceiling in GiB."
  type        = number
}

variable "db_multi_az" {
  description = "RDS standby in a second zone."
  type        = bool
}

variable "db_deletion_protection" {
  description = "RDS refuses deletion."
  type        = bool
}

variable "db_backup_retention_days" {
  description = "Days RDS backups are kept."
  type        = number
}

variable "redis_engine_version" {
  description = "Redis version of ElastiCache."
  type        = string
}

variable "redis_node_type" {
  description = "ElastiCache node type."
  type        = string
}

variable "redis_num_cache_clusters" {
  description = "ElastiCache nodes (2 or more: failover)."
  type        = number
}

variable "redis_snapshot_retention_days" {
  description = "Days ElastiCache snapshots are kept."
  type        = number
}

variable "secret_recovery_window_days" {
  description = "Days a deleted secret can be restored."
  type        = number
}

variable "tags" {
  description = "Tags for every resource."
  type        = map(string)
}
