variable "name" {
  description = "Replication group id, and name of its subnet group and security group."
  type        = string
}

variable "vpc_id" {
  description = "VPC of the cache (the EKS cluster's)."
  type        = string
}

variable "subnet_ids" {
  description = "Private subnets of the cache."
  type        = list(string)
}

variable "allowed_security_group_ids" {
  description = "Security groups allowed to connect on 6379 (the EKS cluster's)."
  type        = list(string)
}

variable "kms_key_arn" {
  description = "KMS key encrypting the cache at rest."
  type        = string
}

variable "engine_version" {
  description = "Redis engine version."
  type        = string
}

variable "node_type" {
  description = "Node type, e.g. cache.t4g.micro."
  type        = string
}

variable "num_cache_clusters" {
  description = "Nodes: 1, or 2 and more for a replica with automatic failover."
  type        = number
}

variable "snapshot_retention_days" {
  description = "Days daily snapshots are kept (0: none)."
  type        = number
}

variable "tags" {
  description = "Tags for every resource."
  type        = map(string)
  default     = {}
}
