# The Isthmus Helm release of this region. The module's values wire the chart to the region: deployment
# mode, image, the MSK bootstrap brokers (IAM auth over TLS, port 9098), each service account's IAM role,
# fixed NodePorts for the public services (the load balancer's targets), the backups bucket annotation,
# the identity provider (auth_*) and the role bindings (platform_bindings, tenant_bindings, or the
# operator's access ConfigMap).
# The edge pool's NoSchedule taint keeps the services off it (no scheduling values are needed).
# var.extra_values are applied after these (Helm merges values files in order).

locals {
  chart_path = var.chart != "" ? var.chart : "${path.module}/../../../charts/isthmus"

  chart_values = {
    deploymentMode = var.deployment_mode
    image = {
      repository = var.image_repository
      tag        = var.image_tag
    }
    kafka = {
      bootstrapServers  = aws_msk_cluster.this.bootstrap_brokers_sasl_iam
      replicationFactor = 3
      # MSK's IAM listener: TLS + SASL/OAUTHBEARER tokens signed with each service's IRSA role (irsa.tf)
      securityProtocol = "SASL_SSL"
      sasl             = { mechanism = "AWS_MSK_IAM" }
    }
    region = local.region
    services = {
      for s in local.services : s => merge(
        {
          serviceAccount = {
            create      = true
            name        = "${var.release_name}-${s}"
            annotations = { "eks.amazonaws.com/role-arn" = aws_iam_role.service[s].arn }
          }
        },
        contains(keys(var.public_grpc_services), s) ? {
          service = { type = "NodePort", nodePort = var.public_grpc_services[s] }
        } : {},
      )
    }
    backups = {
      bucket = aws_s3_bucket.backups.id
    }
    # who may call: bearer JWTs from the identity provider (the chart refuses to run without auth)
    auth = {
      mode     = "oidc"
      issuer   = var.auth_issuer
      jwksUrl  = var.auth_jwks_url
      audience = var.auth_audience
      serviceClient = {
        tokenUrl = var.auth_service_client == null ? "" : var.auth_service_client.token_url
        clientId = var.auth_service_client == null ? "" : var.auth_service_client.client_id
        clientSecretRef = {
          name = var.auth_service_client == null ? "" : var.auth_service_client.secret_name
          key  = var.auth_service_client == null ? "" : var.auth_service_client.secret_key
        }
      }
    }
    # what each principal may do: the access file (ConfigMap <release>-access, or the operator's)
    access = {
      existingConfigMap = var.access_existing_configmap
      bindings          = var.platform_bindings
      tenants           = { for tenant, bindings in var.tenant_bindings : tenant => { bindings = bindings } }
    }
  }
}

resource "helm_release" "isthmus" {
  name             = var.release_name
  namespace        = var.namespace
  create_namespace = true
  chart            = var.chart_repository == null ? local.chart_path : (var.chart != "" ? var.chart : "isthmus")
  repository       = var.chart_repository
  version          = var.chart_repository == null ? null : var.chart_version
  atomic           = true
  cleanup_on_fail  = true
  wait             = true
  timeout          = 900
  max_history      = 10

  values = concat([yamlencode(local.chart_values)], var.extra_values)

  depends_on = [
    aws_eks_node_group.this,
    aws_eks_addon.this,
    aws_iam_role_policy.service,
  ]
}
