"""The output guardrail on the `all` target: its verdicts shape what Ask/AskStream return.

Also runs the GuardClient conformance suite against the real gRPC client (the orchestrator's
``GrpcGuardClient``) talking to the real guardrail servicer of the platform.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
import pytest_asyncio

from isthmus.agent_orchestrator.v1 import agent_orchestrator_pb2 as ao
from isthmus.agent_orchestrator.v1 import agent_orchestrator_pb2_grpc as ao_grpc
from isthmus.common.v1 import common_pb2
from isthmus.evaluation.v1 import evaluation_pb2, evaluation_pb2_grpc
from isthmus.guardrail.v1 import guardrail_pb2, guardrail_pb2_grpc
from isthmus.retrieval.v1 import retrieval_pb2, retrieval_pb2_grpc
from isthmus_agent_orchestrator.clients import GrpcGuardClient
from isthmus_core.contracts import topics
from isthmus_core.contracts.events import GuardrailVerdict
from isthmus_core.testing import guard_client_conformance as conformance
from isthmus_core.testing.guard_client_conformance import GuardClientConformance

from .conftest import platform, upload, wait_indexed

pytestmark = [pytest.mark.slow, pytest.mark.asyncio(loop_scope="module")]

TENANT = "club"
EMAIL, PHONE = "jane.doe@example.com", "212-555-0147"
CONTACT = f"The club secretary can be reached at {EMAIL} or by phone on {PHONE}."
NOTES = f"""Winch launches start at nine in the morning.
{CONTACT}
Gliders are towed back to the launch point by a small tractor.
"""
QUESTION = "How can the club secretary be reached by phone or e-mail?"


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def env(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[dict[str, Any]]:
    async with platform(tmp_path_factory.mktemp("isthmus")) as rt:
        ch = grpc.aio.insecure_channel(rt.address)
        retrieval = retrieval_pb2_grpc.RetrievalServiceStub(ch)
        for tenant in (TENANT, conformance.TENANT):  # the conformance suite's tenant exists too
            await retrieval.CreateTenant(retrieval_pb2.CreateTenantRequest(tenant_id=tenant))
        doc = await upload(ch, TENANT, "notes.txt", NOTES.encode(), document_id="notes")
        await wait_indexed(ch, TENANT, [doc.document_id])
        yield {"rt": rt, "ch": ch}
        await ch.close()


class TestGrpcGuardClient(GuardClientConformance):
    @pytest_asyncio.fixture(loop_scope="module")
    async def guard_client(self, env: dict[str, Any]) -> GrpcGuardClient:
        return GrpcGuardClient(env["ch"])


def _original(sentence: common_pb2.AnswerSentence) -> common_pb2.AnswerSentence:
    """The sentence as the generator produced it: the cited span of the document."""
    [c] = sentence.citations
    return common_pb2.AnswerSentence(text=NOTES[c.start : c.end], citations=sentence.citations)


async def _verdict_events(env: dict[str, Any], question_id: str) -> list[GuardrailVerdict]:
    await env["rt"].bus.drain()
    events = [
        GuardrailVerdict.model_validate_json(m.value)
        for m in env["rt"].bus.messages(topics.GUARDRAIL_VERDICTS.name)
    ]
    return [e for e in events if e.subject_id == question_id]


async def test_a_redacted_sentence_is_returned_redacted_with_the_guardrails_verdict(
    env: dict[str, Any],
) -> None:
    resp = await ao_grpc.AgentOrchestratorServiceStub(env["ch"]).Ask(
        ao.AskRequest(tenant_id=TENANT, question=QUESTION)
    )
    assert not resp.blocked, resp.answer
    originals = [_original(s) for s in resp.sentences]
    assert CONTACT in [s.text for s in originals], "the contact sentence should answer the question"
    assert EMAIL not in resp.answer and PHONE not in resp.answer
    [shown] = [s for s, o in zip(resp.sentences, originals, strict=True) if o.text == CONTACT]
    assert "<EMAIL_ADDRESS>" in shown.text and "<PHONE_NUMBER>" in shown.text
    assert shown.citations[0].document_id == "notes"  # citations are kept
    assert "notes" in {c.document_id for c in resp.citations}

    # the reported verdict is the guardrail's own: what CheckOutput says about the same sentences
    hits = await retrieval_pb2_grpc.RetrievalServiceStub(env["ch"]).Search(
        retrieval_pb2.SearchRequest(tenant_id=TENANT, query=QUESTION, top_k=10)
    )
    check = await guardrail_pb2_grpc.GuardrailServiceStub(env["ch"]).CheckOutput(
        guardrail_pb2.CheckOutputRequest(
            tenant_id=TENANT, sentences=originals, contexts=[h.context for h in hits.hits]
        )
    )
    assert check.action == common_pb2.GUARD_ACTION_REDACT
    assert {f.code for f in check.findings} >= {"pii.EMAIL_ADDRESS", "pii.PHONE_NUMBER"}
    assert resp.output_verdict.action == common_pb2.GUARD_ACTION_REDACT
    assert list(resp.output_verdict.findings) == list(check.findings)
    assert resp.output_verdict.text == check.text == resp.answer

    # one verdict event per checked sentence, each with its own idempotency key
    events = await _verdict_events(env, resp.question_id)
    keys = [e.idempotency_key for e in events]
    assert len(set(keys)) == len(keys) == 1 + len(resp.sentences)
    assert f"{TENANT}/{resp.question_id}/input" in keys
    assert {f"{TENANT}/{resp.question_id}/output/{i}" for i in range(len(resp.sentences))} <= set(keys)


async def test_the_stream_carries_the_redacted_sentence(env: dict[str, Any]) -> None:
    events = [
        e
        async for e in ao_grpc.AgentOrchestratorServiceStub(env["ch"]).AskStream(
            ao.AskRequest(tenant_id=TENANT, question=QUESTION)
        )
    ]
    streamed = [e.sentence for e in events if e.WhichOneof("event") == "sentence"]
    final = events[-1].final
    assert streamed and streamed == list(final.sentences)
    assert all(EMAIL not in s.text and PHONE not in s.text for s in streamed)
    assert any("<EMAIL_ADDRESS>" in s.text for s in streamed)
    assert final.output_verdict.action == common_pb2.GUARD_ACTION_REDACT


async def test_online_redactions_count_what_the_caller_got_redacted(env: dict[str, Any]) -> None:
    metrics = evaluation_pb2_grpc.EvaluationServiceStub(env["ch"])
    await env["rt"].bus.drain()
    before = await metrics.GetOnlineMetrics(evaluation_pb2.GetOnlineMetricsRequest(tenant_id=TENANT))
    resp = await ao_grpc.AgentOrchestratorServiceStub(env["ch"]).Ask(
        ao.AskRequest(tenant_id=TENANT, question=QUESTION)
    )
    await env["rt"].bus.drain()
    after = await metrics.GetOnlineMetrics(evaluation_pb2.GetOnlineMetricsRequest(tenant_id=TENANT))
    redacted = sum("<EMAIL_ADDRESS>" in s.text or "<PHONE_NUMBER>" in s.text for s in resp.sentences)
    assert redacted == 1
    assert after.guardrail_redactions - before.guardrail_redactions == redacted
