variable "aws_account_id" {
  description = "AWS account of the ECR repository (the provider refuses any other)."
  type        = string
}

variable "aws_region" {
  description = "AWS region of the ECR repository."
  type        = string
}

variable "ecr_repository_name" {
  description = "ECR repository name (GitHub variable ECR_REPOSITORY)."
  type        = string
  default     = "medic"
}

variable "github_repository" {
  description = "owner/name of the GitHub repository whose workflows push and check images."
  type        = string
}

variable "github_oidc_url" {
  description = "Issuer URL of GitHub's OIDC provider (registered once per AWS account)."
  type        = string
  default     = "https://token.actions.githubusercontent.com"
}

variable "pr_image_retention_days" {
  description = "Days a pr-<number> image is kept after its last push."
  type        = number
  default     = 14
}

variable "max_images" {
  description = "Most images kept in the repository."
  type        = number
  default     = 200
}

variable "tags" {
  description = "Default tags of every resource."
  type        = map(string)
  default     = {}
}
