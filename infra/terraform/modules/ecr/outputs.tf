output "repository_url" {
  description = "Repository URI (medic-environment's image_repository_url)."
  value       = aws_ecr_repository.this.repository_url
}

output "repository_arn" {
  description = "Repository ARN (for the push and read roles)."
  value       = aws_ecr_repository.this.arn
}
