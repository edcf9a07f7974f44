"""Audit log and provenance per answer on the `all` target (real models, in-process bus, real gRPC).

An answer's provenance is kept by evaluation from the ``answers.produced`` event and read back with
``GetProvenance`` (only within its tenant); an audit record sent through the process's audit sink ends
up in ``ListAuditEvents``; both through the CLI as well.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import grpc
import pytest
import pytest_asyncio
from google.protobuf.timestamp_pb2 import Timestamp

from isthmus.agent_orchestrator.v1 import agent_orchestrator_pb2 as ao
from isthmus.agent_orchestrator.v1 import agent_orchestrator_pb2_grpc as ao_grpc
from isthmus.audit.v1 import audit_pb2, audit_pb2_grpc
from isthmus.evaluation.v1 import evaluation_pb2, evaluation_pb2_grpc
from isthmus.guardrail.v1 import guardrail_pb2, guardrail_pb2_grpc
from isthmus.ingestion.v1 import ingestion_pb2, ingestion_pb2_grpc
from isthmus.retrieval.v1 import retrieval_pb2, retrieval_pb2_grpc
from isthmus_core.auth.audit import BusAuditSink
from isthmus_core.bus.typed import decode_event
from isthmus_core.contracts import topics
from isthmus_core.contracts.events import AuditRecorded
from isthmus_core.testing.client import run_cli

from .conftest import platform, upload, wait_indexed

pytestmark = [pytest.mark.slow, pytest.mark.asyncio(loop_scope="module")]

TENANT, OTHER = "acme", "globex"
KAFKA_V1 = b"# Apache Kafka\n\nApache Kafka is a message queue.\n"
KAFKA_V2 = b"""# Apache Kafka

Apache Kafka is a distributed event streaming platform used by thousands of companies.
A consumer group lets several consumers share the partitions of a topic, so each record is processed by one member of the group.
Producers choose the partition of a record from its key, which keeps records with the same key in order.
"""
QUESTION = "What does a consumer group do in Kafka?"


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def env(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[dict[str, Any]]:
    async with platform(tmp_path_factory.mktemp("isthmus")) as rt:
        ch = grpc.aio.insecure_channel(rt.address)
        retrieval = retrieval_pb2_grpc.RetrievalServiceStub(ch)
        for tenant in (TENANT, OTHER):
            await retrieval.CreateTenant(retrieval_pb2.CreateTenantRequest(tenant_id=tenant))
        for data in (KAFKA_V1, KAFKA_V2):  # the second upload is version 2 of the document
            await upload(ch, TENANT, "kafka.md", data, document_id="kafka")
            await wait_indexed(ch, TENANT, ["kafka"])
        doc = await ingestion_pb2_grpc.IngestionServiceStub(ch).GetDocument(
            ingestion_pb2.GetDocumentRequest(tenant_id=TENANT, document_id="kafka")
        )
        assert doc.version == 2
        yield {"rt": rt, "ch": ch}
        await ch.close()


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def asked(env: dict[str, Any]) -> ao.AskResponse:
    resp: ao.AskResponse = await ao_grpc.AgentOrchestratorServiceStub(env["ch"]).Ask(
        ao.AskRequest(tenant_id=TENANT, question=QUESTION)
    )
    assert not resp.blocked and resp.citations, resp.answer
    await env["rt"].bus.drain()  # the answer event has reached evaluation
    return resp


async def test_get_provenance_names_chunks_versions_models_and_verdicts(
    env: dict[str, Any], asked: ao.AskResponse
) -> None:
    stub = evaluation_pb2_grpc.EvaluationServiceStub(env["ch"])
    p = await stub.GetProvenance(
        evaluation_pb2.GetProvenanceRequest(tenant_id=TENANT, answer_id=asked.question_id)
    )
    assert (p.answer_id, p.tenant_id, p.principal) == (asked.question_id, TENANT, "")  # auth off
    assert p.retrieved, "the chunks the answer was made from"
    assert {(c.document_id, c.document_version) for c in p.retrieved} == {("kafka", 2)}
    assert all(c.end > c.start for c in p.retrieved)
    cited = {(c.chunk_id, c.document_id, c.start, c.end) for c in asked.citations}
    assert {(c.chunk_id, c.document_id, c.start, c.end) for c in p.cited} == cited
    assert all(c.document_version == 2 for c in p.cited)
    assert {c.chunk_id for c in p.cited} <= {c.chunk_id for c in p.retrieved}

    search = await retrieval_pb2_grpc.RetrievalServiceStub(env["ch"]).Search(
        retrieval_pb2.SearchRequest(tenant_id=TENANT, query=QUESTION)
    )
    assert p.embedding_model and p.embedding_model == search.model_id
    assert (p.generator, p.generator_model, p.prompt_version) == ("extractive", "", "")
    assert p.guardrail_policy_version == "default", "the tenant never stored a policy: the built-in one"
    assert p.input_verdict.action == "allow" and p.output_verdict.action in ("allow", "redact")
    assert {"input_guard", "retrieval", "generation", "output_guard"} <= set(p.timings_ms)
    assert p.latency_ms > 0 and not p.blocked


async def test_another_tenant_gets_not_found_for_the_answer(
    env: dict[str, Any], asked: ao.AskResponse
) -> None:
    stub = evaluation_pb2_grpc.EvaluationServiceStub(env["ch"])
    details = []
    for tenant, answer_id in ((OTHER, asked.question_id), (TENANT, "0" * 32)):
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await stub.GetProvenance(
                evaluation_pb2.GetProvenanceRequest(tenant_id=tenant, answer_id=answer_id)
            )
        assert info.value.code() == grpc.StatusCode.NOT_FOUND
        details.append(info.value.details() or "")
    assert TENANT not in details[0], "the refusal never names the tenant that has the answer"


def _record(**overrides: Any) -> AuditRecorded:
    fields: dict[str, Any] = {
        "tenant_id": TENANT,
        "idempotency_key": "e2e-audit-1",
        "kind": "impersonation",
        "principal": "ops-admin",
        "method": "/isthmus.retrieval.v1.RetrievalService/Search",
        "outcome": "ok",
        "reason": "searched as bob",
        "details": {"as": "bob"},
        "peer": "ipv4:127.0.0.1:40000",
    }
    return AuditRecorded.model_validate({**fields, **overrides})


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def audited(env: dict[str, Any]) -> AuditRecorded:
    """Two records through the process's audit sink, on the real bus."""
    sink = BusAuditSink(env["rt"].bus, "local")
    await sink.start()
    record = _record()
    sink.record(record)
    sink.record(
        _record(
            idempotency_key="e2e-audit-2",
            tenant_id="",
            kind="authentication_failed",
            principal="",
            outcome="failed",
            reason="token expired",
            details={},
        )
    )
    await sink.stop()
    await env["rt"].bus.drain()
    return record


async def test_an_audit_record_on_the_bus_is_listed(env: dict[str, Any], audited: AuditRecorded) -> None:
    stub = audit_pb2_grpc.AuditServiceStub(env["ch"])
    resp = await stub.ListAuditEvents(audit_pb2.ListAuditEventsRequest(tenant_id=TENANT))
    [ev] = resp.events
    assert (ev.event_id, ev.kind, ev.principal, ev.method, ev.outcome, ev.reason) == (
        audited.event_id,
        "impersonation",
        "ops-admin",
        "/isthmus.retrieval.v1.RetrievalService/Search",
        "ok",
        "searched as bob",
    )
    assert (dict(ev.details), ev.peer, ev.region) == ({"as": "bob"}, "ipv4:127.0.0.1:40000", "local")
    assert ev.occurred_at.ToDatetime(tzinfo=UTC) == audited.occurred_at

    everyone = await stub.ListAuditEvents(audit_pb2.ListAuditEventsRequest())
    assert {e.kind for e in everyone.events} == {"impersonation", "authentication_failed"}
    assert not (await stub.ListAuditEvents(audit_pb2.ListAuditEventsRequest(tenant_id=OTHER))).events
    later = Timestamp()
    later.FromDatetime(datetime.now(UTC) + timedelta(hours=1))
    assert not (await stub.ListAuditEvents(audit_pb2.ListAuditEventsRequest(since=later))).events


@pytest.mark.parametrize(
    "request_",
    [
        audit_pb2.ListAuditEventsRequest(limit=10_001),
        audit_pb2.ListAuditEventsRequest(since=Timestamp(seconds=0, nanos=2_000_000_000)),
        audit_pb2.ListAuditEventsRequest(kinds=["login"]),
        audit_pb2.ListAuditEventsRequest(tenant_id="../x"),
    ],
)
async def test_bad_audit_requests_are_refused(
    env: dict[str, Any], request_: audit_pb2.ListAuditEventsRequest
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await audit_pb2_grpc.AuditServiceStub(env["ch"]).ListAuditEvents(request_)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_cli_audit_and_provenance(
    env: dict[str, Any], asked: ao.AskResponse, audited: AuditRecorded
) -> None:
    ep = env["rt"].address
    code, out, err = await run_cli(
        "audit", "--tenant", TENANT, "--kind", "impersonation", "--since", "-1h", "--json", endpoint=ep
    )
    assert code == 0, err
    [row] = json.loads(out)
    assert (row["event_id"], row["principal"], row["details"]) == (
        audited.event_id,
        "ops-admin",
        {"as": "bob"},
    )

    code, out, err = await run_cli("audit", "--principal", "ops-admin", endpoint=ep)
    assert code == 0 and "impersonation" in out and "searched as bob" in out and "1 record" in out

    code, out, err = await run_cli("provenance", asked.question_id, "--tenant", TENANT, "--json", endpoint=ep)
    assert code == 0, err
    p = json.loads(out)
    assert p["answer_id"] == asked.question_id
    assert {(c["document_id"], c["document_version"]) for c in p["retrieved"]} == {("kafka", "2")}

    code, out, err = await run_cli("provenance", asked.question_id, "--tenant", TENANT, endpoint=ep)
    assert code == 0 and "kafka" in out and "guardrail policy: default" in out and "extractive" in out

    code, out, err = await run_cli("provenance", asked.question_id, "--tenant", OTHER, endpoint=ep)
    assert code == 1 and "NOT_FOUND" in err


async def test_an_answer_names_the_policy_version_its_checks_applied(
    env: dict[str, Any], asked: ao.AskResponse
) -> None:
    """Runs last: it gives the tenant a policy. The next answer's provenance, its verdict events and the
    CLI name the stored version; the earlier answer keeps ``default``."""
    guardrail = guardrail_pb2_grpc.GuardrailServiceStub(env["ch"])
    stored = await guardrail.PutPolicy(
        guardrail_pb2.Policy(
            tenant_id=TENANT,
            block_injection=True,
            injection_threshold=0.55,
            redact_pii=True,
            pii_threshold=0.5,
            grounding_threshold=0.6,
            block_ungrounded=True,
        )
    )
    assert (stored.label, stored.current) == ("v1", True)
    orchestrator = ao_grpc.AgentOrchestratorServiceStub(env["ch"])
    again = await orchestrator.Ask(ao.AskRequest(tenant_id=TENANT, question=QUESTION, no_cache=True))
    await env["rt"].bus.drain()
    stub = evaluation_pb2_grpc.EvaluationServiceStub(env["ch"])
    p = await stub.GetProvenance(
        evaluation_pb2.GetProvenanceRequest(tenant_id=TENANT, answer_id=again.question_id)
    )
    assert p.guardrail_policy_version == "v1"
    earlier = await stub.GetProvenance(
        evaluation_pb2.GetProvenanceRequest(tenant_id=TENANT, answer_id=asked.question_id)
    )
    assert earlier.guardrail_policy_version == "default"  # an answer keeps the version it was made under
    verdicts = [
        decode_event(topics.GUARDRAIL_VERDICTS, m)
        for m in env["rt"].bus.messages(topics.GUARDRAIL_VERDICTS.name)
    ]
    mine = [v for v in verdicts if v.tenant_id == TENANT and v.subject_id == again.question_id]
    assert {v.stage for v in mine} >= {"input", "output"} and {v.policy_version for v in mine} == {"v1"}
    code, out, err = await run_cli(
        "provenance", again.question_id, "--tenant", TENANT, endpoint=env["rt"].address
    )
    assert code == 0 and "guardrail policy: v1" in out, err
