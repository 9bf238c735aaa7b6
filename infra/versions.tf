terraform {
  required_version = ">= 1.6"

  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = "~> 5.100"
    }
  }
}

# Region and credentials come from the environment (AWS_REGION, AWS_PROFILE, ...), as for
# `sam deploy`. Every resource is tagged with the deployment's name.
provider "aws" {
  default_tags {
    tags = {
      application = "gocoffee"
      deployment  = var.name
    }
  }
}

data "aws_region" "current" {}
data "aws_partition" "current" {}
data "aws_caller_identity" "current" {}
