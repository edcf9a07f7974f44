"""The chart's Distributed shape on the cluster tier's node, installed the way an operator installs it:
Kafka and an OIDC provider (Ory Hydra) as pods in the release's namespace (manifest
tests/infra/cluster/distributed/infra.yaml, image from tests/infra/cluster-infra.sh), two Hydra clients (the
platform's own service client, its secret in a Secret the chart references, and a caller bound
platform-admin in the access file), then ``helm upgrade --install --wait`` with ``deploymentMode:
Distributed``. Used by tests/cluster (distributed, faults) and the cluster benchmark; no pytest here."""

from __future__ import annotations

import json
import secrets
import string
import subprocess
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx

from isthmus_core.testing.kube_node import ROOT, KubeError, KubeNode, isthmus_values, merge

INFRA_SH = ROOT / "tests" / "infra" / "cluster-infra.sh"
INFRA_MANIFEST = ROOT / "tests" / "infra" / "cluster" / "distributed" / "infra.yaml"
SERVICES = ("agent-orchestrator", "embedding", "evaluation", "guardrail", "ingestion", "retrieval")
AUDIENCE = "isthmus"
SERVICE_CLIENT = "isthmus-platform"  # the deployment's own client (auth.serviceClient)
CALLER = "dist-admin"  # the test's caller, bound platform-admin


def infra_image(timeout: float = 1200) -> str:
    """Build (once per input digest) and import the Kafka + Hydra image; its reference."""
    proc = subprocess.run(
        ["bash", str(INFRA_SH)], capture_output=True, text=True, timeout=timeout, cwd=ROOT, check=False
    )
    if proc.returncode != 0:
        raise KubeError(f"tests/infra/cluster-infra.sh failed: {proc.stderr[-3000:]}")
    return proc.stdout.strip().splitlines()[-1]


@dataclass
class Hydra:
    """Hydra in the namespace: its issuer as pods see it (the tokens' iss), its APIs as this machine reaches
    them (Service ClusterIPs through kube-proxy)."""

    issuer: str
    public_url: str
    admin_url: str
    clients: dict[str, str] = field(default_factory=dict)  # client id -> secret
    _tokens: dict[str, tuple[str, float]] = field(default_factory=dict)

    @property
    def token_url_in_cluster(self) -> str:
        return self.issuer.rstrip("/") + "/oauth2/token"

    def client(self, client_id: str, secret: str | None = None, *, audience: str = AUDIENCE) -> str:
        """Register a client-credentials client; its secret."""
        secret = secret or secrets.token_urlsafe(24)
        body = {
            "client_id": client_id,
            "client_secret": secret,
            "client_name": client_id,
            "grant_types": ["client_credentials"],
            "response_types": ["token"],
            "audience": [audience],
            "token_endpoint_auth_method": "client_secret_basic",
        }
        response = httpx.post(f"{self.admin_url}/admin/clients", json=body, timeout=30)
        if response.status_code >= 300:
            raise KubeError(f"hydra: registering client {client_id}: {response.status_code} {response.text}")
        self.clients[client_id] = secret
        return secret

    def token(self, client_id: str = CALLER, *, audience: str = AUDIENCE) -> str:
        """A client-credentials access token (JWT) for a registered client, reused until a minute before
        it expires."""
        cached = self._tokens.get(client_id)
        if cached and cached[1] > time.monotonic() + 60:
            return cached[0]
        response = httpx.post(
            f"{self.public_url}/oauth2/token",
            data={"grant_type": "client_credentials", "audience": audience},
            auth=(client_id, self.clients[client_id]),
            timeout=30,
        )
        if response.status_code != 200:
            raise KubeError(f"hydra: token for {client_id}: {response.status_code} {response.text}")
        body = response.json()
        token = str(body["access_token"])
        self._tokens[client_id] = (token, time.monotonic() + float(body.get("expires_in", 3600)))
        return token


@dataclass
class DistributedInstall:
    """One Distributed release: each service's gRPC address (``clusterIP:50051`` of its Service), Kafka's
    bootstrap address as pods see it, and Hydra (``token()`` = a platform-admin caller's bearer token)."""

    node: KubeNode
    namespace: str
    release: str
    image: str
    addresses: dict[str, str]
    kafka_bootstrap: str
    hydra: Hydra
    values: dict[str, Any]

    def token(self, client_id: str = CALLER) -> str:
        return self.hydra.token(client_id)

    def deployment(self, service: str) -> str:
        return f"{self.release}-{service}"

    def kafka_tool(self, main_class: str, *args: str, timeout: float = 120) -> str:
        """Run a Kafka command-line tool (its main class, e.g. ``org.apache.kafka.tools.GetOffsetShell``)
        inside the broker's pod, against the broker."""
        return self.node.exec(
            self.namespace,
            "deploy/kafka",
            "java",
            "-Xmx128m",
            "-XX:TieredStopAtLevel=1",
            "-XX:+UseSerialGC",
            "-cp",
            "/opt/kafka/libs/*",
            main_class,
            "--bootstrap-server",
            "localhost:9092",
            *args,
            timeout=timeout,
        )

    def topic_end_offsets(self) -> dict[str, int]:
        """Every topic's end offset summed over its partitions (records ever written)."""
        out = self.kafka_tool("org.apache.kafka.tools.GetOffsetShell")
        totals: dict[str, int] = {}
        for line in out.split():
            topic, _, offset = line.rpartition(":")
            topic = topic.rpartition(":")[0]
            if topic and offset.isdigit():
                totals[topic] = totals.get(topic, 0) + int(offset)
        return totals

    def committed_offsets(self) -> dict[tuple[str, str], int]:
        """Every consumer group's committed offsets summed per (group, topic): records each group has
        consumed (the services' groups are named after them, e.g. ``embedding``, ``ingestion-status``)."""
        out = self.kafka_tool(
            "org.apache.kafka.tools.consumer.group.ConsumerGroupCommand", "--describe", "--all-groups"
        )
        totals: dict[tuple[str, str], int] = {}
        for line in out.splitlines():
            cols = line.split()
            if len(cols) >= 4 and cols[2].isdigit() and cols[3].isdigit():
                key = (cols[0], cols[1])
                totals[key] = totals.get(key, 0) + int(cols[3])
        return totals


def _wait_rollout(node: KubeNode, namespace: str, deployment: str, timeout_s: int) -> None:
    try:
        node.kubectl(
            "-n",
            namespace,
            "rollout",
            "status",
            f"deploy/{deployment}",
            f"--timeout={timeout_s}s",
            timeout=timeout_s + 30,
        )
    except KubeError as err:
        events = node.kubectl(
            "-n", namespace, "get", "events", "--sort-by=.lastTimestamp", check=False
        ).splitlines()[-15:]
        raise KubeError(
            f"{deployment} not ready: {err}\nevents:\n"
            + "\n".join(events)
            + f"\nlogs:\n{node.logs(namespace, f'deploy/{deployment}', tail=40)}"
        ) from err


def install_infra(node: KubeNode, namespace: str, image: str, *, timeout_s: int = 180) -> tuple[str, Hydra]:
    """Kafka and Hydra in ``namespace`` from the infra image, Ready; Kafka's bootstrap address (as pods see
    it) and Hydra."""
    manifest = string.Template(INFRA_MANIFEST.read_text()).substitute(
        NAMESPACE=namespace, IMAGE=image, HYDRA_SYSTEM_SECRET=secrets.token_hex(24)
    )
    node.apply(manifest)
    for deployment in ("hydra", "kafka"):
        _wait_rollout(node, namespace, deployment, timeout_s)
    public = node.service_address(namespace, "hydra", "public")
    admin = node.service_address(namespace, "hydra", "admin")
    discovery = httpx.get(f"http://{public}/.well-known/openid-configuration", timeout=30).json()
    hydra = Hydra(issuer=str(discovery["issuer"]), public_url=f"http://{public}", admin_url=f"http://{admin}")
    return f"kafka.{namespace}.svc.cluster.local:9092", hydra


def distributed_values(
    image: str, kafka_bootstrap: str, hydra: Hydra, overrides: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """Chart values of the Distributed shape on this node: Kafka and Hydra of the namespace, one replica per
    service (two cores), the caller bound platform-admin; ``overrides`` merged over them."""
    base: dict[str, Any] = {
        "deploymentMode": "Distributed",
        "kafka": {"bootstrapServers": kafka_bootstrap, "replicationFactor": 1},
        "auth": {
            "mode": "oidc",
            "issuer": hydra.issuer,
            "serviceClient": {
                "tokenUrl": hydra.token_url_in_cluster,
                "clientId": SERVICE_CLIENT,
                "clientSecretRef": {"name": "isthmus-service-client", "key": "secret"},
            },
        },
        "access": {"bindings": [{"principal": CALLER, "role": "platform-admin"}]},
        "services": {name: {"replicas": 1, "autoscaling": {"enabled": False}} for name in SERVICES},
    }
    return isthmus_values(image, merge(base, overrides or {}))


def install_distributed(
    node: KubeNode,
    namespace: str,
    image: str,
    *,
    infra: str | None = None,
    release: str = "dist",
    overrides: Mapping[str, Any] | None = None,
    timeout_s: int = 420,
) -> DistributedInstall:
    """Kafka + Hydra in ``namespace`` (``infra`` = the infra image; built when None), the service client's
    Secret, the two Hydra clients, then the chart (Distributed) with ``helm upgrade --install --wait``.
    On a failed install the error carries the namespace's latest events and not-ready pods."""
    infra = infra or infra_image()
    kafka_bootstrap, hydra = install_infra(node, namespace, infra)
    service_secret = hydra.client(SERVICE_CLIENT)
    hydra.client(CALLER)
    node.apply(
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "isthmus-service-client", "namespace": namespace},
            "type": "Opaque",
            "stringData": {"secret": service_secret},
        }
    )
    values = distributed_values(image, kafka_bootstrap, hydra, overrides)
    try:
        node.install(release, namespace, values, timeout_s=timeout_s)
    except KubeError as err:
        raise KubeError(f"{err}\n{diagnose(node, namespace)}") from err
    addresses = {svc: node.service_address(namespace, f"{release}-{svc}") for svc in SERVICES}
    return DistributedInstall(node, namespace, release, image, addresses, kafka_bootstrap, hydra, values)


def diagnose(node: KubeNode, namespace: str) -> str:
    """The namespace's latest events, its pods' states and the logs of pods that are not Ready."""
    lines = [
        "events:",
        *node.kubectl("-n", namespace, "get", "events", "--sort-by=.lastTimestamp", check=False).splitlines()[
            -20:
        ],
    ]
    pods = json.loads(node.kubectl("-n", namespace, "get", "pods", "-o", "json", check=False) or "{}")
    for pod in pods.get("items", []):
        name = pod["metadata"]["name"]
        conditions = {c["type"]: c["status"] for c in pod.get("status", {}).get("conditions", [])}
        lines.append(f"pod {name}: {pod.get('status', {}).get('phase')} ready={conditions.get('Ready')}")
        if conditions.get("Ready") != "True":
            lines.append(node.logs(namespace, f"pod/{name}", tail=30))
    return "\n".join(lines)
