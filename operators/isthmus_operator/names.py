"""Names shared by the CRDs, the builders and the handlers (one place)."""

from __future__ import annotations

GROUP = "isthmus.dev"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"

TENANT_KIND = "Tenant"
TENANT_PLURAL = "tenants"
ROLLOUT_KIND = "EdgeRollout"
ROLLOUT_PLURAL = "edgerollouts"
DRILL_KIND = "FailoverDrill"
DRILL_PLURAL = "failoverdrills"

MANAGED_BY = "isthmus-operator"
LABEL_MANAGED_BY = "app.kubernetes.io/managed-by"
LABEL_TENANT = "isthmus.dev/tenant"
LABEL_ROLLOUT = "isthmus.dev/edge-rollout"
#: on an edge workload and its pod template: the exact bundle reference ``<name>@<version>``
ANNOTATION_BUNDLE = "isthmus.dev/model-bundle"
#: where kopf keeps its finalizer and progress on our objects
FINALIZER = "isthmus.dev/operator"
KOPF_PREFIX = "isthmus.dev"


def tenant_configmap_name(tenant: str) -> str:
    return f"isthmus-tenant-{tenant}"


def rollout_metrics_configmap_name(rollout: str) -> str:
    return f"isthmus-rollout-metrics-{rollout}"
