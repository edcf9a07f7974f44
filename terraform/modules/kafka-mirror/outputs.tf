output "role_arn" {
  description = "IAM role MirrorMaker 2 runs with."
  value       = aws_iam_role.this.arn
}

output "deployment_name" {
  description = "Name of the MirrorMaker 2 Deployment."
  value       = kubernetes_deployment_v1.this.metadata[0].name
}
