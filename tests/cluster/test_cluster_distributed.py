"""The chart's Distributed shape installed with `helm install --wait` on a real node: one Deployment per
service from the image built by `make image`, Kafka (KRaft) and Ory Hydra as pods in the namespace
(isthmus_core.testing.kube_platform). Through each service's Service (ClusterIP, via kube-proxy — what an
in-cluster client reaches) a user gets health, reflection, and ingest → indexed → a cited answer with a
Hydra client-credentials token; the events really went through Kafka (topics written, consumer groups
committed), and the NetworkPolicies as installed, evaluated against the live pods' labels, allow exactly
the gRPC call graph of the modules plus DNS, Kafka and the identity provider. One install for the module."""

from __future__ import annotations

import asyncio
import json
import subprocess
import time
import uuid
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from isthmus.agent_orchestrator.v1 import agent_orchestrator_pb2 as ao
from isthmus.agent_orchestrator.v1 import agent_orchestrator_pb2_grpc as ao_grpc
from isthmus.retrieval.v1 import retrieval_pb2, retrieval_pb2_grpc
from isthmus_cli.modules import MODULES
from isthmus_core.testing.client import bearer_channel, upload, wait_indexed
from isthmus_core.testing.kube_node import KubeNode
from isthmus_core.testing.kube_platform import SERVICES, DistributedInstall, install_distributed
from isthmus_ingestion.parsing import parse_document

pytestmark = [pytest.mark.cluster, pytest.mark.slow, pytest.mark.timeout(1500)]

TENANT = "acme"
DOC = (
    b"# Swept wings\n\nThe boundary layer on a swept wing thickens toward the tip because spanwise flow "
    b"carries low-momentum air outboard.\nWing fences and vortex generators limit that spanwise flow.\n"
)
HEALTH = {
    "ingestion": "isthmus.ingestion.v1.IngestionService",
    "embedding": "isthmus.embedding.v1.EmbeddingService",
    "retrieval": "isthmus.retrieval.v1.RetrievalService",
    "guardrail": "isthmus.guardrail.v1.GuardrailService",
    "agent-orchestrator": "isthmus.agent_orchestrator.v1.AgentOrchestratorService",
    "evaluation": "isthmus.evaluation.v1.EvaluationService",
}
CALLEES = {m.name: set(m.depends_on) for m in MODULES}  # the real gRPC call graph


@pytest.fixture(scope="module")
def dist(kube_node: KubeNode, isthmus_image: str) -> Iterator[DistributedInstall]:
    namespace = f"dist-{uuid.uuid4().hex[:6]}"
    kube_node.create_namespace(namespace)
    try:
        yield install_distributed(kube_node, namespace, isthmus_image)
    finally:
        kube_node.delete_namespace(namespace)


def test_every_service_runs_ready_healthy_and_reflects_through_its_service(
    dist: DistributedInstall, grpcurl: Path
) -> None:
    node, ns = dist.node, dist.namespace
    for svc in SERVICES:
        [pod] = node.pods(ns, f"app.kubernetes.io/instance={dist.release},app.kubernetes.io/component={svc}")
        ready = {c["type"]: c["status"] for c in pod["status"]["conditions"]}
        assert ready["Ready"] == "True", svc
        [container] = pod["spec"]["containers"]
        assert container["image"] == dist.image and container["args"] == ["--target", svc]
        assert pod["spec"]["securityContext"]["runAsNonRoot"] is True
        assert container["securityContext"]["readOnlyRootFilesystem"] is True
        env = {e["name"]: e.get("value") for e in container["env"]}
        assert env["ISTHMUS_BUS"] == "kafka" and env["ISTHMUS_AUTH"] == "oidc"

    token = dist.token()
    for svc in SERVICES:
        listed = subprocess.run(
            [str(grpcurl), "-plaintext", "-H", f"authorization: Bearer {token}", dist.addresses[svc], "list"],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert listed.returncode == 0, f"{svc}: {listed.stderr}"
        assert HEALTH[svc] in listed.stdout.split(), f"{svc}: {listed.stdout}"
    # a call without a token is refused with a reason
    refused = subprocess.run(
        [
            str(grpcurl),
            "-plaintext",
            "-d",
            json.dumps({"tenant_id": TENANT}),
            dist.addresses["retrieval"],
            "isthmus.retrieval.v1.RetrievalService/CreateTenant",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert refused.returncode != 0 and "Unauthenticated" in refused.stderr

    async def health() -> None:
        for svc in SERVICES:
            channel = bearer_channel(dist.addresses[svc], token)
            stub = health_pb2_grpc.HealthStub(channel)
            for name in ("", HEALTH[svc]):
                status = await stub.Check(health_pb2.HealthCheckRequest(service=name), timeout=10)
                assert status.status == health_pb2.HealthCheckResponse.SERVING, (svc, name)
            await channel.close()

    asyncio.run(health())


def test_ingest_to_a_cited_answer_across_the_services_over_kafka(dist: DistributedInstall) -> None:
    token = dist.token()

    async def scenario() -> None:
        retrieval = bearer_channel(dist.addresses["retrieval"], token)
        ingestion = bearer_channel(dist.addresses["ingestion"], token)
        orchestrator = bearer_channel(dist.addresses["agent-orchestrator"], token)
        await retrieval_pb2_grpc.RetrievalServiceStub(retrieval).CreateTenant(
            retrieval_pb2.CreateTenantRequest(tenant_id=TENANT), timeout=30
        )
        uploaded = await upload(ingestion, TENANT, "wings.md", DOC, document_id="wings")
        await wait_indexed(ingestion, TENANT, [uploaded.document_id], within_s=180)
        answer = await ao_grpc.AgentOrchestratorServiceStub(orchestrator).Ask(
            ao.AskRequest(tenant_id=TENANT, question="Why does the boundary layer thicken toward the tip?"),
            timeout=90,
        )
        assert not answer.blocked, answer.answer
        assert answer.citations and answer.citations[0].document_id == "wings"
        parsed = parse_document(DOC, "wings.md").text  # citation offsets are into the parsed text
        for sentence in answer.sentences:
            cited = sentence.citations[0]
            assert parsed[cited.start : cited.end] == sentence.text
        for channel in (retrieval, ingestion, orchestrator):
            await channel.close()

    asyncio.run(scenario())

    # the pipeline's events went through the broker: written, and consumed by the services' groups
    written = dist.topic_end_offsets()
    for topic in (
        "isthmus.chunks.created.v1",
        "isthmus.chunks.embedded.v1",
        "isthmus.chunks.indexed.v1",
        "isthmus.answers.produced.v1",
    ):
        assert written.get(topic, 0) > 0, (topic, written)
    consumed = {
        ("embedding", "isthmus.chunks.created.v1"),
        ("retrieval", "isthmus.chunks.embedded.v1"),
        ("ingestion-status", "isthmus.chunks.indexed.v1"),
        ("evaluation", "isthmus.answers.produced.v1"),
    }
    deadline = time.monotonic() + 90
    while True:
        committed = dist.committed_offsets()
        missing = {key for key in consumed if committed.get(key, 0) == 0}
        if not missing:
            break
        if time.monotonic() > deadline:
            raise AssertionError(f"no committed offsets for {sorted(missing)} within 90 s: {committed}")


# --- NetworkPolicies, as installed, against the live pods ---------------------------------------------


def _selects(selector: Mapping[str, Any], labels: Mapping[str, str]) -> bool:
    if any(labels.get(k) != v for k, v in selector.get("matchLabels", {}).items()):
        return False
    for expr in selector.get("matchExpressions", []):
        key, op, values = expr["key"], expr["operator"], expr.get("values", [])
        if (
            (op == "In" and labels.get(key) not in values)
            or (op == "NotIn" and labels.get(key) in values)
            or (op == "Exists" and key not in labels)
            or (op == "DoesNotExist" and key in labels)
        ):
            return False
    return True


Pod = dict[str, Any]  # {"ns", "labels", "ports": {name: number}}


def _peer_matches(peer: Mapping[str, Any], policy_ns: str, pod: Pod, ns_labels: Mapping[str, Any]) -> bool:
    if "ipBlock" in peer:
        return False  # pods here are reached by selectors; an ipBlock names addresses outside the cluster
    if "namespaceSelector" in peer:
        if not _selects(peer["namespaceSelector"], ns_labels.get(pod["ns"], {})):
            return False
    elif pod["ns"] != policy_ns:
        return False
    return _selects(peer.get("podSelector", {}), pod["labels"])


def _rule_admits(rule: Mapping[str, Any], side: str, policy_ns: str, peer_pod: Pod, dst: Pod, port: int,
                 protocol: str, ns_labels: Mapping[str, Any]) -> bool:  # fmt: skip
    ports = rule.get("ports")
    if ports and not any(
        p.get("protocol", "TCP") == protocol
        and (p.get("port") is None or p["port"] == port or dst["ports"].get(p["port"]) == port)
        for p in ports
    ):
        return False
    peers = rule.get(side)
    return not peers or any(_peer_matches(peer, policy_ns, peer_pod, ns_labels) for peer in peers)


def _allowed(policies: list[dict[str, Any]], src: Pod, dst: Pod, port: int, protocol: str,
             ns_labels: Mapping[str, Any]) -> bool:  # fmt: skip
    """Kubernetes NetworkPolicy semantics: a pod selected by a policy of a type is isolated for that
    direction, and a connection needs an egress rule of the source's policies and an ingress rule of the
    destination's (each side open when no policy of that type selects the pod)."""

    def side_ok(pod: Pod, kind: str, field: str, peer: Pod) -> bool:
        selecting = [
            p
            for p in policies
            if p["metadata"]["namespace"] == pod["ns"]
            and kind in p["spec"].get("policyTypes", ["Ingress"])
            and _selects(p["spec"]["podSelector"], pod["labels"])
        ]
        return not selecting or any(
            _rule_admits(rule, field, p["metadata"]["namespace"], peer, dst, port, protocol, ns_labels)
            for p in selecting
            for rule in p["spec"].get(kind.lower(), [])
        )

    return side_ok(src, "Egress", "to", dst) and side_ok(dst, "Ingress", "from", src)


def test_installed_network_policies_allow_exactly_the_call_graph_and_the_infrastructure(
    dist: DistributedInstall,
) -> None:
    node, ns = dist.node, dist.namespace
    policies = node.get(ns, "networkpolicies")["items"]
    assert {p["metadata"]["name"] for p in policies} == {f"{dist.release}-{s}" for s in SERVICES}
    ns_labels = {n["metadata"]["name"]: n["metadata"].get("labels", {}) for n in node.get(ns, "ns")["items"]}

    def live(namespace: str, selector: str) -> Pod:
        [pod] = node.pods(namespace, selector)
        ports = {
            p["name"]: p["containerPort"]
            for c in pod["spec"]["containers"]
            for p in c.get("ports", [])
            if "name" in p
        }
        return {"ns": namespace, "labels": pod["metadata"]["labels"], "ports": ports}

    pods = {
        s: live(ns, f"app.kubernetes.io/instance={dist.release},app.kubernetes.io/component={s}")
        for s in SERVICES
    }
    kafka = live(ns, "app.kubernetes.io/name=kafka")
    hydra = live(ns, "app.kubernetes.io/name=hydra")
    dns = live("kube-system", "k8s-app=kube-dns")
    client = {"ns": ns, "labels": {"isthmus.dev/client": "true"}, "ports": {}}  # an app labelled as a client

    for caller in SERVICES:
        for callee in SERVICES:
            if caller == callee:
                continue
            allowed = _allowed(policies, pods[caller], pods[callee], 50051, "TCP", ns_labels)
            assert allowed == (callee in CALLEES[caller]), f"{caller} -> {callee}:50051 allowed={allowed}"
        src = pods[caller]
        assert _allowed(policies, src, dns, 53, "UDP", ns_labels), f"{caller} -> DNS"
        assert _allowed(policies, src, kafka, 9092, "TCP", ns_labels), f"{caller} -> kafka:9092"
        assert _allowed(policies, src, hydra, 4444, "TCP", ns_labels), f"{caller} -> hydra:4444 (JWKS, token)"
        assert not _allowed(policies, src, hydra, 4445, "TCP", ns_labels), f"{caller} -> Hydra's admin API"
    public = {"ingestion", "retrieval", "agent-orchestrator", "evaluation"}
    for svc in SERVICES:
        assert _allowed(policies, client, pods[svc], 50051, "TCP", ns_labels) == (svc in public), svc
