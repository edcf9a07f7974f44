# Production: two Isthmus regions. us-east-1 (use1) is the primary for the public gRPC name, eu-west-1
# (euw1) the failover; Kafka topics are mirrored both ways (mirrormaker.tf), the backups buckets replicate
# to each other, and DNS fails over on the regions' gRPC health (dns.tf). Each release knows its region and
# all regions (settings REGION / REGIONS): it indexes the documents mirrored from the other region and draws
# document versions from its own class, so a client that fails over finds the tenant's documents there
# (docs/multi-region.md). Tenants are created in each of their regions by the operator (Tenant
# primaryRegion / replicaRegions). Both regions trust the same identity provider (auth_issuer) and bind
# the same roles (platform_bindings, tenant_bindings), so a caller's token works after a failover.

locals {
  regions = {
    use1 = {
      aws_region = "us-east-1"
      vpc_cidr   = "10.20.0.0/16"
      azs        = ["us-east-1a", "us-east-1b", "us-east-1c"]
    }
    euw1 = {
      aws_region = "eu-west-1"
      vpc_cidr   = "10.30.0.0/16"
      azs        = ["eu-west-1a", "eu-west-1b", "eu-west-1c"]
    }
  }
  cluster_admins = concat([var.deployer_role_arn], var.extra_cluster_admin_arns)
  # Values shared by both regions' Isthmus releases (Helm merges them after the module's own).
  isthmus_values = yamlencode({
    settings = {
      LOG_FORMAT = "json"
    }
  })
  # Per region: its own name and every region's (consumers read <peer>.<topic>; versions per region).
  region_values = {
    for alias in keys(local.regions) : alias => yamlencode({
      settings = {
        REGION  = alias
        REGIONS = jsonencode(sort(keys(local.regions)))
      }
    })
  }
}

# --- TLS certificates for the gRPC name, one per region (an ALB uses a certificate of its own region) ---

resource "aws_acm_certificate" "grpc_use1" {
  provider          = aws.use1
  domain_name       = var.grpc_hostname
  validation_method = "DNS"
  options {
    certificate_transparency_logging_preference = "ENABLED"
  }
  lifecycle {
    create_before_destroy = true
  }
}

resource "aws_acm_certificate" "grpc_euw1" {
  provider          = aws.euw1
  domain_name       = var.grpc_hostname
  validation_method = "DNS"
  options {
    certificate_transparency_logging_preference = "ENABLED"
  }
  lifecycle {
    create_before_destroy = true
  }
}

# ACM issues the same validation record for a name in every region of an account: one record serves both.
resource "aws_route53_record" "grpc_cert_validation" {
  provider = aws.use1
  for_each = {
    for o in aws_acm_certificate.grpc_use1.domain_validation_options : o.domain_name => o
  }
  zone_id         = var.dns_zone_id
  name            = each.value.resource_record_name
  type            = each.value.resource_record_type
  records         = [each.value.resource_record_value]
  ttl             = 300
  allow_overwrite = true
}

resource "aws_acm_certificate_validation" "grpc_use1" {
  provider                = aws.use1
  certificate_arn         = aws_acm_certificate.grpc_use1.arn
  validation_record_fqdns = [for r in aws_route53_record.grpc_cert_validation : r.fqdn]
}

resource "aws_acm_certificate_validation" "grpc_euw1" {
  provider                = aws.euw1
  certificate_arn         = aws_acm_certificate.grpc_euw1.arn
  validation_record_fqdns = [for r in aws_route53_record.grpc_cert_validation : r.fqdn]
}

# --- the regions -----------------------------------------------------------------------------------------

module "use1" {
  source = "../../modules/region"
  providers = {
    aws  = aws.use1
    helm = helm.use1
  }

  name                         = "isthmus-prod-use1"
  environment                  = "prod"
  vpc_cidr                     = local.regions.use1.vpc_cidr
  availability_zones           = local.regions.use1.azs
  peer_cidrs                   = [local.regions.euw1.vpc_cidr]
  cluster_admin_principal_arns = local.cluster_admins
  grpc_certificate_arn         = aws_acm_certificate_validation.grpc_use1.certificate_arn
  backup_replica = {
    bucket_arn  = module.euw1.backup_bucket_arn
    kms_key_arn = module.euw1.kms_key_arn
  }

  deployment_mode  = "Distributed"
  image_tag        = var.image_tag
  chart_repository = var.chart_repository
  chart_version    = var.chart_version
  extra_values     = [local.isthmus_values, local.region_values.use1]

  auth_issuer               = var.auth_issuer
  auth_jwks_url             = var.auth_jwks_url
  auth_audience             = var.auth_audience
  auth_service_client       = var.auth_service_client
  platform_bindings         = var.platform_bindings
  tenant_bindings           = var.tenant_bindings
  access_existing_configmap = var.access_existing_configmap
}

module "euw1" {
  source = "../../modules/region"
  providers = {
    aws  = aws.euw1
    helm = helm.euw1
  }

  name                         = "isthmus-prod-euw1"
  environment                  = "prod"
  vpc_cidr                     = local.regions.euw1.vpc_cidr
  availability_zones           = local.regions.euw1.azs
  peer_cidrs                   = [local.regions.use1.vpc_cidr]
  cluster_admin_principal_arns = local.cluster_admins
  grpc_certificate_arn         = aws_acm_certificate_validation.grpc_euw1.certificate_arn
  backup_replica = {
    bucket_arn  = module.use1.backup_bucket_arn
    kms_key_arn = module.use1.kms_key_arn
  }

  deployment_mode  = "Distributed"
  image_tag        = var.image_tag
  chart_repository = var.chart_repository
  chart_version    = var.chart_version
  extra_values     = [local.isthmus_values, local.region_values.euw1]

  auth_issuer               = var.auth_issuer
  auth_jwks_url             = var.auth_jwks_url
  auth_audience             = var.auth_audience
  auth_service_client       = var.auth_service_client
  platform_bindings         = var.platform_bindings
  tenant_bindings           = var.tenant_bindings
  access_existing_configmap = var.access_existing_configmap
}
