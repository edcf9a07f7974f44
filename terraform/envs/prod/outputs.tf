output "grpc_endpoint" {
  description = "Public gRPC endpoint (host:port) with DNS failover between the regions."
  value       = "${var.grpc_hostname}:443"
}

output "regions" {
  description = "Per region: AWS region, EKS cluster, Kafka bootstrap brokers and backups bucket."
  value = {
    for alias, m in { use1 = module.use1, euw1 = module.euw1 } : alias => {
      aws_region        = m.region
      cluster_name      = m.cluster_name
      kafka_bootstrap   = m.kafka_bootstrap_brokers_iam
      backup_bucket     = m.backup_bucket_name
      grpc_lb_dns_name  = m.grpc_lb_dns_name
      mirrormaker_role  = alias == "use1" ? module.mirror_use1.role_arn : module.mirror_euw1.role_arn
    }
  }
}
