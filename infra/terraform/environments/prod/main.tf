# Medic prod: a thin wrapper. Everything is in modules/medic-environment; this directory only
# says which environment it is and passes its variables (values in terraform.tfvars, see
# terraform.tfvars.example). dev and prod pass the same inputs: only their values differ.

module "medic" {
  source = "../../modules/medic-environment"

  environment                   = "prod"
  eks_cluster_name              = var.eks_cluster_name
  private_subnet_ids            = var.private_subnet_ids
  host                          = var.host
  agents_host                   = var.agents_host
  route53_zone_id               = var.route53_zone_id
  image_repository_url          = var.image_repository_url
  github_repository             = var.github_repository
  github_oidc_url               = var.github_oidc_url
  deployer_kubernetes_group     = var.deployer_kubernetes_group
  kubernetes_namespace          = var.kubernetes_namespace
  service_account_name          = var.service_account_name
  app_secrets                   = var.app_secrets
  postgres_engine_version       = var.postgres_engine_version
  db_instance_class             = var.db_instance_class
  db_allocated_storage          = var.db_allocated_storage
  db_max_allocated_storage      = var.db_max_allocated_storage
  db_multi_az                   = var.db_multi_az
  db_deletion_protection        = var.db_deletion_protection
  db_backup_retention_days      = var.db_backup_retention_days
  redis_engine_version          = var.redis_engine_version
  redis_node_type               = var.redis_node_type
  redis_num_cache_clusters      = var.redis_num_cache_clusters
  redis_snapshot_retention_days = var.redis_snapshot_retention_days
  secret_recovery_window_days   = var.secret_recovery_window_days
  tags                          = var.tags
}
