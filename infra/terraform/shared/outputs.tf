output "repository_url" {
  description = "ECR repository URI: image_repository_url of the environments."
  value       = module.ecr.repository_url
}

output "ecr_push_role_arn" {
  description = "GitHub variable AWS_ECR_PUSH_ROLE_ARN."
  value       = aws_iam_role.ecr_push.arn
}

output "ecr_read_role_arn" {
  description = "GitHub variable AWS_ECR_READ_ROLE_ARN."
  value       = aws_iam_role.ecr_read.arn
}
