# Amazon MSK: brokers in the private subnets, TLS everywhere (client<->broker and between brokers), IAM
# authentication only (no anonymous clients), KMS encryption at rest, broker logs to an encrypted log group.
# Topics are created by Isthmus itself from its topic registry (auto-creation is off).

resource "aws_cloudwatch_log_group" "kafka" {
  name              = "/isthmus/${var.name}/msk-brokers"
  retention_in_days = var.log_retention_days
  kms_key_id        = aws_kms_key.this.arn
  tags              = local.tags
}

resource "aws_security_group" "kafka" {
  name        = "${var.name}-kafka"
  description = "MSK brokers of ${var.name}: IAM/TLS clients from the EKS pods and the peered regions' MirrorMaker 2"
  vpc_id      = aws_vpc.this.id
  tags        = local.tags
}

resource "aws_vpc_security_group_ingress_rule" "kafka_from_pods" {
  security_group_id            = aws_security_group.kafka.id
  description                  = "Kafka SASL/IAM over TLS from EKS nodes and pods"
  ip_protocol                  = "tcp"
  from_port                    = 9098
  to_port                      = 9098
  referenced_security_group_id = aws_eks_cluster.this.vpc_config[0].cluster_security_group_id
}

resource "aws_vpc_security_group_ingress_rule" "kafka_from_peers" {
  for_each          = toset(var.peer_cidrs)
  security_group_id = aws_security_group.kafka.id
  description       = "Kafka SASL/IAM over TLS from peered region ${each.value} (MirrorMaker 2)"
  ip_protocol       = "tcp"
  from_port         = 9098
  to_port           = 9098
  cidr_ipv4         = each.value
}

resource "aws_msk_configuration" "this" {
  name           = "${var.name}-isthmus"
  kafka_versions = [var.kafka_version]
  description    = "Isthmus broker defaults: no auto-created topics, durable writes"

  server_properties = <<-PROPERTIES
    auto.create.topics.enable = false
    default.replication.factor = 3
    min.insync.replicas = 2
    unclean.leader.election.enable = false
    num.partitions = 6
    message.max.bytes = 8388608
    replica.fetch.max.bytes = 8388608
  PROPERTIES
}

resource "aws_msk_cluster" "this" {
  cluster_name           = var.name
  kafka_version          = var.kafka_version
  number_of_broker_nodes = var.kafka_brokers_per_az * local.az_count
  enhanced_monitoring    = "PER_TOPIC_PER_PARTITION"

  broker_node_group_info {
    instance_type   = var.kafka_broker_instance_type
    client_subnets  = [for s in aws_subnet.private : s.id]
    security_groups = [aws_security_group.kafka.id]

    storage_info {
      ebs_storage_info {
        volume_size = var.kafka_volume_size_gb
      }
    }

    connectivity_info {
      public_access {
        type = "DISABLED"
      }
    }
  }

  configuration_info {
    arn      = aws_msk_configuration.this.arn
    revision = aws_msk_configuration.this.latest_revision
  }

  client_authentication {
    unauthenticated = false
    sasl {
      iam = true
    }
  }

  encryption_info {
    encryption_at_rest_kms_key_arn = aws_kms_key.this.arn
    encryption_in_transit {
      client_broker = "TLS"
      in_cluster    = true
    }
  }

  logging_info {
    broker_logs {
      cloudwatch_logs {
        enabled   = true
        log_group = aws_cloudwatch_log_group.kafka.name
      }
    }
  }

  open_monitoring {
    prometheus {
      jmx_exporter {
        enabled_in_broker = true
      }
      node_exporter {
        enabled_in_broker = true
      }
    }
  }

  tags = local.tags
}

locals {
  # IAM resource ARNs of the cluster's topics and groups: arn:...:topic/<cluster-name>/<cluster-uuid>/<topic>
  kafka_topic_arn_prefix = replace(aws_msk_cluster.this.arn, ":cluster/", ":topic/")
  kafka_group_arn_prefix = replace(aws_msk_cluster.this.arn, ":cluster/", ":group/")
}
