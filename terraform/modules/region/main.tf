# One region of Isthmus on AWS: network (network.tf), EKS (eks.tf), MSK (kafka.tf), backups (backups.tf),
# IAM roles for the services (irsa.tf), the public gRPC endpoint (ingress.tf) and the Helm release
# (isthmus.tf). One customer-managed KMS key encrypts everything at rest in the region.

data "aws_caller_identity" "current" {}
data "aws_partition" "current" {}
data "aws_region" "current" {}

locals {
  account_id = data.aws_caller_identity.current.account_id
  partition  = data.aws_partition.current.partition
  region     = data.aws_region.current.name

  services = toset(["ingestion", "embedding", "retrieval", "agent-orchestrator", "guardrail", "evaluation"])
  # Services with embedded state (store, registry, policies): their roles may use their prefix of the
  # backups bucket, for the snapshots planned in issue 13 (nothing backs them up yet).
  stateful_services = toset(["ingestion", "retrieval", "guardrail"])

  # gRPC full service names, e.g. agent-orchestrator -> isthmus.agent_orchestrator.v1.AgentOrchestratorService
  grpc_service_names = {
    for s in local.services :
    s => "isthmus.${replace(s, "-", "_")}.v1.${join("", [for p in split("-", s) : title(p)])}Service"
  }

  tags = merge(var.tags, {
    "app.kubernetes.io/part-of" = "isthmus"
    "isthmus.dev/environment"   = var.environment
    "isthmus.dev/region"        = var.name
  })
}

resource "aws_kms_key" "this" {
  description             = "Isthmus ${var.name}: EKS secrets, Kafka, backups and logs at rest"
  enable_key_rotation     = true
  deletion_window_in_days = 30
  policy                  = data.aws_iam_policy_document.kms.json
  tags                    = local.tags
}

resource "aws_kms_alias" "this" {
  name          = "alias/${var.name}"
  target_key_id = aws_kms_key.this.key_id
}

data "aws_iam_policy_document" "kms" {
  #checkov:skip=CKV_AWS_109:This is a KMS key policy: its Resource "*" means this key only, and permission management is granted to the account root alone, i.e. delegated to the account's IAM policies (AWS's default key policy).
  #checkov:skip=CKV_AWS_111:Same key-policy semantics: "*" is this key, and writes go to the account root (IAM-delegated) or to CloudWatch Logs constrained by the kms:EncryptionContext of this account's log groups.
  #checkov:skip=CKV_AWS_356:A key policy cannot name its own key ARN (it does not exist yet); Resource "*" in a key policy is scoped to the key it is attached to.
  statement {
    sid       = "AccountAdministers"
    actions   = ["kms:*"]
    resources = ["*"]
    principals {
      type        = "AWS"
      identifiers = ["arn:${local.partition}:iam::${local.account_id}:root"]
    }
  }

  statement {
    sid       = "CloudWatchLogsEncrypt"
    actions   = ["kms:Encrypt*", "kms:Decrypt*", "kms:ReEncrypt*", "kms:GenerateDataKey*", "kms:Describe*"]
    resources = ["*"]
    principals {
      type        = "Service"
      identifiers = ["logs.${local.region}.amazonaws.com"]
    }
    condition {
      test     = "ArnLike"
      variable = "kms:EncryptionContext:aws:logs:arn"
      values   = ["arn:${local.partition}:logs:${local.region}:${local.account_id}:log-group:*"]
    }
  }
}
