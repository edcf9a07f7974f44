# Two regions, one provider alias per region and per provider kind. The EKS API endpoints are private:
# run terraform from inside the primary VPC (or a network peered with both), e.g. a CI runner there.

locals {
  default_tags = {
    "app.kubernetes.io/part-of" = "isthmus"
    "isthmus.dev/environment"   = "prod"
    "managed-by"                = "terraform"
  }
}

provider "aws" {
  alias  = "use1"
  region = "us-east-1"
  default_tags {
    tags = local.default_tags
  }
}

provider "aws" {
  alias  = "euw1"
  region = "eu-west-1"
  default_tags {
    tags = local.default_tags
  }
}

provider "helm" {
  alias = "use1"
  kubernetes {
    host                   = module.use1.cluster_endpoint
    cluster_ca_certificate = base64decode(module.use1.cluster_ca_certificate)
    exec {
      api_version = "client.authentication.k8s.io/v1beta1"
      command     = "aws"
      args        = ["eks", "get-token", "--region", "us-east-1", "--cluster-name", module.use1.cluster_name]
    }
  }
}

provider "helm" {
  alias = "euw1"
  kubernetes {
    host                   = module.euw1.cluster_endpoint
    cluster_ca_certificate = base64decode(module.euw1.cluster_ca_certificate)
    exec {
      api_version = "client.authentication.k8s.io/v1beta1"
      command     = "aws"
      args        = ["eks", "get-token", "--region", "eu-west-1", "--cluster-name", module.euw1.cluster_name]
    }
  }
}

provider "kubernetes" {
  alias                  = "use1"
  host                   = module.use1.cluster_endpoint
  cluster_ca_certificate = base64decode(module.use1.cluster_ca_certificate)
  exec {
    api_version = "client.authentication.k8s.io/v1beta1"
    command     = "aws"
    args        = ["eks", "get-token", "--region", "us-east-1", "--cluster-name", module.use1.cluster_name]
  }
}

provider "kubernetes" {
  alias                  = "euw1"
  host                   = module.euw1.cluster_endpoint
  cluster_ca_certificate = base64decode(module.euw1.cluster_ca_certificate)
  exec {
    api_version = "client.authentication.k8s.io/v1beta1"
    command     = "aws"
    args        = ["eks", "get-token", "--region", "eu-west-1", "--cluster-name", module.euw1.cluster_name]
  }
}
