variable "name" {
  type        = string
  description = "Name of the MirrorMaker 2 deployment and its IAM role prefix, e.g. \"isthmus-prod-use1-mm2\"."

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{2,46}[a-z0-9]$", var.name))
    error_message = "name must be 4-48 lowercase letters, digits or hyphens, starting with a letter."
  }
}

variable "namespace" {
  type        = string
  description = "Kubernetes namespace MirrorMaker 2 runs in (the region's Isthmus namespace)."

  validation {
    condition     = can(regex("^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$", var.namespace)) && var.namespace != "default"
    error_message = "namespace must be a DNS label other than \"default\"."
  }
}

variable "properties" {
  type        = string
  description = "Complete mm2.properties (clusters, bootstrap servers, flows, topic filters, replication factors, security)."

  validation {
    condition     = can(regex("(?m)^clusters\\s*=", var.properties)) && can(regex("->", var.properties))
    error_message = "properties must be an MM2 configuration with a clusters = line and at least one source->target flow."
  }
}

variable "target_clusters" {
  type        = list(string)
  description = "Cluster aliases this MirrorMaker 2 node drives flows into (passed as --clusters): the local region's alias, so it consumes remotely and produces locally."

  validation {
    condition     = length(var.target_clusters) > 0
    error_message = "target_clusters must name at least one cluster alias of the properties."
  }
}

variable "kafka_cluster_arns" {
  type        = list(string)
  description = "MSK cluster ARNs MirrorMaker 2 connects to with IAM auth (every cluster of the properties)."

  validation {
    condition     = length(var.kafka_cluster_arns) >= 2 && alltrue([for a in var.kafka_cluster_arns : can(regex("^arn:aws[a-z-]*:kafka:[a-z0-9-]+:[0-9]{12}:cluster/.+/.+$", a))])
    error_message = "kafka_cluster_arns must list at least two MSK cluster ARNs."
  }
}

variable "oidc_provider_arn" {
  type        = string
  description = "IAM OIDC provider of the EKS cluster MirrorMaker 2 runs on."
}

variable "oidc_issuer_host" {
  type        = string
  description = "OIDC issuer of that cluster without https:// (prefix of the IRSA condition keys)."
}

variable "image" {
  type        = string
  description = "MirrorMaker 2 image pinned by digest: Apache Kafka 4.x (connect-mirror) with the aws-msk-iam-auth jar on its CLASSPATH, e.g. \"registry.example.com/kafka-mm2@sha256:...\"."

  validation {
    condition     = can(regex("@sha256:[0-9a-f]{64}$", var.image))
    error_message = "image must be pinned by digest (...@sha256:<64 hex>)."
  }
}

variable "resources" {
  type = object({
    cpu_request    = string
    memory_request = string
    cpu_limit      = string
    memory_limit   = string
    heap           = string
  })
  description = "Container resources and Java heap (-Xmx) of MirrorMaker 2."
  default = {
    cpu_request    = "500m"
    memory_request = "1536Mi"
    cpu_limit      = "2"
    memory_limit   = "1536Mi"
    heap           = "1g"
  }
}

variable "tags" {
  type        = map(string)
  description = "Tags of the AWS resources."
  default     = {}
}
