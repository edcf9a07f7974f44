# The region's public gRPC endpoint: an Application Load Balancer (HTTPS listener, TLS 1.2+, HTTP/2 gRPC)
# behind AWS WAF. Each public service has a gRPC target group on its NodePort whose health check calls the
# standard grpc.health.v1.Health/Check the services serve; a CloudWatch alarm on the healthy target count
# is what Route 53's failover health check reads (see envs/*/dns.tf).

locals {
  # Listener default = first public service (alphabetical); the others are routed by gRPC path.
  default_public_service = sort(keys(var.public_grpc_services))[0]
  routed_public_services = { for s, p in var.public_grpc_services : s => p if s != local.default_public_service }
  # Node pools that run the services (no taints) receive the load balancer's traffic.
  service_node_groups = toset([for n, g in var.node_groups : n if length(g.taints) == 0])
  lb_attachments = {
    for pair in setproduct(keys(var.public_grpc_services), tolist(local.service_node_groups)) :
    "${pair[0]}/${pair[1]}" => { service = pair[0], node_group = pair[1] }
  }
}

resource "aws_security_group" "grpc_lb" {
  name        = "${var.name}-grpc-lb"
  description = "Public gRPC load balancer of ${var.name}: TLS from clients, NodePorts to the nodes"
  vpc_id      = aws_vpc.this.id
  tags        = local.tags
}

resource "aws_vpc_security_group_ingress_rule" "grpc_lb_https" {
  for_each          = toset(var.grpc_ingress_cidrs)
  security_group_id = aws_security_group.grpc_lb.id
  description       = "gRPC over TLS from ${each.value}"
  ip_protocol       = "tcp"
  from_port         = 443
  to_port           = 443
  cidr_ipv4         = each.value
}

resource "aws_vpc_security_group_egress_rule" "grpc_lb_to_nodes" {
  for_each                     = var.public_grpc_services
  security_group_id            = aws_security_group.grpc_lb.id
  description                  = "${each.key} NodePort on the nodes"
  ip_protocol                  = "tcp"
  from_port                    = each.value
  to_port                      = each.value
  referenced_security_group_id = aws_security_group.nodes.id
}

resource "aws_lb" "grpc" {
  name                       = "${var.name}-grpc"
  load_balancer_type         = "application"
  internal                   = false
  subnets                    = [for s in aws_subnet.public : s.id]
  security_groups            = [aws_security_group.grpc_lb.id]
  drop_invalid_header_fields = true
  enable_deletion_protection = true
  enable_http2               = true
  idle_timeout               = 300 # long-lived AskStream / Upload streams

  access_logs {
    bucket  = aws_s3_bucket.logs.id
    prefix  = "grpc-lb"
    enabled = true
  }

  tags = local.tags

  depends_on = [aws_s3_bucket_policy.logs]
}

resource "aws_lb_target_group" "grpc" {
  #checkov:skip=CKV_AWS_378:Reached only through the HTTPS:443 listener (TLS 1.2+ terminates at the ALB); the graph check follows the listener's default action but not listener rules, so it flags the path-routed groups only. The services serve plaintext gRPC (h2c) on a NodePort that only the ALB's security group may reach.
  for_each             = var.public_grpc_services
  name                 = trimsuffix(substr("${var.name}-${each.key}", 0, 32), "-")
  port                 = each.value
  protocol             = "HTTP"
  protocol_version     = "GRPC"
  target_type          = "instance"
  vpc_id               = aws_vpc.this.id
  deregistration_delay = 30

  health_check {
    enabled             = true
    protocol            = "HTTP"
    path                = "/grpc.health.v1.Health/Check"
    matcher             = "0" # gRPC status OK (SERVING)
    interval            = 10
    timeout             = 5
    healthy_threshold   = 2
    unhealthy_threshold = 3
  }

  tags = merge(local.tags, { "isthmus.dev/service" = each.key })
}

resource "aws_lb_listener" "grpc" {
  load_balancer_arn = aws_lb.grpc.arn
  port              = 443
  protocol          = "HTTPS"
  ssl_policy        = "ELBSecurityPolicy-TLS13-1-2-2021-06"
  certificate_arn   = var.grpc_certificate_arn

  default_action {
    type             = "forward"
    target_group_arn = aws_lb_target_group.grpc[local.default_public_service].arn
  }

  tags = local.tags
}

resource "aws_lb_listener_rule" "grpc" {
  for_each     = local.routed_public_services
  listener_arn = aws_lb_listener.grpc.arn
  priority     = 10 + index(sort(keys(local.routed_public_services)), each.key)

  condition {
    path_pattern {
      values = ["/${local.grpc_service_names[each.key]}/*"]
    }
  }

  action {
    type             = "forward"
    target_group_arn = aws_lb_target_group.grpc[each.key].arn
  }

  tags = local.tags
}

resource "aws_autoscaling_attachment" "grpc" {
  #checkov:skip=CKV2_AWS_15:The ASG belongs to the EKS managed node group, whose node health EKS manages; ELB health checks on it would terminate healthy nodes whenever one service's pods fail their gRPC health check (an application failure, handled by Kubernetes and by DNS failover).
  for_each               = local.lb_attachments
  autoscaling_group_name = aws_eks_node_group.this[each.value.node_group].resources[0].autoscaling_groups[0].name
  lb_target_group_arn    = aws_lb_target_group.grpc[each.value.service].arn
}

# --- WAF -----------------------------------------------------------------------------------------------

resource "aws_wafv2_web_acl" "grpc" {
  name        = "${var.name}-grpc"
  description = "Managed protections and per-client rate limit for the Isthmus gRPC endpoint"
  scope       = "REGIONAL"

  default_action {
    allow {}
  }

  rule {
    name     = "aws-common"
    priority = 10
    override_action {
      none {}
    }
    statement {
      managed_rule_group_statement {
        vendor_name = "AWS"
        name        = "AWSManagedRulesCommonRuleSet"
        # gRPC bodies are binary protobuf: body-inspection rules of this set misfire on them.
        rule_action_override {
          name = "SizeRestrictions_BODY"
          action_to_use {
            count {}
          }
        }
        rule_action_override {
          name = "CrossSiteScripting_BODY"
          action_to_use {
            count {}
          }
        }
      }
    }
    visibility_config {
      cloudwatch_metrics_enabled = true
      metric_name                = "${var.name}-aws-common"
      sampled_requests_enabled   = true
    }
  }

  rule {
    name     = "aws-known-bad-inputs"
    priority = 20
    override_action {
      none {}
    }
    statement {
      managed_rule_group_statement {
        vendor_name = "AWS"
        name        = "AWSManagedRulesKnownBadInputsRuleSet"
      }
    }
    visibility_config {
      cloudwatch_metrics_enabled = true
      metric_name                = "${var.name}-known-bad-inputs"
      sampled_requests_enabled   = true
    }
  }

  # Anonymizers (Tor, VPN exits) are blocked; hosting-provider addresses only counted, because backend
  # clients of the gRPC API legitimately run in clouds.
  rule {
    name     = "aws-anonymous-ip"
    priority = 25
    override_action {
      none {}
    }
    statement {
      managed_rule_group_statement {
        vendor_name = "AWS"
        name        = "AWSManagedRulesAnonymousIpList"
        rule_action_override {
          name = "HostingProviderIPList"
          action_to_use {
            count {}
          }
        }
      }
    }
    visibility_config {
      cloudwatch_metrics_enabled = true
      metric_name                = "${var.name}-anonymous-ip"
      sampled_requests_enabled   = true
    }
  }

  rule {
    name     = "per-ip-rate-limit"
    priority = 30
    action {
      block {}
    }
    statement {
      rate_based_statement {
        limit              = 6000
        aggregate_key_type = "IP"
      }
    }
    visibility_config {
      cloudwatch_metrics_enabled = true
      metric_name                = "${var.name}-rate-limit"
      sampled_requests_enabled   = true
    }
  }

  visibility_config {
    cloudwatch_metrics_enabled = true
    metric_name                = "${var.name}-grpc"
    sampled_requests_enabled   = true
  }

  tags = local.tags
}

resource "aws_wafv2_web_acl_association" "grpc" {
  resource_arn = aws_lb.grpc.arn
  web_acl_arn  = aws_wafv2_web_acl.grpc.arn
}

resource "aws_cloudwatch_log_group" "waf" {
  # WAF requires the aws-waf-logs- prefix.
  name              = "aws-waf-logs-${var.name}"
  retention_in_days = var.log_retention_days
  kms_key_id        = aws_kms_key.this.arn
  tags              = local.tags
}

resource "aws_wafv2_web_acl_logging_configuration" "grpc" {
  resource_arn            = aws_wafv2_web_acl.grpc.arn
  log_destination_configs = [aws_cloudwatch_log_group.waf.arn]
}

# --- health signal for DNS failover --------------------------------------------------------------------

# ALARM when any public service has no healthy target (its gRPC health check fails on every node), or
# when the metric stops arriving. Route 53's CLOUDWATCH_METRIC health check on this alarm moves the
# regional gRPC name to the other region.
resource "aws_cloudwatch_metric_alarm" "grpc_unhealthy" {
  alarm_name          = "${var.name}-grpc-unhealthy"
  alarm_description   = "Isthmus ${var.name}: a public gRPC service has no healthy target"
  comparison_operator = "LessThanThreshold"
  threshold           = 1
  evaluation_periods  = 3
  datapoints_to_alarm = 2
  treat_missing_data  = "breaching"

  metric_query {
    id          = "healthy"
    expression  = "MIN([${join(", ", [for i, s in sort(keys(var.public_grpc_services)) : "m${i}"])}])"
    label       = "Healthy targets of the least healthy public service"
    return_data = true
  }

  dynamic "metric_query" {
    for_each = sort(keys(var.public_grpc_services))
    content {
      id = "m${metric_query.key}"
      metric {
        namespace   = "AWS/ApplicationELB"
        metric_name = "HealthyHostCount"
        period      = 60
        stat        = "Minimum"
        dimensions = {
          LoadBalancer = aws_lb.grpc.arn_suffix
          TargetGroup  = aws_lb_target_group.grpc[metric_query.value].arn_suffix
        }
      }
    }
  }

  tags = local.tags
}
