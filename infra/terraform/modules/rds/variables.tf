variable "identifier" {
  description = "Name of the instance and of its subnet group, security group and parameter group."
  type        = string
}

variable "vpc_id" {
  description = "VPC of the database (the EKS cluster's)."
  type        = string
}

variable "subnet_ids" {
  description = "Private subnets of the database, in at least two availability zones."
  type        = list(string)
}

variable "allowed_security_group_ids" {
  description = "Security groups allowed to connect on 5432 (the EKS cluster's)."
  type        = list(string)
}

variable "kms_key_arn" {
  description = "KMS key encrypting storage and Performance Insights."
  type        = string
}

variable "engine_version" {
  description = "PostgreSQL version (major.minor); the parameter group family follows the major."
  type        = string
}

variable "instance_class" {
  description = "Instance class, e.g. db.t4g.micro."
  type        = string
}

variable "allocated_storage" {
  description = "Initial storage in GiB."
  type        = number
}

variable "max_allocated_storage" {
  description = "Storage autoscaling ceiling in GiB."
  type        = number
}

variable "multi_az" {
  description = "Standby in a second availability zone."
  type        = bool
}

variable "deletion_protection" {
  description = "Refuse to delete the instance."
  type        = bool
}

variable "backup_retention_days" {
  description = "Days automated backups are kept (1 to 35)."
  type        = number
}

variable "database_name" {
  description = "Database Medic uses."
  type        = string
  default     = "medic"
}

variable "username" {
  description = "Master user name (Medic connects as this user)."
  type        = string
  default     = "medic"
}

variable "tags" {
  description = "Tags for every resource."
  type        = map(string)
  default     = {}
}
