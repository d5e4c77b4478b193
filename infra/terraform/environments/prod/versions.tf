terraform {
  required_version = ">= 1.6.0"

  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = ">= 5.80.0, < 6.0.0"
    }
    random = {
      source  = "hashicorp/random"
      version = ">= 3.6.0, < 4.0.0"
    }
  }

  # Partial configuration: bucket, key, region and lock table come from backend.hcl
  # (terraform init -backend-config=backend.hcl; see backend.hcl.example).
  backend "s3" {}
}
