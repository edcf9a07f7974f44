variable "image_tag" {
  type        = string
  description = "Isthmus release (image tag or digest) deployed to both regions."

  validation {
    condition     = length(var.image_tag) > 0 && !contains(["latest", "main", "master"], var.image_tag)
    error_message = "image_tag must name a release, not a moving tag such as latest."
  }
}

variable "mirrormaker_image" {
  type        = string
  description = "MirrorMaker 2 image pinned by digest: Apache Kafka 4.x with the aws-msk-iam-auth jar on its CLASSPATH."

  validation {
    condition     = can(regex("@sha256:[0-9a-f]{64}$", var.mirrormaker_image))
    error_message = "mirrormaker_image must be pinned by digest (...@sha256:<64 hex>)."
  }
}

variable "dns_zone_id" {
  type        = string
  description = "Route 53 public hosted zone that serves grpc_hostname (owned outside this stack)."

  validation {
    condition     = can(regex("^Z[A-Z0-9]{4,31}$", var.dns_zone_id))
    error_message = "dns_zone_id must be a Route 53 hosted zone ID such as \"Z0123456789ABCDEFGHIJ\"."
  }
}

variable "grpc_hostname" {
  type        = string
  description = "Public gRPC name clients use, e.g. \"grpc.isthmus.example.com\"; it fails over from us-east-1 to eu-west-1."

  validation {
    condition     = can(regex("^([a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?\\.)+[a-z]{2,63}$", var.grpc_hostname))
    error_message = "grpc_hostname must be a fully qualified lowercase DNS name without a trailing dot and without wildcards."
  }
}

variable "deployer_role_arn" {
  type        = string
  description = "IAM role terraform runs as; it gets cluster-admin on both EKS clusters to install the Helm releases."

  validation {
    condition     = can(regex("^arn:aws[a-z-]*:iam::[0-9]{12}:role/.+$", var.deployer_role_arn))
    error_message = "deployer_role_arn must be an IAM role ARN."
  }
}

variable "extra_cluster_admin_arns" {
  type        = list(string)
  description = "More IAM principals given cluster-admin on both clusters (e.g. a break-glass role)."
  default     = []
}

variable "chart_repository" {
  type        = string
  description = "Helm repository (https:// or oci://) of the Isthmus chart; null installs charts/isthmus from this repository."
  default     = null
}

variable "chart_version" {
  type        = string
  description = "Isthmus chart version when chart_repository is set."
  default     = null
}

# --- identity and access: the same identity provider and bindings in both regions ---

variable "auth_issuer" {
  type        = string
  description = "OAuth2/OIDC issuer URL of the identity provider (the tokens' iss claim), trusted by both regions: a token works in either region, so failover keeps callers signed in."
}

variable "auth_jwks_url" {
  type        = string
  description = "The issuer's JWKS URL; empty = <issuer>/.well-known/jwks.json."
  default     = ""
}

variable "auth_audience" {
  type        = string
  description = "The aud claim every token must carry."
  default     = "isthmus"
}

variable "auth_service_client" {
  type = object({
    token_url   = string
    client_id   = string
    secret_name = string
    secret_key  = optional(string, "client-secret")
  })
  description = "The platform's own OAuth2 client (client-credentials) for calls no user made; its secret is read from a Kubernetes Secret of that name in each region's release namespace. null = none."
  default     = null
}

variable "platform_bindings" {
  type = list(object({
    principal = string
    role      = string
  }))
  description = "Role bindings for every tenant, in both regions (e.g. the operations team's group as platform-admin)."
  default     = []
}

variable "tenant_bindings" {
  type = map(list(object({
    principal = string
    role      = string
  })))
  description = "Role bindings per tenant id, in both regions; leave empty when the isthmus-operator renders them from Tenant objects (access_existing_configmap)."
  default     = {}
}

variable "access_existing_configmap" {
  type        = string
  description = "The isthmus-operator's access ConfigMap (isthmus-access) instead of platform_bindings / tenant_bindings; empty = terraform's bindings."
  default     = ""
}
