# What both environments share, applied once: the ECR repository build.yml pushes to, and the
# two GitHub OIDC roles of the repository-level GitHub variables (AWS_ECR_PUSH_ROLE_ARN,
# AWS_ECR_READ_ROLE_ARN). Each environment's deploy role is in modules/medic-environment.

data "aws_partition" "current" {}

data "aws_caller_identity" "current" {}

data "aws_iam_openid_connect_provider" "github" {
  url = var.github_oidc_url
}

locals {
  github_oidc = trimprefix(var.github_oidc_url, "https://")
}

resource "aws_kms_key" "ecr" {
  description             = "Medic ECR images"
  enable_key_rotation     = true
  deletion_window_in_days = 30

  policy = jsonencode({
    Version = "2012-10-17"
    Statement = [{
      Sid       = "AccountAdministersTheKey"
      Effect    = "Allow"
      Principal = { AWS = "arn:${data.aws_partition.current.partition}:iam::${data.aws_caller_identity.current.account_id}:root" }
      Action    = "kms:*"
      Resource  = "*"
    }]
  })
}

module "ecr" {
  source = "../modules/ecr"

  name                    = var.ecr_repository_name
  kms_key_arn             = aws_kms_key.ecr.arn
  pr_image_retention_days = var.pr_image_retention_days
  max_images              = var.max_images
}

# build.yml: pull requests of this repository and pushes to main may push.
resource "aws_iam_role" "ecr_push" {
  name = "${var.ecr_repository_name}-ecr-push"

  assume_role_policy = jsonencode({
    Version = "2012-10-17"
    Statement = [{
      Effect    = "Allow"
      Action    = "sts:AssumeRoleWithWebIdentity"
      Principal = { Federated = data.aws_iam_openid_connect_provider.github.arn }
      Condition = {
        StringEquals = { "${local.github_oidc}:aud" = "sts.amazonaws.com" }
        StringLike = {
          "${local.github_oidc}:sub" = [
            "repo:${var.github_repository}:pull_request",
            "repo:${var.github_repository}:ref:refs/heads/main",
          ]
        }
      }
    }]
  })
}

resource "aws_iam_role_policy" "ecr_push" {
  name = "push-medic-image"
  role = aws_iam_role.ecr_push.id

  policy = jsonencode({
    Version = "2012-10-17"
    Statement = [
      {
        # GetAuthorizationToken has no resource-level permissions.
        Effect   = "Allow"
        Action   = "ecr:GetAuthorizationToken"
        Resource = "*"
      },
      {
        Effect = "Allow"
        Action = [
          "ecr:BatchCheckLayerAvailability",
          "ecr:BatchGetImage",
          "ecr:CompleteLayerUpload",
          "ecr:DescribeImages",
          "ecr:InitiateLayerUpload",
          "ecr:PutImage",
          "ecr:UploadLayerPart",
        ]
        Resource = module.ecr.repository_arn
      },
      {
        Effect   = "Allow"
        Action   = ["kms:Decrypt", "kms:GenerateDataKey"]
        Resource = aws_kms_key.ecr.arn
      },
    ]
  })
}

# cd-eks.yml's pre-check: does the tag exist? Any job of this repository.
resource "aws_iam_role" "ecr_read" {
  name = "${var.ecr_repository_name}-ecr-read"

  assume_role_policy = jsonencode({
    Version = "2012-10-17"
    Statement = [{
      Effect    = "Allow"
      Action    = "sts:AssumeRoleWithWebIdentity"
      Principal = { Federated = data.aws_iam_openid_connect_provider.github.arn }
      Condition = {
        StringEquals = { "${local.github_oidc}:aud" = "sts.amazonaws.com" }
        StringLike   = { "${local.github_oidc}:sub" = "repo:${var.github_repository}:*" }
      }
    }]
  })
}

resource "aws_iam_role_policy" "ecr_read" {
  name = "describe-medic-images"
  role = aws_iam_role.ecr_read.id

  policy = jsonencode({
    Version = "2012-10-17"
    Statement = [{
      Effect   = "Allow"
      Action   = "ecr:DescribeImages"
      Resource = module.ecr.repository_arn
    }]
  })
}
