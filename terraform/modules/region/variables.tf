# Inputs of one Isthmus region. Every variable has a type, a description and, where a bad value would
# only fail deep inside an AWS API call, a validation block that fails at plan with a precise message.

variable "name" {
  type        = string
  description = "Name prefix of every resource of this region, e.g. \"isthmus-prod-use1\" (lowercase, digits, hyphens; at most 24 characters so derived names stay within AWS limits)."

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{2,22}[a-z0-9]$", var.name))
    error_message = "name must be 4-24 characters of lowercase letters, digits and hyphens, start with a letter and not end with a hyphen."
  }
}

variable "environment" {
  type        = string
  description = "Environment this region belongs to (tagged on every resource), e.g. \"prod\"."

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{1,15}$", var.environment))
    error_message = "environment must be 2-16 lowercase letters, digits or hyphens, starting with a letter."
  }
}

variable "tags" {
  type        = map(string)
  description = "Extra tags added to every resource of the region."
  default     = {}
}

# --- network -------------------------------------------------------------------------------------------

variable "vpc_cidr" {
  type        = string
  description = "IPv4 CIDR of the region's VPC (a /16 to /20). Must not overlap the other regions: they are peered for cross-region Kafka replication."

  validation {
    condition     = can(cidrnetmask(var.vpc_cidr)) && tonumber(split("/", var.vpc_cidr)[1]) >= 16 && tonumber(split("/", var.vpc_cidr)[1]) <= 20
    error_message = "vpc_cidr must be a valid IPv4 CIDR between /16 and /20, e.g. \"10.10.0.0/16\"."
  }
}

variable "availability_zones" {
  type        = list(string)
  description = "Availability zones used for subnets, nodes and Kafka brokers (2 or 3 distinct zones of the provider's region; MSK accepts no other count)."

  validation {
    condition     = length(var.availability_zones) >= 2 && length(var.availability_zones) <= 3 && length(distinct(var.availability_zones)) == length(var.availability_zones)
    error_message = "availability_zones must list 2 or 3 distinct zones, e.g. [\"us-east-1a\", \"us-east-1b\", \"us-east-1c\"]."
  }
}

variable "peer_cidrs" {
  type        = list(string)
  description = "CIDRs of peered regions whose MirrorMaker 2 reaches this region's Kafka brokers (port 9098, IAM auth over TLS)."
  default     = []

  validation {
    condition     = alltrue([for c in var.peer_cidrs : can(cidrnetmask(c))])
    error_message = "peer_cidrs must contain valid IPv4 CIDRs only."
  }
}

variable "log_retention_days" {
  type        = number
  description = "Retention of the region's CloudWatch log groups (EKS control plane, Kafka brokers, WAF), in days; at least one year for audit."
  default     = 365

  validation {
    condition     = contains([365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653], var.log_retention_days)
    error_message = "log_retention_days must be a CloudWatch retention value of at least a year: 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288 or 3653."
  }
}

# --- Kubernetes ----------------------------------------------------------------------------------------

variable "kubernetes_version" {
  type        = string
  description = "EKS Kubernetes minor version."
  default     = "1.34"

  validation {
    condition     = can(regex("^1\\.(29|3[0-5])$", var.kubernetes_version))
    error_message = "kubernetes_version must be an EKS-supported minor version between 1.29 and 1.35, e.g. \"1.34\"."
  }
}

variable "cluster_admin_principal_arns" {
  type        = list(string)
  description = "IAM role/user ARNs granted cluster-admin through EKS access entries (the CI deploy role, break-glass role)."
  default     = []

  validation {
    condition     = alltrue([for a in var.cluster_admin_principal_arns : can(regex("^arn:aws[a-z-]*:iam::[0-9]{12}:(role|user)/.+$", a))])
    error_message = "cluster_admin_principal_arns must be IAM role or user ARNs, e.g. \"arn:aws:iam::123456789012:role/deploy\"."
  }
}

variable "node_groups" {
  type = map(object({
    instance_types = list(string)
    capacity_type  = optional(string, "ON_DEMAND")
    min_size       = number
    desired_size   = number
    max_size       = number
    disk_size_gb   = optional(number, 100)
    labels         = optional(map(string), {})
    taints = optional(list(object({
      key    = string
      value  = string
      effect = string
    })), [])
  }))
  description = "EKS managed node groups by name. Pools without taints run the Isthmus services and receive gRPC traffic from the load balancer; the \"edge\" pool (label isthmus.dev/pool=edge, taint isthmus.dev/edge=true:NoSchedule) runs the edge workloads that EdgeRollouts annotate with a model bundle reference."
  default = {
    system = {
      instance_types = ["m7i.xlarge"]
      min_size       = 3
      desired_size   = 3
      max_size       = 9
      labels         = { "isthmus.dev/pool" = "system" }
    }
    edge = {
      instance_types = ["c7i.xlarge"]
      min_size       = 1
      desired_size   = 2
      max_size       = 6
      labels         = { "isthmus.dev/pool" = "edge" }
      taints         = [{ key = "isthmus.dev/edge", value = "true", effect = "NO_SCHEDULE" }]
    }
  }

  validation {
    condition     = alltrue([for n, g in var.node_groups : g.min_size >= 0 && g.min_size <= g.desired_size && g.desired_size <= g.max_size && g.max_size >= 1])
    error_message = "node_groups: every pool needs 0 <= min_size <= desired_size <= max_size and max_size >= 1."
  }
  validation {
    condition     = alltrue(flatten([for n, g in var.node_groups : [for t in g.taints : contains(["NO_SCHEDULE", "NO_EXECUTE", "PREFER_NO_SCHEDULE"], t.effect)]]))
    error_message = "node_groups: taint effect must be NO_SCHEDULE, NO_EXECUTE or PREFER_NO_SCHEDULE (the EKS API spelling)."
  }
  validation {
    condition     = alltrue([for n, g in var.node_groups : contains(["ON_DEMAND", "SPOT"], g.capacity_type) && length(g.instance_types) > 0])
    error_message = "node_groups: capacity_type must be ON_DEMAND or SPOT and instance_types must not be empty."
  }
  validation {
    condition     = length([for n, g in var.node_groups : n if length(g.taints) == 0]) > 0
    error_message = "node_groups: at least one pool must have no taints, to run the Isthmus services."
  }
  validation {
    condition     = try(var.node_groups["edge"].labels["isthmus.dev/pool"], "") == "edge"
    error_message = "node_groups: an \"edge\" pool labelled isthmus.dev/pool=edge is required (EdgeRollouts select it)."
  }
}

# --- Kafka (MSK) -----------------------------------------------------------------------------------------

variable "kafka_version" {
  type        = string
  description = "Apache Kafka version of the MSK cluster."
  default     = "3.9.x"

  validation {
    condition     = can(regex("^[34]\\.[0-9]+\\.([0-9]+|x)$", var.kafka_version))
    error_message = "kafka_version must be an MSK Kafka version such as \"3.9.x\" or \"3.8.0\"."
  }
}

variable "kafka_broker_instance_type" {
  type        = string
  description = "MSK broker instance type."
  default     = "kafka.m7g.large"

  validation {
    condition     = can(regex("^kafka\\.[a-z0-9]+\\.[a-z0-9]+$", var.kafka_broker_instance_type))
    error_message = "kafka_broker_instance_type must be an MSK instance type such as \"kafka.m7g.large\"."
  }
}

variable "kafka_brokers_per_az" {
  type        = number
  description = "Kafka brokers per availability zone (the cluster has this times the number of zones)."
  default     = 1

  validation {
    condition     = var.kafka_brokers_per_az >= 1 && var.kafka_brokers_per_az == floor(var.kafka_brokers_per_az)
    error_message = "kafka_brokers_per_az must be a whole number >= 1."
  }
}

variable "kafka_volume_size_gb" {
  type        = number
  description = "EBS storage per Kafka broker, in GiB."
  default     = 500

  validation {
    condition     = var.kafka_volume_size_gb >= 10 && var.kafka_volume_size_gb <= 16384
    error_message = "kafka_volume_size_gb must be between 10 and 16384 GiB."
  }
}

# --- backups -------------------------------------------------------------------------------------------

variable "backup_retention_days" {
  type        = number
  description = "Days a non-current (overwritten or deleted) backup object version is kept before it expires."
  default     = 35

  validation {
    condition     = var.backup_retention_days >= 7
    error_message = "backup_retention_days must be at least 7."
  }
}

variable "backup_replica" {
  type = object({
    bucket_arn  = string
    kms_key_arn = string
  })
  description = "Backup bucket and KMS key in another region that this region's backups bucket replicates to (cross-region disaster recovery, once snapshots are written: issue 13); null disables replication."
  default     = null
}

# --- gRPC ingress --------------------------------------------------------------------------------------

variable "grpc_certificate_arn" {
  type        = string
  description = "ACM certificate (in this region) for the public gRPC endpoint's TLS listener."

  validation {
    condition     = can(regex("^arn:aws[a-z-]*:acm:[a-z0-9-]+:[0-9]{12}:certificate/.+$", var.grpc_certificate_arn))
    error_message = "grpc_certificate_arn must be an ACM certificate ARN."
  }
}

variable "grpc_ingress_cidrs" {
  type        = list(string)
  description = "Client CIDRs allowed to reach the public gRPC endpoint on port 443."
  default     = ["0.0.0.0/0"]

  validation {
    condition     = length(var.grpc_ingress_cidrs) > 0 && alltrue([for c in var.grpc_ingress_cidrs : can(cidrnetmask(c))])
    error_message = "grpc_ingress_cidrs must list at least one valid IPv4 CIDR."
  }
}

variable "public_grpc_services" {
  type        = map(number)
  description = "Isthmus services exposed through the regional gRPC load balancer, mapped to the fixed NodePort their Kubernetes Service gets. The first in alphabetical order is the listener's default route; the others are routed by gRPC path (/isthmus.<service>.v1.<Service>/*). In AllInOne mode list only agent-orchestrator: the single pod serves every gRPC service."
  default = {
    "agent-orchestrator" = 30051
    "ingestion"          = 30052
  }

  validation {
    condition     = length(var.public_grpc_services) > 0 && alltrue([for s, p in var.public_grpc_services : contains(["ingestion", "embedding", "retrieval", "agent-orchestrator", "guardrail", "evaluation"], s) && p >= 30000 && p <= 32767])
    error_message = "public_grpc_services keys must be Isthmus services (ingestion, embedding, retrieval, agent-orchestrator, guardrail, evaluation) and values NodePorts in 30000-32767."
  }
  validation {
    condition     = length(distinct(values(var.public_grpc_services))) == length(var.public_grpc_services)
    error_message = "public_grpc_services: every service needs its own NodePort (in AllInOne mode expose only agent-orchestrator: the one pod serves every gRPC service)."
  }
}

# --- Isthmus Helm release ------------------------------------------------------------------------------

variable "chart" {
  type        = string
  description = "Isthmus chart: a local path, or the chart name when chart_repository is set. Empty means the chart in this repository (charts/isthmus)."
  default     = ""
}

variable "chart_repository" {
  type        = string
  description = "Helm repository URL (https:// or oci://) holding the chart; null installs from a local path."
  default     = null

  validation {
    condition     = var.chart_repository == null || can(regex("^(https|oci)://", var.chart_repository))
    error_message = "chart_repository must start with https:// or oci://."
  }
}

variable "chart_version" {
  type        = string
  description = "Chart version to install from chart_repository (ignored for a local path)."
  default     = null
}

variable "deployment_mode" {
  type        = string
  description = "Isthmus chart deploymentMode: AllInOne (one pod runs every service) or Distributed (one Deployment per service, Kafka bus)."
  default     = "Distributed"

  validation {
    condition     = contains(["AllInOne", "Distributed"], var.deployment_mode)
    error_message = "deployment_mode must be \"AllInOne\" or \"Distributed\"."
  }
}

variable "image_repository" {
  type        = string
  description = "Container image repository of Isthmus (one image, services selected by --target)."
  default     = "ghcr.io/isthmus-dev/isthmus"
}

variable "image_tag" {
  type        = string
  description = "Isthmus image tag or digest (a release version; never a moving tag)."

  validation {
    condition     = length(var.image_tag) > 0 && !contains(["latest", "main", "master", "edge"], var.image_tag)
    error_message = "image_tag must name a release (e.g. \"0.4.0\" or \"sha256:...\"), not a moving tag such as latest."
  }
}

variable "namespace" {
  type        = string
  description = "Kubernetes namespace of the Isthmus release."
  default     = "isthmus"

  validation {
    condition     = can(regex("^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$", var.namespace)) && var.namespace != "default"
    error_message = "namespace must be a DNS label other than \"default\"."
  }
}

variable "release_name" {
  type        = string
  description = "Helm release name; service accounts are named <release_name>-<service> (the IAM roles trust exactly those)."
  default     = "isthmus"

  validation {
    condition     = can(regex("^[a-z]([-a-z0-9]{0,30}[a-z0-9])?$", var.release_name))
    error_message = "release_name must be a DNS label of at most 32 characters starting with a letter."
  }
}

variable "extra_values" {
  type        = list(string)
  description = "Extra YAML values documents for the Isthmus chart, applied after the module's own values (e.g. per-service replicas, Weaviate endpoint, secret references)."
  default     = []
}

# --- identity and access (the chart's auth.* and access.*; docs/operations.md) ---

variable "auth_issuer" {
  type        = string
  description = "OAuth2/OIDC issuer URL of the identity provider, exactly as in the tokens' iss claim (e.g. Ory Hydra's public URL). Every gRPC call must carry a bearer JWT from it: the pods listen beyond loopback, and Isthmus refuses to without authentication."

  validation {
    condition     = can(regex("^https?://[^\\s]+$", var.auth_issuer))
    error_message = "auth_issuer must be the issuer's http(s) URL, as in the tokens' iss claim."
  }
}

variable "auth_jwks_url" {
  type        = string
  description = "The issuer's JWKS URL; empty = <issuer>/.well-known/jwks.json."
  default     = ""

  validation {
    condition     = var.auth_jwks_url == "" || can(regex("^https?://[^\\s]+$", var.auth_jwks_url))
    error_message = "auth_jwks_url must be an http(s) URL (or empty for <issuer>/.well-known/jwks.json)."
  }
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
  description = "This deployment's own OAuth2 client (client-credentials grant), for calls no user made (bus handlers): the token endpoint, the client id, and the Kubernetes Secret (in the release namespace, created outside terraform, e.g. by External Secrets) holding the client secret under secret_key. null = no service token."
  default     = null

  validation {
    condition     = var.auth_service_client == null || (can(regex("^https?://[^\\s]+$", var.auth_service_client.token_url)) && var.auth_service_client.client_id != "" && can(regex("^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$", var.auth_service_client.secret_name)))
    error_message = "auth_service_client needs an http(s) token_url, a client_id and the name of a Secret (a DNS subdomain)."
  }
}

variable "platform_bindings" {
  type = list(object({
    principal = string
    role      = string
  }))
  description = "Role bindings for every tenant (the access file's [platform]), e.g. [{ principal = \"ops-admin\", role = \"platform-admin\" }]. A principal is a token's subject (for client-credentials tokens the client id) or group:<name>."
  default     = []

  validation {
    condition     = alltrue([for b in var.platform_bindings : contains(["platform-admin", "tenant-admin", "writer", "reader", "auditor", "drill-operator"], b.role) && can(regex("^[A-Za-z0-9][A-Za-z0-9._:@/+-]{0,255}$", b.principal))])
    error_message = "platform_bindings: role must be one of platform-admin, tenant-admin, writer, reader, auditor, drill-operator; principal 1-256 letters, digits and . _ : @ / + - starting with a letter or digit (group:<name> for a group)."
  }
}

variable "tenant_bindings" {
  type = map(list(object({
    principal = string
    role      = string
  })))
  description = "Role bindings per tenant id (the access file's [tenants.<id>]), e.g. { acme = [{ principal = \"client-abc\", role = \"writer\" }] }. Leave empty when the isthmus-operator renders them from Tenant objects (access_existing_configmap)."
  default     = {}

  validation {
    condition     = alltrue([for t, bs in var.tenant_bindings : can(regex("^[a-z0-9][a-z0-9-]{0,62}$", t)) && alltrue([for b in bs : contains(["platform-admin", "tenant-admin", "writer", "reader", "auditor", "drill-operator"], b.role) && can(regex("^[A-Za-z0-9][A-Za-z0-9._:@/+-]{0,255}$", b.principal))])])
    error_message = "tenant_bindings: keys are tenant ids (lowercase letters, digits, '-'); roles one of platform-admin, tenant-admin, writer, reader, auditor, drill-operator; principals 1-256 letters, digits and . _ : @ / + -."
  }
}

variable "access_existing_configmap" {
  type        = string
  description = "The access ConfigMap the isthmus-operator renders from Tenant objects (isthmus-access) instead of platform_bindings / tenant_bindings; empty = the chart renders those."
  default     = ""

  validation {
    condition     = var.access_existing_configmap == "" || (length(var.platform_bindings) == 0 && length(var.tenant_bindings) == 0)
    error_message = "access_existing_configmap and platform_bindings/tenant_bindings are exclusive: the operator's ConfigMap holds every binding."
  }
}
