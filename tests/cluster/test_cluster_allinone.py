"""The chart's all-in-one shape installed with `helm install --wait` on a real node, from the image built by
`make image`: the pod becomes Ready, and through its Service (ClusterIP, via kube-proxy — what an in-cluster
client reaches) a user gets health, reflection, ingest → indexed → a cited answer, with the pod's own
development issuer (auth.mode local: `kubectl exec ... isthmus auth token`); the web console the pod also
serves answers its health endpoints through its own Service (<release>-console, port "http")."""

from __future__ import annotations

import asyncio
import json
import subprocess
import urllib.request
from pathlib import Path

import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from isthmus.agent_orchestrator.v1 import agent_orchestrator_pb2 as ao
from isthmus.agent_orchestrator.v1 import agent_orchestrator_pb2_grpc as ao_grpc
from isthmus.retrieval.v1 import retrieval_pb2, retrieval_pb2_grpc
from isthmus_core.testing.client import bearer_channel, upload, wait_indexed
from isthmus_core.testing.kube_node import KubeNode, isthmus_values

pytestmark = [pytest.mark.cluster, pytest.mark.slow, pytest.mark.timeout(1500)]

RELEASE = "aio"
TENANT = "acme"
DOC = (
    b"# Swept wings\n\nThe boundary layer on a swept wing thickens toward the tip because spanwise flow "
    b"carries low-momentum air outboard.\nWing fences and vortex generators limit that spanwise flow.\n"
)


def _install(kube_node: KubeNode, namespace: str, image: str) -> tuple[str, str]:
    values = isthmus_values(
        image,
        {
            "auth": {"mode": "local"},
            "access": {"bindings": [{"principal": "me", "role": "platform-admin"}]},
            "services": {"console": {"enabled": True}},  # auth.mode local: no OAuth2 client needed
        },
    )
    kube_node.install(RELEASE, namespace, values)
    token = kube_node.exec(
        namespace, f"deploy/{RELEASE}-all", "isthmus", "auth", "token", "--subject", "me"
    ).strip()
    return kube_node.service_address(namespace, f"{RELEASE}-all"), token


def test_all_in_one_answers_a_cited_question_through_its_service(
    kube_node: KubeNode, isthmus_image: str, namespace: str, grpcurl: Path
) -> None:
    address, token = _install(kube_node, namespace, isthmus_image)
    pod = kube_node.pods(namespace, f"app.kubernetes.io/instance={RELEASE}")[0]
    ready = {c["type"]: c["status"] for c in pod["status"]["conditions"]}
    assert ready["Ready"] == "True"
    spec = pod["spec"]["containers"][0]
    assert spec["image"] == isthmus_image and pod["spec"]["securityContext"]["runAsNonRoot"] is True

    # reflection, as grpcurl shows a user what the Service offers (it needs a token, like every call)
    listed = subprocess.run(
        [str(grpcurl), "-plaintext", "-H", f"authorization: Bearer {token}", address, "list"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert listed.returncode == 0, listed.stderr
    assert "isthmus.agent_orchestrator.v1.AgentOrchestratorService" in listed.stdout.split()
    # and an unauthenticated call is refused with a reason
    refused = subprocess.run(
        [
            str(grpcurl),
            "-plaintext",
            "-d",
            json.dumps({"tenant_id": TENANT}),
            address,
            "isthmus.retrieval.v1.RetrievalService/CreateTenant",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert refused.returncode != 0 and "Unauthenticated" in refused.stderr

    async def scenario() -> None:
        channel = bearer_channel(address, token)
        health = health_pb2_grpc.HealthStub(channel)
        overall = await health.Check(health_pb2.HealthCheckRequest(service=""), timeout=10)
        assert overall.status == health_pb2.HealthCheckResponse.SERVING
        await retrieval_pb2_grpc.RetrievalServiceStub(channel).CreateTenant(
            retrieval_pb2.CreateTenantRequest(tenant_id=TENANT), timeout=30
        )
        uploaded = await upload(channel, TENANT, "wings.md", DOC, document_id="wings")
        await wait_indexed(channel, TENANT, [uploaded.document_id], within_s=120)
        answer = await ao_grpc.AgentOrchestratorServiceStub(channel).Ask(
            ao.AskRequest(tenant_id=TENANT, question="Why does the boundary layer thicken toward the tip?"),
            timeout=60,
        )
        assert not answer.blocked, answer.answer
        assert answer.citations and answer.citations[0].document_id == "wings"
        for sentence in answer.sentences:  # every sentence cited, and quoted from the document
            assert sentence.citations and sentence.text.encode() in DOC, sentence.text
        await channel.close()

    asyncio.run(scenario())

    # the web console the pod also serves, through its own Service: health without a session
    console = kube_node.service_address(namespace, f"{RELEASE}-console", "http")
    for path in ("/healthz", "/readyz"):
        with urllib.request.urlopen(f"http://{console}{path}", timeout=30) as response:
            assert response.status == 200, path
