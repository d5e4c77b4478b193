# Everything a Medic environment (dev, prod) consists of; environments/<env> only pass values.
# The EKS cluster (and its VPC) exist already: they are looked up by name, never hard-coded.

data "aws_partition" "current" {}

data "aws_caller_identity" "current" {}

data "aws_eks_cluster" "this" {
  name = var.eks_cluster_name
}

data "aws_vpc" "cluster" {
  id = data.aws_eks_cluster.this.vpc_config[0].vpc_id
}

data "aws_iam_openid_connect_provider" "eks" {
  url = data.aws_eks_cluster.this.identity[0].oidc[0].issuer
}

data "aws_iam_openid_connect_provider" "github" {
  url = var.github_oidc_url
}

locals {
  name      = "medic-${var.environment}"
  tags      = merge(var.tags, { "medic:environment" = var.environment })
  vpc_id    = data.aws_eks_cluster.this.vpc_config[0].vpc_id
  eks_sg_id = data.aws_eks_cluster.this.vpc_config[0].cluster_security_group_id
  eks_oidc  = trimprefix(data.aws_eks_cluster.this.identity[0].oidc[0].issuer, "https://")

  # What only the infrastructure knows, as Helm values: published below as SSM parameter
  # /medic/<env>/helm-values, which cd-eks.yml passes to `helm upgrade` after values-<env>.yaml.
  # Shape: tests/infra/fixtures/terraform-helm-values-<env>.yaml. The certificate is the ACM
  # module's output (it names host and agents_host; the chart's agents Ingress uses it too):
  # there is no certificate variable.
  helm_values = {
    image = {
      repository = var.image_repository_url
    }
    ingress = {
      host           = var.host
      certificateArn = module.acm.certificate_arn
    }
    grpc = {
      ingress = {
        host = var.agents_host
      }
    }
    serviceAccount = {
      annotations = {
        "eks.amazonaws.com/role-arn" = aws_iam_role.pods.arn
      }
    }
    externalSecret = {
      appSecretsName     = module.secrets.app_secrets_name
      databaseSecretName = module.secrets.database_secret_name
    }
    networkPolicy = {
      ingressCIDRs = data.aws_vpc.cluster.cidr_block_associations[*].cidr_block
    }
  }
}

# One key per environment for RDS, ElastiCache and the secrets.
resource "aws_kms_key" "this" {
  description             = "Medic ${var.environment}: RDS, ElastiCache, Secrets Manager"
  enable_key_rotation     = true
  deletion_window_in_days = 30
  tags                    = local.tags

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

resource "aws_kms_alias" "this" {
  name          = "alias/${local.name}"
  target_key_id = aws_kms_key.this.key_id
}

module "acm" {
  source = "../acm"

  domain_name               = var.host
  subject_alternative_names = [var.agents_host]
  route53_zone_id           = var.route53_zone_id
  tags                      = local.tags
}

module "rds" {
  source = "../rds"

  identifier                 = local.name
  vpc_id                     = local.vpc_id
  subnet_ids                 = var.private_subnet_ids
  allowed_security_group_ids = [local.eks_sg_id]
  kms_key_arn                = aws_kms_key.this.arn
  engine_version             = var.postgres_engine_version
  instance_class             = var.db_instance_class
  allocated_storage          = var.db_allocated_storage
  max_allocated_storage      = var.db_max_allocated_storage
  multi_az                   = var.db_multi_az
  deletion_protection        = var.db_deletion_protection
  backup_retention_days      = var.db_backup_retention_days
  tags                       = local.tags
}

module "elasticache" {
  source = "../elasticache"

  name                       = local.name
  vpc_id                     = local.vpc_id
  subnet_ids                 = var.private_subnet_ids
  allowed_security_group_ids = [local.eks_sg_id]
  kms_key_arn                = aws_kms_key.this.arn
  engine_version             = var.redis_engine_version
  node_type                  = var.redis_node_type
  num_cache_clusters         = var.redis_num_cache_clusters
  snapshot_retention_days    = var.redis_snapshot_retention_days
  tags                       = local.tags
}

module "secrets" {
  source = "../secrets"

  environment             = var.environment
  kms_key_arn             = aws_kms_key.this.arn
  redis_url               = module.elasticache.redis_url
  app_secrets             = var.app_secrets
  recovery_window_in_days = var.secret_recovery_window_days
  tags                    = local.tags

  database = {
    username = module.rds.username
    password = module.rds.password
    host     = module.rds.address
    port     = module.rds.port
    dbname   = module.rds.database_name
  }
}

# IRSA: the role of Medic's pods (service account annotation in the Helm values). It may read
# its own environment's secrets, for a namespaced SecretStore authenticating as the pods.
resource "aws_iam_role" "pods" {
  name = local.name
  tags = local.tags

  assume_role_policy = jsonencode({
    Version = "2012-10-17"
    Statement = [{
      Effect    = "Allow"
      Action    = "sts:AssumeRoleWithWebIdentity"
      Principal = { Federated = data.aws_iam_openid_connect_provider.eks.arn }
      Condition = {
        StringEquals = {
          "${local.eks_oidc}:sub" = "system:serviceaccount:${var.kubernetes_namespace}:${var.service_account_name}"
          "${local.eks_oidc}:aud" = "sts.amazonaws.com"
        }
      }
    }]
  })
}

resource "aws_iam_role_policy" "pods" {
  name = "read-own-secrets"
  role = aws_iam_role.pods.id

  policy = jsonencode({
    Version = "2012-10-17"
    Statement = [
      {
        Effect   = "Allow"
        Action   = ["secretsmanager:GetSecretValue", "secretsmanager:DescribeSecret"]
        Resource = module.secrets.secret_arns
      },
      {
        Effect   = "Allow"
        Action   = "kms:Decrypt"
        Resource = aws_kms_key.this.arn
      },
    ]
  })
}

# The role cd-eks.yml assumes for this environment (GitHub variable AWS_DEPLOY_ROLE_ARN of the
# environment): trusted only for jobs of this repository running in this GitHub environment.
resource "aws_iam_role" "deploy" {
  name = "${local.name}-deploy"
  tags = local.tags

  assume_role_policy = jsonencode({
    Version = "2012-10-17"
    Statement = [{
      Effect    = "Allow"
      Action    = "sts:AssumeRoleWithWebIdentity"
      Principal = { Federated = data.aws_iam_openid_connect_provider.github.arn }
      Condition = {
        StringEquals = {
          "${trimprefix(var.github_oidc_url, "https://")}:aud" = "sts.amazonaws.com"
          "${trimprefix(var.github_oidc_url, "https://")}:sub" = "repo:${var.github_repository}:environment:${var.environment}"
        }
      }
    }]
  })
}

resource "aws_iam_role_policy" "deploy" {
  name = "deploy-medic"
  role = aws_iam_role.deploy.id

  policy = jsonencode({
    Version = "2012-10-17"
    Statement = [
      {
        Effect   = "Allow"
        Action   = "eks:DescribeCluster"
        Resource = data.aws_eks_cluster.this.arn
      },
      {
        Effect   = "Allow"
        Action   = "ssm:GetParameter"
        Resource = aws_ssm_parameter.helm_values.arn
      },
    ]
  })
}

# Maps the deploy role to a Kubernetes group the cluster admins bind to deploy rights in the
# namespace (EKS access entries; the cluster must use the API authentication mode).
resource "aws_eks_access_entry" "deploy" {
  cluster_name      = var.eks_cluster_name
  principal_arn     = aws_iam_role.deploy.arn
  kubernetes_groups = [var.deployer_kubernetes_group]
  tags              = local.tags
}

resource "aws_ssm_parameter" "helm_values" {
  #checkov:skip=CKV2_AWS_34:not secret (ARNs, host, secret names); cd-eks.yml reads it without --with-decryption
  name        = "/medic/${var.environment}/helm-values"
  description = "Helm values of Medic ${var.environment} that only Terraform knows"
  type        = "String"
  tier        = "Standard"
  value       = yamlencode(local.helm_values)
  tags        = local.tags
}
