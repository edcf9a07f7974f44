# One MirrorMaker 2 node on a region's EKS cluster, in dedicated mode (Kafka's own
# org.apache.kafka.connect.mirror.MirrorMaker, from the image's Kafka jars). It drives the flows INTO the
# clusters named in var.target_clusters (consume remotely, produce locally), authenticates to every MSK
# cluster with its own IRSA role, and exposes MM2's internal REST port for probes.

locals {
  labels = {
    "app.kubernetes.io/name"      = "mirrormaker2"
    "app.kubernetes.io/instance"  = var.name
    "app.kubernetes.io/part-of"   = "isthmus"
    "app.kubernetes.io/component" = "kafka-replication"
  }
  rest_port = 8083
}

data "aws_iam_policy_document" "assume" {
  statement {
    actions = ["sts:AssumeRoleWithWebIdentity"]
    principals {
      type        = "Federated"
      identifiers = [var.oidc_provider_arn]
    }
    condition {
      test     = "StringEquals"
      variable = "${var.oidc_issuer_host}:sub"
      values   = ["system:serviceaccount:${var.namespace}:${var.name}"]
    }
    condition {
      test     = "StringEquals"
      variable = "${var.oidc_issuer_host}:aud"
      values   = ["sts.amazonaws.com"]
    }
  }
}

resource "aws_iam_role" "this" {
  name               = var.name
  description        = "MirrorMaker 2 ${var.name}: reads and writes every Isthmus cluster it mirrors between"
  assume_role_policy = data.aws_iam_policy_document.assume.json
  tags               = var.tags
}

data "aws_iam_policy_document" "kafka" {
  statement {
    sid       = "Clusters"
    actions   = ["kafka-cluster:Connect", "kafka-cluster:DescribeCluster", "kafka-cluster:WriteDataIdempotently"]
    resources = var.kafka_cluster_arns
  }

  # Source isthmus.* topics are read; remote copies (<alias>.isthmus.*), heartbeats, checkpoints,
  # offset-syncs and the Connect storage topics are created and written on the targets.
  statement {
    sid = "Topics"
    actions = [
      "kafka-cluster:CreateTopic",
      "kafka-cluster:DescribeTopic",
      "kafka-cluster:DescribeTopicDynamicConfiguration",
      "kafka-cluster:AlterTopic",
      "kafka-cluster:AlterTopicDynamicConfiguration",
      "kafka-cluster:ReadData",
      "kafka-cluster:WriteData",
    ]
    resources = [for a in var.kafka_cluster_arns : "${replace(a, ":cluster/", ":topic/")}/*"]
  }

  # Checkpoints read source consumer-group offsets; sync.group.offsets writes them on the target.
  statement {
    sid       = "Groups"
    actions   = ["kafka-cluster:DescribeGroup", "kafka-cluster:AlterGroup"]
    resources = [for a in var.kafka_cluster_arns : "${replace(a, ":cluster/", ":group/")}/*"]
  }
}

resource "aws_iam_role_policy" "kafka" {
  name   = "kafka-mirroring"
  role   = aws_iam_role.this.id
  policy = data.aws_iam_policy_document.kafka.json
}

resource "kubernetes_service_account_v1" "this" {
  metadata {
    name        = var.name
    namespace   = var.namespace
    labels      = local.labels
    annotations = { "eks.amazonaws.com/role-arn" = aws_iam_role.this.arn }
  }
  automount_service_account_token = false
}

resource "kubernetes_config_map_v1" "this" {
  metadata {
    name      = var.name
    namespace = var.namespace
    labels    = local.labels
  }
  data = {
    "mm2.properties" = var.properties
  }
}

resource "kubernetes_deployment_v1" "this" {
  #checkov:skip=CKV_K8S_43:The image is var.image, whose validation block rejects anything not pinned by an @sha256 digest; checkov cannot evaluate a variable that has no default.
  #checkov:skip=CKV_K8S_14:var.image's validation block requires an @sha256 digest, so the image is never :latest or untagged; checkov cannot evaluate a variable that has no default.
  metadata {
    name      = var.name
    namespace = var.namespace
    labels    = local.labels
  }

  spec {
    replicas = 1
    selector {
      match_labels = local.labels
    }
    # One MM2 node per region: never two at once while the config changes.
    strategy {
      type = "Recreate"
    }

    template {
      metadata {
        labels = local.labels
        annotations = {
          # Roll the pod when the properties change.
          "isthmus.dev/config-sha256" = sha256(var.properties)
        }
      }

      spec {
        service_account_name            = kubernetes_service_account_v1.this.metadata[0].name
        automount_service_account_token = false
        enable_service_links            = false

        security_context {
          run_as_non_root = true
          run_as_user     = 10001
          run_as_group    = 10001
          fs_group        = 10001
          seccomp_profile {
            type = "RuntimeDefault"
          }
        }

        node_selector = { "isthmus.dev/pool" = "system" }

        container {
          name              = "mirrormaker2"
          image             = var.image
          image_pull_policy = "Always"
          command = concat(
            ["/opt/kafka/bin/connect-mirror-maker.sh", "/etc/mm2/mm2.properties", "--clusters"],
            var.target_clusters,
          )

          env {
            name  = "KAFKA_HEAP_OPTS"
            value = "-Xms${var.resources.heap} -Xmx${var.resources.heap}"
          }
          env {
            name  = "LOG_DIR"
            value = "/tmp/kafka-logs"
          }

          port {
            name           = "rest"
            container_port = local.rest_port
          }

          resources {
            requests = {
              cpu    = var.resources.cpu_request
              memory = var.resources.memory_request
            }
            limits = {
              cpu    = var.resources.cpu_limit
              memory = var.resources.memory_limit
            }
          }

          readiness_probe {
            tcp_socket {
              port = local.rest_port
            }
            initial_delay_seconds = 20
            period_seconds        = 10
          }

          liveness_probe {
            tcp_socket {
              port = local.rest_port
            }
            initial_delay_seconds = 60
            period_seconds        = 20
            failure_threshold     = 6
          }

          security_context {
            allow_privilege_escalation = false
            privileged                 = false
            read_only_root_filesystem  = true
            run_as_non_root            = true
            capabilities {
              drop = ["ALL"]
            }
          }

          volume_mount {
            name       = "config"
            mount_path = "/etc/mm2"
            read_only  = true
          }
          volume_mount {
            name       = "tmp"
            mount_path = "/tmp"
          }
        }

        volume {
          name = "config"
          config_map {
            name = kubernetes_config_map_v1.this.metadata[0].name
          }
        }
        volume {
          name = "tmp"
          empty_dir {
            size_limit = "1Gi"
          }
        }
      }
    }
  }
}
