# IAM roles for the Isthmus service accounts (IRSA): each service's pods assume only their own role, and
# each role grants only what that service does — Kafka through MSK IAM auth on the isthmus.* topics, and
# for the services with embedded state, read/write under their own prefix of the backups bucket (granted
# for the snapshots planned in issue 13; no service writes there yet).

data "aws_iam_policy_document" "service_assume" {
  for_each = local.services

  statement {
    actions = ["sts:AssumeRoleWithWebIdentity"]
    principals {
      type        = "Federated"
      identifiers = [aws_iam_openid_connect_provider.this.arn]
    }
    condition {
      test     = "StringEquals"
      variable = "${local.oidc_issuer_host}:sub"
      values   = ["system:serviceaccount:${var.namespace}:${var.release_name}-${each.value}"]
    }
    condition {
      test     = "StringEquals"
      variable = "${local.oidc_issuer_host}:aud"
      values   = ["sts.amazonaws.com"]
    }
  }
}

resource "aws_iam_role" "service" {
  for_each           = local.services
  name               = "${var.name}-${each.value}"
  description        = "Isthmus ${each.value} service account in ${var.name}"
  assume_role_policy = data.aws_iam_policy_document.service_assume[each.value].json
  tags               = merge(local.tags, { "isthmus.dev/service" = each.value })
}

data "aws_iam_policy_document" "service" {
  for_each = local.services

  statement {
    sid       = "KafkaConnect"
    actions   = ["kafka-cluster:Connect", "kafka-cluster:DescribeCluster"]
    resources = [aws_msk_cluster.this.arn]
  }

  # Isthmus declares its topics (and their .dlq twins) from the topic registry at start.
  statement {
    sid = "KafkaIsthmusTopics"
    actions = [
      "kafka-cluster:CreateTopic",
      "kafka-cluster:DescribeTopic",
      "kafka-cluster:DescribeTopicDynamicConfiguration",
      "kafka-cluster:ReadData",
      "kafka-cluster:WriteData",
    ]
    resources = ["${local.kafka_topic_arn_prefix}/isthmus.*"]
  }

  statement {
    sid       = "KafkaConsumerGroups"
    actions   = ["kafka-cluster:AlterGroup", "kafka-cluster:DescribeGroup"]
    resources = ["${local.kafka_group_arn_prefix}/*"]
  }

  # Idempotent producers (enable_idempotence=True) need this cluster-level permission.
  statement {
    sid       = "KafkaIdempotentWrites"
    actions   = ["kafka-cluster:WriteDataIdempotently"]
    resources = [aws_msk_cluster.this.arn]
  }

  dynamic "statement" {
    for_each = contains(local.stateful_services, each.value) ? [1] : []
    content {
      sid       = "BackupsList"
      actions   = ["s3:ListBucket"]
      resources = [aws_s3_bucket.backups.arn]
      condition {
        test     = "StringLike"
        variable = "s3:prefix"
        values   = ["${each.value}/*"]
      }
    }
  }

  dynamic "statement" {
    for_each = contains(local.stateful_services, each.value) ? [1] : []
    content {
      sid       = "BackupsReadWrite"
      actions   = ["s3:GetObject", "s3:PutObject", "s3:AbortMultipartUpload"]
      resources = ["${aws_s3_bucket.backups.arn}/${each.value}/*"]
    }
  }

  dynamic "statement" {
    for_each = contains(local.stateful_services, each.value) ? [1] : []
    content {
      sid       = "BackupsKms"
      actions   = ["kms:Decrypt", "kms:GenerateDataKey"]
      resources = [aws_kms_key.this.arn]
      condition {
        test     = "StringEquals"
        variable = "kms:ViaService"
        values   = ["s3.${local.region}.amazonaws.com"]
      }
    }
  }
}

resource "aws_iam_role_policy" "service" {
  for_each = local.services
  name     = "isthmus-${each.value}"
  role     = aws_iam_role.service[each.value].id
  policy   = data.aws_iam_policy_document.service[each.value].json
}
