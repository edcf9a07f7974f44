"""Authentication across processes on a real Kafka: six services with ``auth = "local"`` (one issuer key
and one access file shared by every process, as a Secret and a ConfigMap would be).

What only the distributed shape shows: a caller's token is forwarded on the calls its call makes to
other processes (ask → guardrail, retrieval → embedding), bus handlers call other services with the
process's own service identity (ingestion asking retrieval whether a tenant exists), and a producer's
token on a Kafka record decides whether its document is indexed or dead-lettered.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import pytest
import pytest_asyncio
from aiokafka import AIOKafkaProducer

from isthmus.agent_orchestrator.v1 import agent_orchestrator_pb2 as ao
from isthmus.agent_orchestrator.v1 import agent_orchestrator_pb2_grpc as ao_grpc
from isthmus.embedding.v1 import embedding_pb2 as em
from isthmus.embedding.v1 import embedding_pb2_grpc as em_grpc
from isthmus.evaluation.v1 import evaluation_pb2 as ev
from isthmus.evaluation.v1 import evaluation_pb2_grpc as ev_grpc
from isthmus.guardrail.v1 import guardrail_pb2 as gr
from isthmus.guardrail.v1 import guardrail_pb2_grpc as gr_grpc
from isthmus.ingestion.v1 import ingestion_pb2 as ing
from isthmus.ingestion.v1 import ingestion_pb2_grpc as ing_grpc
from isthmus.retrieval.v1 import retrieval_pb2, retrieval_pb2_grpc
from isthmus_core.auth.local_issuer import LocalIssuer
from isthmus_core.bus.kafka_tools import read_topic
from isthmus_core.contracts import topics
from isthmus_core.contracts.events import DocumentSubmitted
from isthmus_core.testing.client import bearer_channel, upload, wait_indexed

from .conftest import SERVICES, Cluster, running_cluster

pytestmark = [pytest.mark.kafka, pytest.mark.slow, pytest.mark.asyncio(loop_scope="module")]

TENANT = "dist-auth"
ACCESS = f"""
[platform]
bindings = [{{ principal = "root", role = "platform-admin" }}]

[tenants.{TENANT}]
bindings = [
  {{ principal = "alice", role = "writer" }},
  {{ principal = "feeder", role = "writer" }},
]

[tenants.other-tenant]
bindings = [{{ principal = "mallory", role = "writer" }}]
"""


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def secured(
    kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[dict[str, Any]]:
    base: Path = tmp_path_factory.mktemp("auth-cluster")
    access = base / "access.toml"
    access.write_text(ACCESS)
    key = base / "issuer" / "local-issuer.pem"
    issuer = LocalIssuer(key)
    tokens = {
        who: issuer.mint(who, groups=[], ttl_s=3600, audience="isthmus")
        for who in ("root", "alice", "feeder", "mallory")
    }
    env = {
        "ISTHMUS_AUTH": "local",
        "ISTHMUS_AUTH_LOCAL_KEY_FILE": str(key),
        "ISTHMUS_ACCESS_FILE": str(access),
    }
    (base / "cluster").mkdir()
    async with running_cluster(base / "cluster", kafka_bootstrap, env) as cluster:
        yield {"cluster": cluster, "tokens": tokens}


def _address(c: Cluster, svc: str) -> str:
    return c.endpoints[svc]


def _one_call(svc: str, ch: grpc.aio.Channel) -> Any:
    """One cheap call of a service's own API."""
    if svc == "ingestion":
        return ing_grpc.IngestionServiceStub(ch).ListDocuments(ing.ListDocumentsRequest(tenant_id=TENANT))
    if svc == "retrieval":
        return retrieval_pb2_grpc.RetrievalServiceStub(ch).ListTenants(retrieval_pb2.ListTenantsRequest())
    if svc == "embedding":
        return em_grpc.EmbeddingServiceStub(ch).GetModel(em.GetModelRequest())
    if svc == "agent-orchestrator":
        return ao_grpc.AgentOrchestratorServiceStub(ch).Ask(ao.AskRequest(tenant_id=TENANT, question="hi"))
    if svc == "guardrail":
        return gr_grpc.GuardrailServiceStub(ch).GetPolicy(gr.GetPolicyRequest(tenant_id=TENANT))
    return ev_grpc.EvaluationServiceStub(ch).GetOnlineMetrics(ev.GetOnlineMetricsRequest(tenant_id=TENANT))


async def test_every_service_refuses_a_call_without_a_token(secured: dict[str, Any]) -> None:
    c: Cluster = secured["cluster"]
    for svc in SERVICES:
        async with grpc.aio.insecure_channel(_address(c, svc)) as ch:
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await _one_call(svc, ch)
            assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED, (svc, err.value.details())


async def test_a_token_travels_through_the_call_chain_and_bus_handlers_use_the_service_identity(
    secured: dict[str, Any],
) -> None:
    c: Cluster = secured["cluster"]
    tokens = secured["tokens"]
    async with bearer_channel(_address(c, "retrieval"), tokens["root"]) as ch:
        await retrieval_pb2_grpc.RetrievalServiceStub(ch).CreateTenant(
            retrieval_pb2.CreateTenantRequest(tenant_id=TENANT), timeout=30
        )
    text = b"Gliders are aircraft without engines. Gliders stay aloft by soaring in thermals and ridge lift."
    async with bearer_channel(_address(c, "ingestion"), tokens["alice"]) as ch:
        r = await upload(ch, TENANT, "gliders.txt", text, document_id="gliders")
        await wait_indexed(ch, TENANT, [r.document_id], within_s=180)
    async with bearer_channel(_address(c, "agent-orchestrator"), tokens["alice"]) as ch:
        resp = await ao_grpc.AgentOrchestratorServiceStub(ch).Ask(
            ao.AskRequest(tenant_id=TENANT, question="How do gliders stay aloft?"), timeout=90
        )
    assert not resp.blocked and "thermals" in resp.answer
    assert resp.citations[0].document_id == "gliders"
    async with bearer_channel(_address(c, "agent-orchestrator"), tokens["mallory"]) as ch:
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await ao_grpc.AgentOrchestratorServiceStub(ch).Ask(
                ao.AskRequest(tenant_id=TENANT, question="How do gliders stay aloft?"), timeout=60
            )
        assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED


async def _produce(bootstrap: str, event: DocumentSubmitted, token: str | None) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    headers = [("authorization", f"Bearer {token}".encode())] if token is not None else []
    try:
        await producer.send_and_wait(
            topics.DOCUMENTS_SUBMITTED.name,
            event.model_dump_json().encode(),
            key=f"{event.tenant_id}/{event.document_id}".encode(),
            headers=headers,
        )
    finally:
        await producer.stop()


def _doc(document_id: str, text: str) -> DocumentSubmitted:
    return DocumentSubmitted(
        tenant_id=TENANT,
        idempotency_key=f"kafka-{document_id}",
        document_id=document_id,
        filename=f"{document_id}.txt",
        content=text.encode(),
    )


async def test_a_producer_token_decides_between_indexed_and_dead_lettered(secured: dict[str, Any]) -> None:
    c: Cluster = secured["cluster"]
    tokens = secured["tokens"]
    stamp = str(time.time_ns())
    accepted = _doc(f"fed-{stamp}", "Sailplanes climb in thermals over sunny fields.")
    anonymous = _doc(f"anon-{stamp}", "An unsigned record about ridge lift.")
    foreign = _doc(f"foreign-{stamp}", "A record from a writer of another tenant.")
    await _produce(c.bootstrap, accepted, tokens["feeder"])
    await _produce(c.bootstrap, anonymous, None)
    await _produce(c.bootstrap, foreign, tokens["mallory"])
    async with bearer_channel(_address(c, "ingestion"), tokens["alice"]) as ch:
        await wait_indexed(ch, TENANT, [accepted.document_id or ""], within_s=180)
        stub = ing_grpc.IngestionServiceStub(ch)
        for refused in (anonymous, foreign):
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await stub.GetDocument(
                    ing.GetDocumentRequest(tenant_id=TENANT, document_id=refused.document_id)
                )
            assert err.value.code() == grpc.StatusCode.NOT_FOUND
    found: dict[str, dict[str, str]] = {}
    for _ in range(120):
        messages, _ = await read_topic(c.bootstrap, topics.DOCUMENTS_SUBMITTED.dlq, key_prefix=f"{TENANT}/")
        found = {json.loads(m.value)["document_id"]: m.headers for m in messages}
        if {anonymous.document_id, foreign.document_id} <= set(found):
            break
        await asyncio.sleep(0.5)
    assert found[anonymous.document_id or ""]["isthmus-error-class"] == "Unauthenticated"
    assert "without a producer token" in found[anonymous.document_id or ""]["isthmus-error-message"]
    assert found[foreign.document_id or ""]["isthmus-error-class"] == "PermissionDenied"
    assert "'mallory' lacks documents.write" in found[foreign.document_id or ""]["isthmus-error-message"]
    assert all("authorization" not in h for h in found.values())  # no credential kept in the DLQ
    assert accepted.document_id not in found
