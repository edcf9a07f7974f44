# Cross-region topic replication with MirrorMaker 2, active/active: the replicated topics of one region
# (isthmus_core.regions.REPLICATED_TOPICS: embedded chunks, deletions, answers, verdicts, erasures) are mirrored to the other
# as <alias>.<topic> (DefaultReplicationPolicy; remote copies never match the allow-list again, so nothing
# loops), with consumer-group checkpoints and offset sync (MM2 translates the groups' offsets onto the
# remote copies). Each region's services consume the <peer>.<topic> copies in their own cluster
# (docs/multi-region.md). Each region runs one MM2 node that drives the flow INTO its own cluster
# (--clusters <alias>: consume remotely, produce locally).
#
# Java .properties unescape backslashes, so each \. of the regex is written \\. below.

locals {
  mm2_properties = <<-PROPERTIES
    clusters = use1, euw1
    use1.bootstrap.servers = ${module.use1.kafka_bootstrap_brokers_iam}
    euw1.bootstrap.servers = ${module.euw1.kafka_bootstrap_brokers_iam}

    use1->euw1.enabled = true
    use1->euw1.topics = isthmus\\.chunks\\.embedded\\.v1|isthmus\\.documents\\.deleted\\.v1|isthmus\\.answers\\.produced\\.v1|isthmus\\.guardrail\\.verdicts\\.v1|isthmus\\.erasures\\.requested\\.v1|isthmus\\.erasures\\.applied\\.v1
    euw1->use1.enabled = true
    euw1->use1.topics = isthmus\\.chunks\\.embedded\\.v1|isthmus\\.documents\\.deleted\\.v1|isthmus\\.answers\\.produced\\.v1|isthmus\\.guardrail\\.verdicts\\.v1|isthmus\\.erasures\\.requested\\.v1|isthmus\\.erasures\\.applied\\.v1
    replication.policy.class = org.apache.kafka.connect.mirror.DefaultReplicationPolicy
    sync.topic.configs.enabled = true
    refresh.topics.interval.seconds = 30

    emit.heartbeats.enabled = true
    emit.checkpoints.enabled = true
    emit.checkpoints.interval.seconds = 20
    sync.group.offsets.enabled = true
    sync.group.offsets.interval.seconds = 20
    # the platform's own consumer groups have the same names in both regions and consume their own
    # region's history: never translate or sync them (isthmus regions mm2-properties does the same)
    groups.exclude = console-consumer-.*, connect-.*, __.*, embedding(-.*)?, evaluation(-.*)?, guardrail(-.*)?, ingestion(-.*)?, retrieval(-.*)?
    offset-syncs.topic.location = target

    replication.factor = 3
    checkpoints.topic.replication.factor = 3
    heartbeats.topic.replication.factor = 3
    offset-syncs.topic.replication.factor = 3
    offset.storage.replication.factor = 3
    status.storage.replication.factor = 3
    config.storage.replication.factor = 3

    dedicated.mode.enable.internal.rest = true
    listeners = http://0.0.0.0:8083

    use1.security.protocol = SASL_SSL
    use1.sasl.mechanism = AWS_MSK_IAM
    use1.sasl.jaas.config = software.amazon.msk.auth.iam.IAMLoginModule required;
    use1.sasl.client.callback.handler.class = software.amazon.msk.auth.iam.IAMClientCallbackHandler
    euw1.security.protocol = SASL_SSL
    euw1.sasl.mechanism = AWS_MSK_IAM
    euw1.sasl.jaas.config = software.amazon.msk.auth.iam.IAMLoginModule required;
    euw1.sasl.client.callback.handler.class = software.amazon.msk.auth.iam.IAMClientCallbackHandler
  PROPERTIES

  mm2_kafka_cluster_arns = [module.use1.kafka_cluster_arn, module.euw1.kafka_cluster_arn]
}

module "mirror_use1" {
  source = "../../modules/kafka-mirror"
  providers = {
    aws        = aws.use1
    kubernetes = kubernetes.use1
  }

  name               = "isthmus-prod-use1-mm2"
  namespace          = module.use1.namespace
  properties         = local.mm2_properties
  target_clusters    = ["use1"]
  kafka_cluster_arns = local.mm2_kafka_cluster_arns
  oidc_provider_arn  = module.use1.oidc_provider_arn
  oidc_issuer_host   = module.use1.oidc_issuer_host
  image              = var.mirrormaker_image

  depends_on = [aws_route.use1_to_euw1, aws_route.euw1_to_use1]
}

module "mirror_euw1" {
  source = "../../modules/kafka-mirror"
  providers = {
    aws        = aws.euw1
    kubernetes = kubernetes.euw1
  }

  name               = "isthmus-prod-euw1-mm2"
  namespace          = module.euw1.namespace
  properties         = local.mm2_properties
  target_clusters    = ["euw1"]
  kafka_cluster_arns = local.mm2_kafka_cluster_arns
  oidc_provider_arn  = module.euw1.oidc_provider_arn
  oidc_issuer_host   = module.euw1.oidc_issuer_host
  image              = var.mirrormaker_image

  depends_on = [aws_route.use1_to_euw1, aws_route.euw1_to_use1]
}
