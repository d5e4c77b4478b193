# The one ECR repository both environments deploy from (build.yml pushes pr-<number> on pull
# requests, the short SHA and `latest` on main). Tags are mutable because pr-<number> and
# `latest` move; pr-* images expire, main's images are kept up to a count.

resource "aws_ecr_repository" "this" {
  #checkov:skip=CKV_AWS_51:tags must be mutable: build.yml moves pr-<number> and latest on every push (docs/deployment.md)
  name                 = var.name
  image_tag_mutability = "MUTABLE"
  tags                 = var.tags

  image_scanning_configuration {
    scan_on_push = true
  }

  encryption_configuration {
    encryption_type = "KMS"
    kms_key         = var.kms_key_arn
  }
}

resource "aws_ecr_lifecycle_policy" "this" {
  repository = aws_ecr_repository.this.name

  policy = jsonencode({
    rules = [
      {
        rulePriority = 1
        description  = "pull request images (pr-*) expire"
        selection = {
          tagStatus      = "tagged"
          tagPatternList = ["pr-*"]
          countType      = "sinceImagePushed"
          countUnit      = "days"
          countNumber    = var.pr_image_retention_days
        }
        action = { type = "expire" }
      },
      {
        rulePriority = 2
        description  = "untagged images expire"
        selection = {
          tagStatus   = "untagged"
          countType   = "sinceImagePushed"
          countUnit   = "days"
          countNumber = 1
        }
        action = { type = "expire" }
      },
      {
        rulePriority = 3
        description  = "keep the newest main images"
        selection = {
          tagStatus   = "any"
          countType   = "imageCountMoreThan"
          countNumber = var.max_images
        }
        action = { type = "expire" }
      },
    ]
  })
}
