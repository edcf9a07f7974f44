"""The guardrail's gRPC edge for output checks: ``CheckOutputStream`` (one call per answer, contexts sent
once, one verdict per sentence) and the verdict events' idempotency keys. Guard(pii=None): no spaCy."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable
from functools import partial
from pathlib import Path

import grpc
import pytest

from isthmus.common.v1 import common_pb2
from isthmus.guardrail.v1 import guardrail_pb2 as pb
from isthmus.guardrail.v1 import guardrail_pb2_grpc as pb_grpc
from isthmus_core.contracts.events import GuardrailVerdict
from isthmus_core.contracts.ids import parse_tenant_id
from isthmus_core.grpc.server import GrpcServer
from isthmus_core.ports.generator import AnswerSentence, Context
from isthmus_core.ports.tenants import InMemoryTenantDirectory
from isthmus_core.testing.guard_conformance import CONTEXTS, GROUNDED, UNSUPPORTED
from isthmus_guardrail.api import GuardrailServicer
from isthmus_guardrail.guard import Guard
from isthmus_guardrail.policies import PolicyStore

Guardrail = tuple[pb_grpc.GuardrailServiceStub, list[GuardrailVerdict]]


def _sentence(s: AnswerSentence) -> common_pb2.AnswerSentence:
    return common_pb2.AnswerSentence(
        text=s.text,
        citations=[
            common_pb2.Citation(chunk_id=c.chunk_id, document_id=c.document_id, start=c.start, end=c.end)
            for c in s.citations
        ],
    )


def _contexts(contexts: Iterable[Context]) -> list[common_pb2.Context]:
    return [
        common_pb2.Context(chunk_id=c.chunk_id, document_id=c.document_id, text=c.text, start=c.start)
        for c in contexts
    ]


def _header(tenant: str = "acme", subject: str = "q1") -> pb.CheckOutputStreamRequest:
    return pb.CheckOutputStreamRequest(
        header=pb.CheckOutputHeader(tenant_id=tenant, subject_id=subject, contexts=_contexts(CONTEXTS))
    )


def _says(s: AnswerSentence) -> pb.CheckOutputStreamRequest:
    return pb.CheckOutputStreamRequest(sentence=_sentence(s))


async def _requests(*messages: pb.CheckOutputStreamRequest) -> AsyncIterator[pb.CheckOutputStreamRequest]:
    for m in messages:
        yield m


@pytest.fixture
async def guardrail(
    tmp_path: Path,
) -> AsyncIterator[Guardrail]:
    events: list[GuardrailVerdict] = []

    async def publish(ev: GuardrailVerdict) -> None:
        events.append(ev)

    servicer = GuardrailServicer(
        Guard(pii=None),
        PolicyStore(tmp_path / "policies"),
        publish,
        2_000,
        InMemoryTenantDirectory([parse_tenant_id("acme")]),
    )
    server = GrpcServer("127.0.0.1", 0)
    server.add(
        [partial(pb_grpc.add_GuardrailServiceServicer_to_server, servicer)],
        [pb.DESCRIPTOR.services_by_name["GuardrailService"].full_name],
    )
    await server.start()
    async with grpc.aio.insecure_channel(server.address) as ch:
        yield pb_grpc.GuardrailServiceStub(ch), events
    await server.stop(grace=1.0)


async def test_one_verdict_per_sentence_in_order_each_with_its_own_key(guardrail: Guardrail) -> None:
    stub, events = guardrail
    call = stub.CheckOutputStream(
        _requests(_header(), _says(GROUNDED[0]), _says(UNSUPPORTED[0]), _says(GROUNDED[1]))
    )
    verdicts = [v async for v in call]
    assert [v.action for v in verdicts] == [
        common_pb2.GUARD_ACTION_ALLOW,
        common_pb2.GUARD_ACTION_BLOCK,
        common_pb2.GUARD_ACTION_ALLOW,
    ]
    assert verdicts[0].text == GROUNDED[0].text and verdicts[1].text == ""
    assert [e.idempotency_key for e in events] == ["acme/q1/output/0", "acme/q1/output/1", "acme/q1/output/2"]
    assert [e.action for e in events] == ["allow", "block", "allow"]
    assert {e.subject_id for e in events} == {"q1"}


async def test_the_session_is_opened_with_initial_metadata_before_any_sentence(guardrail: Guardrail) -> None:
    stub, _ = guardrail
    call = stub.CheckOutputStream()
    await call.write(_header())
    metadata = await call.initial_metadata()
    assert metadata.get("isthmus-output-check") is not None
    await call.write(_says(GROUNDED[0]))
    assert (await call.read()).action == common_pb2.GUARD_ACTION_ALLOW
    await call.done_writing()
    assert await call.read() is grpc.aio.EOF


@pytest.mark.parametrize(
    ("messages", "reason"),
    [
        ((), "must be the header"),
        ((_says(GROUNDED[0]),), "must be the header"),
        ((_header(tenant=""),), "tenant_id is required"),
        ((_header(tenant="../etc"),), "invalid header.tenant_id"),
        ((_header(), _says(GROUNDED[0]), _header()), "message 2 of CheckOutputStream must be a sentence"),
        ((_header(), _says(AnswerSentence("x" * 2_001, GROUNDED[0].citations))), "limit is 2000"),
    ],
)
async def test_a_malformed_stream_is_refused_with_the_reason(
    guardrail: Guardrail,
    messages: tuple[pb.CheckOutputStreamRequest, ...],
    reason: str,
) -> None:
    stub, _ = guardrail
    with pytest.raises(grpc.aio.AioRpcError) as err:
        async for _ in stub.CheckOutputStream(_requests(*messages)):
            pass
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert reason in (err.value.details() or "")


async def test_input_and_unary_output_keys_name_the_stage_and_anonymous_checks_never_share_one(
    guardrail: Guardrail,
) -> None:
    stub, events = guardrail
    await stub.CheckInput(
        pb.CheckInputRequest(tenant_id="acme", text="How do refunds work?", subject_id="q1")
    )
    await stub.CheckOutput(
        pb.CheckOutputRequest(
            tenant_id="acme",
            subject_id="q1",
            sentences=[_sentence(GROUNDED[0])],
            contexts=_contexts(CONTEXTS),
        )
    )
    for _ in range(2):
        await stub.CheckInput(pb.CheckInputRequest(tenant_id="acme", text="How do refunds work?"))
    keys = [e.idempotency_key for e in events]
    assert keys[:2] == ["acme/q1/input", "acme/q1/output"]
    assert len(set(keys)) == 4 and all(k.startswith("acme/anon-") for k in keys[2:])
