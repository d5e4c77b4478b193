variable "environment" {
  description = "dev or prod: the secrets are medic/<environment>/*."
  type        = string
}

variable "kms_key_arn" {
  description = "KMS key encrypting both secrets."
  type        = string
}

variable "redis_url" {
  description = "MEDIC_REDIS_URL (rediss:// with the AUTH token)."
  type        = string
  sensitive   = true
}

variable "app_secrets" {
  description = "Other MEDIC_* secret settings (MEDIC_ADMIN_KEY, MEDIC_SLACK_BOT_TOKEN...)."
  type        = map(string)
  sensitive   = true
  default     = {}

  validation {
    condition     = alltrue([for key in keys(var.app_secrets) : startswith(key, "MEDIC_") && !contains(["MEDIC_REDIS_URL", "MEDIC_DATABASE_URL"], key)])
    error_message = "app_secrets keys are MEDIC_* settings; MEDIC_REDIS_URL and MEDIC_DATABASE_URL come from Terraform."
  }
}

variable "database" {
  description = "RDS connection: username, password, host, port, dbname."
  type = object({
    username = string
    password = string
    host     = string
    port     = number
    dbname   = string
  })
  sensitive = true
}

variable "recovery_window_in_days" {
  description = "Days a deleted secret can be restored (0: deleted at once)."
  type        = number
}

variable "tags" {
  description = "Tags for every resource."
  type        = map(string)
  default     = {}
}
