# DNS failover for the public gRPC endpoint: one name, PRIMARY in us-east-1 and SECONDARY in eu-west-1.
# Each record has a Route 53 health check that follows its region's CloudWatch alarm "a public gRPC
# service has no healthy target" (targets are health-checked with grpc.health.v1.Health/Check), and the
# alias also evaluates the load balancer's own target health.

resource "aws_route53_health_check" "grpc_use1" {
  provider                        = aws.use1
  type                            = "CLOUDWATCH_METRIC"
  cloudwatch_alarm_name           = module.use1.grpc_health_alarm_name
  cloudwatch_alarm_region         = local.regions.use1.aws_region
  insufficient_data_health_status = "Unhealthy"
  tags                            = { Name = "isthmus-prod-use1-grpc" }
}

resource "aws_route53_health_check" "grpc_euw1" {
  provider                        = aws.use1
  type                            = "CLOUDWATCH_METRIC"
  cloudwatch_alarm_name           = module.euw1.grpc_health_alarm_name
  cloudwatch_alarm_region         = local.regions.euw1.aws_region
  insufficient_data_health_status = "Unhealthy"
  tags                            = { Name = "isthmus-prod-euw1-grpc" }
}

resource "aws_route53_record" "grpc_primary" {
  provider        = aws.use1
  zone_id         = var.dns_zone_id
  name            = var.grpc_hostname
  type            = "A"
  set_identifier  = "use1"
  health_check_id = aws_route53_health_check.grpc_use1.id

  failover_routing_policy {
    type = "PRIMARY"
  }

  alias {
    name                   = module.use1.grpc_lb_dns_name
    zone_id                = module.use1.grpc_lb_zone_id
    evaluate_target_health = true
  }
}

resource "aws_route53_record" "grpc_secondary" {
  provider        = aws.use1
  zone_id         = var.dns_zone_id
  name            = var.grpc_hostname
  type            = "A"
  set_identifier  = "euw1"
  health_check_id = aws_route53_health_check.grpc_euw1.id

  failover_routing_policy {
    type = "SECONDARY"
  }

  alias {
    name                   = module.euw1.grpc_lb_dns_name
    zone_id                = module.euw1.grpc_lb_zone_id
    evaluate_target_health = true
  }
}
