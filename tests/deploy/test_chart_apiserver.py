"""The rendered chart accepted by a real Kubernetes API server (kube-apiserver v1.34.2 + etcd, started by
tests/infra/kube.sh): server-side dry-run creates run the full validation the OpenAPI schemas cannot
express (label and name formats, port and NodePort ranges, probe and policy semantics, defaulting).
Nothing is stored. The custom resources (KEDA ScaledObject, ServiceMonitor) have no CRD there: skipped.

Needs ``.tools/bin/kube-apiserver`` (tools/tools.d/kube-apiserver.sh) and etcd; without them the tests
skip locally and fail under CI=true. ``ISTHMUS_TEST_KUBECONFIG`` points them at a server you run."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from isthmus_core.testing.infra import missing_tool

ROOT = Path(__file__).resolve().parents[2]
KUBE_SH = ROOT / "tests" / "infra" / "kube.sh"
NAMESPACE = "isthmus"  # what the ``chart`` fixture renders into
CRD_KINDS = {"ScaledObject", "ServiceMonitor"}
DIST = {"deploymentMode": "Distributed", "kafka.bootstrapServers": "kafka.data:9092"}
pytestmark = pytest.mark.filterwarnings("ignore::urllib3.exceptions.InsecureRequestWarning")  # loopback
VARIANTS = {
    "all-in-one": {
        "services.agent-orchestrator.service.type": "NodePort",
        "services.agent-orchestrator.service.nodePort": "30051",
        "ingress.allowedNamespaces[0]": "apps",
        "ingress.cidrs[0]": "10.20.0.0/16",
    },
    "distributed": {
        **DIST,
        "otel.endpoint": "http://otel.obs:4317",
        "weaviate.url": "https://weaviate.data",
        "kafka.networkPeers[0].ipBlock.cidr": "10.30.0.0/16",
        "services.agent-orchestrator.secrets.OPENAI_API_KEY.existingSecret": "llm",
        "services.agent-orchestrator.secrets.OPENAI_API_KEY.key": "api-key",
        "region": "us-east-1",
        "backups.bucket": "isthmus-backups-use1",
    },
    "keda": {**DIST, "keda.enabled": "true", "metrics.serviceMonitor.enabled": "true"},
    # the web console (on in every render: base-values.yaml) with its Ingress and its read-only Role
    "console-exposed": {
        **DIST,
        "console.ingress.enabled": "true",
        "console.ingress.host": "console.example.com",
        "console.ingress.tls.secretName": "console-tls",
        "console.service.type": "NodePort",
        "console.service.nodePort": "30088",
        "services.console.settings.KUBE_NAMESPACE": NAMESPACE,
    },
    "kafka-sasl-private-ca": {
        **DIST,
        "kafka.securityProtocol": "SASL_SSL",
        "kafka.sasl.mechanism": "SCRAM-SHA-512",
        "kafka.sasl.username": "isthmus",
        "kafka.sasl.passwordSecretRef.existingSecret": "kafka-credentials",
        "kafka.sasl.passwordSecretRef.key": "password",
        "kafka.tls.caSecretRef.existingSecret": "kafka-ca",
        "kafka.tls.caSecretRef.key": "ca.crt",
    },
}


_missing = missing_tool


def _binary(name: str) -> str | None:
    local = ROOT / ".tools" / "bin" / name
    return str(local) if local.exists() else shutil.which(name)


@pytest.fixture(scope="module")
def api() -> Iterator[Any]:
    from kubernetes import client, config, dynamic

    given = os.environ.get("ISTHMUS_TEST_KUBECONFIG")
    data: Path | None = None
    if given:
        kubeconfig = Path(given)
    else:
        if _binary("kube-apiserver") is None:
            _missing("kube-apiserver is not built: run tools/tools.d/kube-apiserver.sh (needs Go)")
        if _binary("etcd") is None:
            _missing("etcd is not installed: apt-get install etcd-server (or run tools/install-tools.sh)")
        data = Path(tempfile.mkdtemp(prefix="isthmus-chart-kube-"))
        proc = subprocess.run(
            ["bash", str(KUBE_SH), "up", "--dir", str(data)], capture_output=True, text=True, timeout=180
        )
        if proc.returncode != 0:
            pytest.fail(f"could not start the API server: {proc.stderr[-3000:]}", pytrace=False)
        kubeconfig = Path(proc.stdout.strip().splitlines()[-1])
    try:
        api_client = config.new_client_from_config(config_file=str(kubeconfig))
        core = client.CoreV1Api(api_client)
        try:
            core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=NAMESPACE)))
        except client.ApiException as exc:
            if exc.status != 409:
                raise
        yield dynamic.DynamicClient(api_client)
        api_client.close()
    finally:
        if data is not None:
            subprocess.run(
                ["bash", str(KUBE_SH), "down", "--dir", str(data)], capture_output=True, timeout=60
            )


@pytest.mark.parametrize("values", list(VARIANTS.values()), ids=list(VARIANTS))
def test_the_api_server_accepts_every_rendered_object(chart: Any, api: Any, values: dict[str, str]) -> None:
    from kubernetes.client import ApiException

    docs = chart.render(*[a for k, v in values.items() for a in ("--set", f"{k}={v}")])
    accepted, rejected = [], []
    for d in docs:
        if d["kind"] in CRD_KINDS:
            continue
        resource = api.resources.get(api_version=d["apiVersion"], kind=d["kind"])
        try:
            out = resource.create(body=d, namespace=NAMESPACE, dry_run="All")
        except ApiException as exc:
            rejected.append(f"{d['kind']}/{d['metadata']['name']}: {exc.body}")
            continue
        assert out.metadata.name == d["metadata"]["name"]
        accepted.append(d["kind"])
    assert rejected == []
    assert {"Deployment", "Service", "NetworkPolicy", "PodDisruptionBudget", "ServiceAccount"} <= set(
        accepted
    )
