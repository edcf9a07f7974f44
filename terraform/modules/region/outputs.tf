output "region" {
  description = "AWS region of this Isthmus region."
  value       = local.region
}

output "vpc_id" {
  description = "ID of the region's VPC."
  value       = aws_vpc.this.id
}

output "vpc_cidr" {
  description = "IPv4 CIDR of the region's VPC."
  value       = aws_vpc.this.cidr_block
}

output "private_route_table_ids" {
  description = "Route tables of the private subnets (routes to peered regions are added to these)."
  value       = [for rt in aws_route_table.private : rt.id]
}

output "kms_key_arn" {
  description = "ARN of the region's KMS key (EKS secrets, Kafka, backups, logs)."
  value       = aws_kms_key.this.arn
}

output "cluster_name" {
  description = "Name of the EKS cluster."
  value       = aws_eks_cluster.this.name
}

output "cluster_endpoint" {
  description = "Private HTTPS endpoint of the EKS API server."
  value       = aws_eks_cluster.this.endpoint
}

output "cluster_ca_certificate" {
  description = "Base64-encoded CA certificate of the EKS API server."
  value       = aws_eks_cluster.this.certificate_authority[0].data
}

output "oidc_provider_arn" {
  description = "ARN of the cluster's IAM OIDC provider (for more IRSA roles, e.g. MirrorMaker 2)."
  value       = aws_iam_openid_connect_provider.this.arn
}

output "oidc_issuer_host" {
  description = "OIDC issuer of the cluster without https:// (the condition-key prefix of IRSA trust policies)."
  value       = local.oidc_issuer_host
}

output "kafka_cluster_arn" {
  description = "ARN of the MSK cluster."
  value       = aws_msk_cluster.this.arn
}

output "kafka_bootstrap_brokers_iam" {
  description = "MSK bootstrap brokers for SASL/IAM over TLS (port 9098)."
  value       = aws_msk_cluster.this.bootstrap_brokers_sasl_iam
}

output "backup_bucket_arn" {
  description = "ARN of the backups bucket."
  value       = aws_s3_bucket.backups.arn
}

output "backup_bucket_name" {
  description = "Name of the backups bucket."
  value       = aws_s3_bucket.backups.id
}

output "service_role_arns" {
  description = "IAM role ARN of each Isthmus service account, by service."
  value       = { for s, r in aws_iam_role.service : s => r.arn }
}

output "namespace" {
  description = "Namespace of the Isthmus release."
  value       = helm_release.isthmus.namespace
}

output "grpc_lb_dns_name" {
  description = "DNS name of the regional gRPC load balancer."
  value       = aws_lb.grpc.dns_name
}

output "grpc_lb_zone_id" {
  description = "Route 53 hosted zone ID of the regional gRPC load balancer (for alias records)."
  value       = aws_lb.grpc.zone_id
}

output "grpc_health_alarm_name" {
  description = "CloudWatch alarm that is in ALARM when a public gRPC service of the region has no healthy target."
  value       = aws_cloudwatch_metric_alarm.grpc_unhealthy.alarm_name
}
