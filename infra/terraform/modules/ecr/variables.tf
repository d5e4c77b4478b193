variable "name" {
  description = "Repository name (GitHub variable ECR_REPOSITORY)."
  type        = string
}

variable "kms_key_arn" {
  description = "KMS key encrypting the images."
  type        = string
}

variable "pr_image_retention_days" {
  description = "Days a pr-<number> image is kept after its last push."
  type        = number
}

variable "max_images" {
  description = "Most images kept in all (the oldest expire first)."
  type        = number
}

variable "tags" {
  description = "Tags for every resource."
  type        = map(string)
  default     = {}
}
