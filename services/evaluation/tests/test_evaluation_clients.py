"""Evaluation's gRPC client of the platform (the EvalPlatform conformance suite runs against it on the
real platform in tests/e2e/test_e2e_service_clients.py): an outage is Unavailable, not a gRPC error."""

from __future__ import annotations

import pytest

from isthmus.agent_orchestrator.v1 import agent_orchestrator_pb2 as ao
from isthmus.common.v1 import common_pb2
from isthmus_core.contracts.ids import TenantId
from isthmus_core.errors import FailedPrecondition, Unavailable
from isthmus_core.grpc.client import open_channel
from isthmus_core.ports.eval_platform import (
    AskedCitation,
    AskedContext,
    AskedSentence,
    AskOutcome,
    EvalPlatform,
)
from isthmus_core.store.port import SearchMode
from isthmus_evaluation.clients import GrpcEvalPlatform, ask_outcome


async def test_an_unreachable_platform_is_unavailable_for_every_call() -> None:
    async with open_channel("127.0.0.1:1") as ch:  # nothing listens on port 1
        platform = GrpcEvalPlatform(ch, ch, ch, timeout_s=5, long_timeout_s=5)
        assert isinstance(platform, EvalPlatform)
        tenant = TenantId("acme")
        with pytest.raises(Unavailable):
            await platform.create_tenant(tenant)
        with pytest.raises(Unavailable):
            await platform.delete_tenant(tenant)
        with pytest.raises(Unavailable):
            await platform.upload(tenant, "d1", "d1.txt", b"text")
        with pytest.raises(Unavailable):
            await platform.progress(tenant)
        with pytest.raises(Unavailable):
            await platform.search(tenant, "q", SearchMode.HYBRID, 10, rerank=True)
        with pytest.raises(Unavailable):
            await platform.ask(tenant, "q")


async def test_without_an_orchestrator_asking_is_a_failed_precondition() -> None:
    async with open_channel("127.0.0.1:1") as ch:
        with pytest.raises(FailedPrecondition):
            await GrpcEvalPlatform(ch, ch).ask(TenantId("acme"), "q")


def test_an_ask_response_becomes_an_outcome_with_its_sentences_and_contexts() -> None:
    resp = ao.AskResponse(
        question_id="a" * 32,
        answer="Marmots hibernate.",
        sentences=[
            common_pb2.AnswerSentence(
                text="Marmots hibernate.",
                citations=[common_pb2.Citation(chunk_id="c1", document_id="d1", start=10, end=28)],
            )
        ],
        contexts=[
            ao.RetrievedContext(chunk_id="c1", document_id="d1", start=0, end=40, text="t" * 40, score=0.5)
        ],
        latency_ms=12.5,
        generator="extractive",
    )
    out = ask_outcome(resp)
    assert out == AskOutcome(
        answer_id="a" * 32,
        answer="Marmots hibernate.",
        sentences=(AskedSentence("Marmots hibernate.", (AskedCitation("c1", "d1", 10, 28),)),),
        contexts=(AskedContext("c1", "d1", 0, 40, "t" * 40, 0.5),),
        latency_ms=12.5,
        generator="extractive",
    )
