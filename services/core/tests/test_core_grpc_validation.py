"""Edge validation of requests: the rules on messages, and the interceptor refusing before the handler."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
from google.protobuf.message import Message
from pydantic import BaseModel, Field

from isthmus.agent_orchestrator.v1 import agent_orchestrator_pb2 as ao_pb
from isthmus.agent_orchestrator.v1 import agent_orchestrator_pb2_grpc as ao_grpc
from isthmus.audit.v1 import audit_pb2
from isthmus.common.v1 import common_pb2
from isthmus.evaluation.v1 import evaluation_pb2
from isthmus.guardrail.v1 import guardrail_pb2
from isthmus.ingestion.v1 import ingestion_pb2 as ing_pb
from isthmus.ingestion.v1 import ingestion_pb2_grpc as ing_grpc
from isthmus.retrieval.v1 import retrieval_pb2 as rpb
from isthmus.retrieval.v1 import retrieval_pb2_grpc as rgrpc
from isthmus_core.errors import InvalidArgument
from isthmus_core.grpc.server import UNVALIDATED, GrpcServer
from isthmus_core.grpc.validation import MAX_STRING_CHARS, validate_message

NAN = float("nan")


def _search(**kw: Any) -> rpb.SearchRequest:
    return rpb.SearchRequest(**({"tenant_id": "acme", "query": "glacier"} | kw))


def _check_output(
    context_doc: str = "doc-1", citation_doc: str = "doc-1"
) -> guardrail_pb2.CheckOutputRequest:
    return guardrail_pb2.CheckOutputRequest(
        tenant_id="acme",
        subject_id="q1",
        sentences=[
            common_pb2.AnswerSentence(
                text="x", citations=[common_pb2.Citation(chunk_id="c", document_id=citation_doc)]
            )
        ],
        contexts=[common_pb2.Context(chunk_id="c", document_id=context_doc, text="x")],
    )


VALID: list[Message] = [
    _search(),
    _search(alpha=0.3, mode=rpb.SEARCH_MODE_BM25, filters={"lang": "en"}),
    _search(access=common_pb2.AccessScope(principals=["alice", "group:eng"])),
    _search(access=common_pb2.AccessScope()),  # present, no principals: public documents only
    evaluation_pb2.GetOnlineMetricsRequest(),  # empty tenant = all tenants, by design
    audit_pb2.ListAuditEventsRequest(),  # empty tenant = every tenant (the permission for every tenant)
    ing_pb.UploadRequest(header=ing_pb.UploadHeader(tenant_id="acme", filename="a.txt")),  # id assigned
    ing_pb.UploadRequest(data=b"\x00" * 1000),  # a data part carries no tenant
    guardrail_pb2.CheckInputRequest(tenant_id="acme", text="hi", subject_id="q" * 128),
    guardrail_pb2.CheckInputRequest(tenant_id="acme", text="line\nbreaks\tand ünïcode are text"),
    _check_output(),
    evaluation_pb2.RunEvalRequest(dataset_path="/data/beir/scifact"),
    rpb.ListTenantsRequest(),
]


@pytest.mark.parametrize("msg", VALID, ids=lambda m: type(m).__name__)
def test_valid_requests_pass(msg: Message) -> None:
    validate_message(msg)


INVALID: list[tuple[str, Message, str]] = [
    ("long tenant", _search(tenant_id="a" * 300), "invalid tenant_id"),
    ("path tenant", _search(tenant_id="../../etc"), "invalid tenant_id"),
    ("upper tenant", rpb.GetTenantRequest(tenant_id="Acme"), "invalid tenant_id"),
    ("missing tenant", _search(tenant_id=""), "tenant_id is required"),
    ("missing tenant in a policy", guardrail_pb2.GetPolicyRequest(), "tenant_id is required"),
    (
        "missing tenant of a provenance",
        evaluation_pb2.GetProvenanceRequest(answer_id="q1"),
        "tenant_id is required",
    ),
    ("path tenant of audit records", audit_pb2.ListAuditEventsRequest(tenant_id="../x"), "invalid tenant_id"),
    (
        "missing tenant in a header",
        ing_pb.UploadRequest(header=ing_pb.UploadHeader(filename="a.txt")),
        "header.tenant_id is required",
    ),
    (
        "path document id in a header",
        ing_pb.UploadRequest(header=ing_pb.UploadHeader(tenant_id="acme", filename="a", document_id="../x")),
        "invalid header.document_id",
    ),
    ("missing document id", ing_pb.GetDocumentRequest(tenant_id="acme"), "document_id is required"),
    ("nested context document id", _check_output(context_doc="a/b"), "invalid contexts[0].document_id"),
    (
        "deeply nested citation document id",
        _check_output(citation_doc="x" * 200),
        "invalid sentences[0].citations[0].document_id",
    ),
    (
        "bad principal",
        _search(access=common_pb2.AccessScope(principals=["alice", "bob smith"])),
        "in access.principals",
    ),
    (
        "long subject id",
        guardrail_pb2.CheckInputRequest(tenant_id="acme", text="hi", subject_id="q" * 129),
        "subject_id is 129 characters",
    ),
    (
        "control character in a subject id",
        guardrail_pb2.CheckInputRequest(tenant_id="acme", text="hi", subject_id="q\n1"),
        "subject_id has a control",
    ),
    ("unknown enum value", _search(mode=99), "mode is 99, not a value of isthmus.retrieval.v1.SearchMode"),
    (
        "unknown nested enum value",
        ing_pb.ListDocumentsRequest(tenant_id="acme", status=-1),
        "status is -1",
    ),
    ("nan alpha", _search(alpha=NAN), "alpha must be a finite number"),
    (
        "infinite threshold",
        guardrail_pb2.Policy(tenant_id="acme", injection_threshold=float("inf")),
        "injection_threshold must be a finite number",
    ),
    ("huge string", _search(query="q" * (MAX_STRING_CHARS + 1)), "query is"),
    ("long map key", _search(filters={"k" * 300: "v"}), "a key of filters"),
    ("huge map value", _search(filters={"k": "v" * (MAX_STRING_CHARS + 1)}), "filters['k'] is"),
    (
        "long file name",
        ing_pb.UploadRequest(header=ing_pb.UploadHeader(tenant_id="acme", filename="f" * 256 + ".txt")),
        "header.filename is 260 characters",
    ),
    (
        "dataset path component too long",
        evaluation_pb2.RunEvalRequest(dataset_path="/data/" + "d" * 300),
        "300-byte component",
    ),
    (
        "dataset path component too long in bytes",
        evaluation_pb2.RunEvalRequest(dataset_path="/data/" + "é" * 128),
        "256-byte component",
    ),
    (
        "dataset path with NUL",
        evaluation_pb2.RunEvalRequest(dataset_path="/data/\x00x"),
        "dataset_path has a",
    ),
]


@pytest.mark.parametrize(("msg", "reason"), [c[1:] for c in INVALID], ids=[c[0] for c in INVALID])
def test_invalid_requests_are_refused_with_the_field_and_the_rule(msg: Message, reason: str) -> None:
    with pytest.raises(InvalidArgument) as caught:
        validate_message(msg)
    assert reason in caught.value.reason


def test_every_repeated_item_is_checked() -> None:
    ok = ao_pb.AskRequest(tenant_id="acme", question="q")
    validate_message(ok)
    bad = rpb.SearchRequest(
        tenant_id="acme", query="q", filters={"a": "b", "c": "d" * (MAX_STRING_CHARS + 1)}
    )
    with pytest.raises(InvalidArgument, match=r"filters\['c'\]"):
        validate_message(bad)


# --- the interceptor, on the shared server -----------------------------------------------------------


class Retrieval(rgrpc.RetrievalServiceServicer):
    def __init__(self) -> None:
        self.calls = 0

    async def Search(
        self, request: rpb.SearchRequest, context: grpc.aio.ServicerContext
    ) -> rpb.SearchResponse:
        self.calls += 1
        return rpb.SearchResponse(model_id="m")

    async def GetTenant(self, request: rpb.GetTenantRequest, context: grpc.aio.ServicerContext) -> rpb.Tenant:
        class Event(BaseModel):  # stands for an event model refusing a value nobody checked
            tenant_id: str = Field(max_length=3)

        Event(tenant_id=request.tenant_id)
        return rpb.Tenant(tenant_id=request.tenant_id)


class Ingestion(ing_grpc.IngestionServiceServicer):
    def __init__(self) -> None:
        self.parts = 0

    async def Upload(
        self, request_iterator: AsyncIterator[ing_pb.UploadRequest], context: grpc.aio.ServicerContext
    ) -> ing_pb.UploadResponse:
        async for _ in request_iterator:
            self.parts += 1
        return ing_pb.UploadResponse(document_id="d")


class Orchestrator(ao_grpc.AgentOrchestratorServiceServicer):
    def __init__(self) -> None:
        self.calls = 0

    async def AskStream(
        self, request: ao_pb.AskRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[ao_pb.AskEvent]:
        self.calls += 1
        yield ao_pb.AskEvent(stage=ao_pb.StageEvent(stage=ao_pb.STAGE_DONE))


@pytest.fixture
async def served() -> AsyncIterator[dict[str, Any]]:
    retrieval, ingestion, orchestrator = Retrieval(), Ingestion(), Orchestrator()
    srv = GrpcServer("127.0.0.1", 0)
    srv.add(
        [
            lambda s: rgrpc.add_RetrievalServiceServicer_to_server(retrieval, s),
            lambda s: ing_grpc.add_IngestionServiceServicer_to_server(ingestion, s),
            lambda s: ao_grpc.add_AgentOrchestratorServiceServicer_to_server(orchestrator, s),
        ],
        ["isthmus.retrieval.v1.RetrievalService"],
    )
    await srv.start()
    async with grpc.aio.insecure_channel(srv.address) as ch:
        yield {"ch": ch, "retrieval": retrieval, "ingestion": ingestion, "orchestrator": orchestrator}
    await srv.stop(0)


async def test_a_bad_request_is_refused_before_the_handler_runs(served: dict[str, Any]) -> None:
    stub = rgrpc.RetrievalServiceStub(served["ch"])
    assert (await stub.Search(_search())).model_id == "m"
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.Search(_search(tenant_id="x" * 5000))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "invalid tenant_id" in (caught.value.details() or "")
    assert served["retrieval"].calls == 1


async def test_a_server_stream_is_refused_before_the_handler_runs(served: dict[str, Any]) -> None:
    stub = ao_grpc.AgentOrchestratorServiceStub(served["ch"])
    events = [e async for e in stub.AskStream(ao_pb.AskRequest(tenant_id="acme", question="q"))]
    assert len(events) == 1
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        async for _ in stub.AskStream(ao_pb.AskRequest(tenant_id="acme", question="q", access=_bad_scope())):
            pass
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert served["orchestrator"].calls == 1


def _bad_scope() -> common_pb2.AccessScope:
    return common_pb2.AccessScope(principals=["../etc"])


async def test_a_client_stream_is_checked_message_by_message(served: dict[str, Any]) -> None:
    stub = ing_grpc.IngestionServiceStub(served["ch"])
    header = ing_pb.UploadRequest(header=ing_pb.UploadHeader(tenant_id="acme", filename="a.txt"))
    bad = ing_pb.UploadRequest(header=ing_pb.UploadHeader(tenant_id="acme", filename="a\x00.txt"))
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.Upload(
            iter([header, ing_pb.UploadRequest(data=b"abc"), bad, ing_pb.UploadRequest(data=b"z")])
        )
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "header.filename" in (caught.value.details() or "")
    assert served["ingestion"].parts == 2  # the handler saw the good messages, and nothing after the bad one


@pytest.mark.parametrize(
    ("method", "streaming"),
    [
        ("/isthmus.retrieval.v1.RetrievalService/Search", False),
        ("/isthmus.ingestion.v1.IngestionService/Upload", True),
    ],
)
async def test_bytes_that_do_not_decode_are_invalid_argument(
    served: dict[str, Any], method: str, streaming: bool
) -> None:
    garbage = b"\xff\xff\xff\xff"
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        if streaming:
            await served["ch"].stream_unary(method)(iter([garbage]))
        else:
            await served["ch"].unary_unary(method)(garbage)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "does not decode" in (caught.value.details() or "")
    assert served["retrieval"].calls == served["ingestion"].parts == 0


async def test_invalid_utf8_in_a_string_is_invalid_argument(served: dict[str, Any]) -> None:
    # field 1 (tenant_id), length 2, bytes that are not UTF-8
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await served["ch"].unary_unary("/isthmus.retrieval.v1.RetrievalService/Search")(b"\x0a\x02\xc3\x28")
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_a_validation_error_escaping_a_handler_is_invalid_argument_marked_as_a_bug(
    served: dict[str, Any],
) -> None:
    stub = rgrpc.RetrievalServiceStub(served["ch"])
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.GetTenant(rpb.GetTenantRequest(tenant_id="longer"))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert (caught.value.details() or "").startswith(
        f"{UNVALIDATED} (Event): tenant_id: String should have at most 3"
    )
