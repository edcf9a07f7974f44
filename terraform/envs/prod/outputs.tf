output "grpc_endpoint" {
  description = "Public gRPC endpoint (host:port) with DNS failover from use1 to euw1."
  value       = "${var.grpc_hostname}:443"
}

output "regions" {
  description = "Per region alias: AWS region, EKS cluster, Kafka bootstrap brokers, backups bucket, load balancer and MirrorMaker 2 role."
  value = {
    use1 = {
      aws_region       = module.use1.region
      cluster_name     = module.use1.cluster_name
      kafka_bootstrap  = module.use1.kafka_bootstrap_brokers_iam
      backup_bucket    = module.use1.backup_bucket_name
      grpc_lb_dns_name = module.use1.grpc_lb_dns_name
      mirrormaker_role = module.mirror_use1.role_arn
    }
    euw1 = {
      aws_region       = module.euw1.region
      cluster_name     = module.euw1.cluster_name
      kafka_bootstrap  = module.euw1.kafka_bootstrap_brokers_iam
      backup_bucket    = module.euw1.backup_bucket_name
      grpc_lb_dns_name = module.euw1.grpc_lb_dns_name
      mirrormaker_role = module.mirror_euw1.role_arn
    }
  }
}
