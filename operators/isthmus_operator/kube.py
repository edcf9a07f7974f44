"""The few Kubernetes API calls the operator makes, and the ConfigMap metrics source.

The official client is synchronous; every call runs in a worker thread (``asyncio.to_thread``) and
returns plain dicts (raw JSON, no generated models). API errors become Isthmus errors: 404 → NotFound,
400/422 → InvalidArgument, anything else (403 from missing RBAC, 5xx, connection refused) → Unavailable,
which the handlers retry with a delay.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal, Protocol, cast

import urllib3
from kubernetes import client, config

from isthmus_core.errors import InvalidArgument, IsthmusError, NotFound, Unavailable
from isthmus_operator.names import GROUP, MANAGED_BY, TENANT_PLURAL, VERSION, rollout_metrics_configmap_name
from isthmus_operator.rollout import RolloutStatus
from isthmus_operator.specs import EdgeRolloutSpec

WorkloadKind = Literal["DaemonSet", "Deployment", "StatefulSet"]


def api_client(kubeconfig: str | None = None) -> client.ApiClient:
    """In a pod: the service account; otherwise ``kubeconfig`` (or $KUBECONFIG, or ~/.kube/config)."""
    if kubeconfig is None and os.environ.get("KUBERNETES_SERVICE_HOST"):
        config.load_incluster_config()  # type: ignore[no-untyped-call]
        return client.ApiClient()
    return cast(client.ApiClient, config.new_client_from_config(config_file=kubeconfig))  # type: ignore[no-untyped-call]


def _translate(what: str, exc: Exception) -> IsthmusError:
    if isinstance(exc, client.ApiException):
        reason = exc.reason or ""
        try:
            reason = json.loads(exc.body or "{}").get("message") or reason
        except (TypeError, ValueError):
            pass
        if exc.status == 404:
            return NotFound(f"{what}: not found")
        if exc.status in (400, 422):
            return InvalidArgument(f"{what}: rejected by the API server: {reason}")
        return Unavailable(f"{what}: HTTP {exc.status}: {reason}")
    return Unavailable(f"{what}: {type(exc).__name__}: {exc}")


class Kube:
    """Namespaced ConfigMaps, workloads (DaemonSets / Deployments / StatefulSets), pods and Tenants, as
    dicts."""

    def __init__(self, api: client.ApiClient, field_manager: str = MANAGED_BY) -> None:
        self.configuration: client.Configuration = api.configuration
        self._core = client.CoreV1Api(api)
        self._apps = client.AppsV1Api(api)
        self._custom = client.CustomObjectsApi(api)
        self._manager = field_manager

    async def _run(self, what: str, call: Callable[[], Any]) -> dict[str, Any]:
        try:
            response = await asyncio.to_thread(call)
        except (client.ApiException, urllib3.exceptions.HTTPError, OSError) as exc:
            raise _translate(what, exc) from exc
        return cast(dict[str, Any], json.loads(response.data)) if response.data else {}

    async def apply_configmap(self, body: Mapping[str, Any]) -> dict[str, Any]:
        """Server-side apply: creates or updates, and drops keys this operator set before but not now."""
        meta = body["metadata"]
        return await self._run(
            f"apply ConfigMap {meta['namespace']}/{meta['name']}",
            lambda: self._core.patch_namespaced_config_map(
                meta["name"],
                meta["namespace"],
                dict(body),
                field_manager=self._manager,
                force=True,
                _content_type="application/apply-patch+yaml",
                _preload_content=False,
            ),
        )

    async def read_configmap(self, namespace: str, name: str) -> dict[str, Any] | None:
        try:
            return await self._run(
                f"read ConfigMap {namespace}/{name}",
                lambda: self._core.read_namespaced_config_map(name, namespace, _preload_content=False),
            )
        except NotFound:
            return None

    async def delete_configmap(self, namespace: str, name: str) -> bool:
        """True if it was deleted now, False if it was already gone."""
        try:
            await self._run(
                f"delete ConfigMap {namespace}/{name}",
                lambda: self._core.delete_namespaced_config_map(name, namespace, _preload_content=False),
            )
        except NotFound:
            return False
        return True

    def _workload_api(self, kind: WorkloadKind, verb: str) -> Callable[..., Any]:
        suffix = {"DaemonSet": "daemon_set", "Deployment": "deployment", "StatefulSet": "stateful_set"}[kind]
        return cast(Callable[..., Any], getattr(self._apps, f"{verb}_namespaced_{suffix}"))

    async def list_workloads(self, kind: WorkloadKind, namespace: str, selector: str) -> list[dict[str, Any]]:
        lister = self._workload_api(kind, "list")
        result = await self._run(
            f"list {kind}s in {namespace} matching {selector}",
            lambda: lister(namespace, label_selector=selector, _preload_content=False),
        )
        return list(result.get("items") or [])

    async def patch_workload(
        self, kind: WorkloadKind, namespace: str, name: str, patch: Mapping[str, Any]
    ) -> dict[str, Any]:
        """Strategic-merge patch (list entries merge by key, e.g. containers by name; null removes)."""
        patcher = self._workload_api(kind, "patch")
        return await self._run(
            f"patch {kind} {namespace}/{name}",
            lambda: patcher(
                name,
                namespace,
                dict(patch),
                field_manager=self._manager,
                _content_type="application/strategic-merge-patch+json",
                _preload_content=False,
            ),
        )

    async def list_pods(self, namespace: str, selector: str) -> list[dict[str, Any]]:
        result = await self._run(
            f"list pods in {namespace} matching {selector}",
            lambda: self._core.list_namespaced_pod(
                namespace, label_selector=selector, _preload_content=False
            ),
        )
        return list(result.get("items") or [])

    async def delete_pod(self, namespace: str, name: str) -> bool:
        """True if it was deleted now, False if it was already gone."""
        try:
            await self._run(
                f"delete pod {namespace}/{name}",
                lambda: self._core.delete_namespaced_pod(name, namespace, _preload_content=False),
            )
        except NotFound:
            return False
        return True

    async def get_tenant(self, namespace: str, name: str) -> dict[str, Any] | None:
        try:
            return await self._run(
                f"read Tenant {namespace}/{name}",
                lambda: self._custom.get_namespaced_custom_object(
                    GROUP, VERSION, namespace, TENANT_PLURAL, name, _preload_content=False
                ),
            )
        except NotFound:
            return None

    async def list_tenants(self, namespace: str) -> list[dict[str, Any]]:
        """Every Tenant of a namespace (a quorum read: what was written before is in it)."""
        result = await self._run(
            f"list Tenants in {namespace}",
            lambda: self._custom.list_namespaced_custom_object(
                GROUP, VERSION, namespace, TENANT_PLURAL, _preload_content=False
            ),
        )
        return list(result.get("items") or [])

    async def patch_tenant(self, namespace: str, name: str, patch: Mapping[str, Any]) -> dict[str, Any]:
        """JSON merge patch of a Tenant (its spec: the CRD schema and CEL rules check the result)."""
        return await self._run(
            f"patch Tenant {namespace}/{name}",
            lambda: self._custom.patch_namespaced_custom_object(
                GROUP,
                VERSION,
                namespace,
                TENANT_PLURAL,
                name,
                dict(patch),
                field_manager=self._manager,
                _content_type="application/merge-patch+json",
                _preload_content=False,
            ),
        )


@dataclass(frozen=True, slots=True)
class MetricsRequest:
    """What a metrics source is asked: the rollout (its spec and typed status say which bundles and since
    when: :mod:`isthmus_operator.gate_metrics`)."""

    namespace: str
    rollout: str
    spec: EdgeRolloutSpec
    status: RolloutStatus


class MetricsSource(Protocol):
    """Where a rollout's evaluation metrics come from: entries ``baseline``, ``wave-1`` … as JSON text
    (an object of metric name → number; a metric absent from an entry holds the rollout on its gate)."""

    async def read(self, request: MetricsRequest) -> dict[str, str]: ...

    def describe(self, namespace: str, rollout: str) -> str: ...


class ConfigMapMetricsSource:
    """Metrics in ConfigMap ``isthmus-rollout-metrics-<rollout>`` next to the rollout, one key per entry
    (absent ConfigMap = no metrics yet). Whoever measures a wave writes it — by hand or a job of yours
    (operator setting ``rollout_metrics = "configmap"``; the default reads the evaluation service:
    :class:`~isthmus_operator.evaluation.EvaluationMetricsSource`)."""

    def __init__(self, kube: Kube) -> None:
        self._kube = kube

    async def read(self, request: MetricsRequest) -> dict[str, str]:
        name = rollout_metrics_configmap_name(request.rollout)
        cm = await self._kube.read_configmap(request.namespace, name)
        return dict((cm or {}).get("data") or {})

    def describe(self, namespace: str, rollout: str) -> str:
        return f"ConfigMap {namespace}/{rollout_metrics_configmap_name(rollout)}"
