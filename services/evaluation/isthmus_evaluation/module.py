"""The evaluation module: dataset runs over gRPC, online metrics from answer and verdict events."""

from __future__ import annotations

from collections.abc import AsyncIterator
from functools import partial

from isthmus.evaluation.v1 import evaluation_pb2, evaluation_pb2_grpc
from isthmus.ingestion.v1 import ingestion_pb2, ingestion_pb2_grpc
from isthmus.retrieval.v1 import retrieval_pb2, retrieval_pb2_grpc
from isthmus_core.bus.typed import subscribe
from isthmus_core.clients.tenant_directory import GrpcTenantDirectory
from isthmus_core.contracts import topics
from isthmus_core.contracts.events import AnswerProduced, GuardrailVerdict, TenantDeleted
from isthmus_core.contracts.ids import parse_tenant_id
from isthmus_core.runtime.module import Module, ModuleContext, Offer
from isthmus_evaluation.api import EvaluationServicer
from isthmus_evaluation.online import OnlineMetrics
from isthmus_evaluation.runner import EvalClients, EvalRunner
from isthmus_evaluation.settings import EvaluationSettings

NAME = "evaluation"
GROUP = "evaluation"
#: eval mode → (search mode, rerank); every mode says whether it reranks, whatever the service default
_MODES = {
    "bm25": (retrieval_pb2.SEARCH_MODE_BM25, False),
    "dense": (retrieval_pb2.SEARCH_MODE_DENSE, False),
    "hybrid": (retrieval_pb2.SEARCH_MODE_HYBRID, False),
    "hybrid+rerank": (retrieval_pb2.SEARCH_MODE_HYBRID, True),
}


def grpc_clients(ctx: ModuleContext[EvaluationSettings]) -> EvalClients:
    retrieval = retrieval_pb2_grpc.RetrievalServiceStub(ctx.channel("retrieval"))
    ingestion = ingestion_pb2_grpc.IngestionServiceStub(ctx.channel("ingestion"))

    async def create_tenant(t: str) -> None:
        await retrieval.CreateTenant(retrieval_pb2.CreateTenantRequest(tenant_id=t), timeout=30)

    async def delete_tenant(t: str) -> None:
        await retrieval.DeleteTenant(retrieval_pb2.DeleteTenantRequest(tenant_id=t), timeout=120)

    async def upload(t: str, doc_id: str, filename: str, data: bytes) -> None:
        async def parts() -> AsyncIterator[ingestion_pb2.UploadRequest]:
            yield ingestion_pb2.UploadRequest(
                header=ingestion_pb2.UploadHeader(tenant_id=t, filename=filename, document_id=doc_id)
            )
            yield ingestion_pb2.UploadRequest(data=data)

        await ingestion.Upload(parts(), timeout=120)

    async def progress(t: str) -> tuple[int, int, int]:
        resp = await ingestion.ListDocuments(ingestion_pb2.ListDocumentsRequest(tenant_id=t), timeout=60)
        indexed = sum(d.status == ingestion_pb2.DOCUMENT_STATUS_INDEXED for d in resp.documents)
        failed = sum(d.status == ingestion_pb2.DOCUMENT_STATUS_FAILED for d in resp.documents)
        return indexed, failed, len(resp.documents)

    async def search(t: str, query: str, mode: str, k: int) -> list[tuple[str, float]]:
        search_mode, rerank = _MODES[mode]
        resp = await retrieval.Search(
            retrieval_pb2.SearchRequest(tenant_id=t, query=query, mode=search_mode, top_k=k, rerank=rerank),
            timeout=60,
        )
        return [(h.context.document_id, h.context.score) for h in resp.hits]

    return EvalClients(create_tenant, delete_tenant, upload, progress, search)


async def build(ctx: ModuleContext[EvaluationSettings]) -> Offer:
    s = ctx.settings
    online = OnlineMetrics()
    runner = EvalRunner(
        grpc_clients(ctx),
        upload_concurrency=s.upload_concurrency,
        search_concurrency=s.search_concurrency,
        index_timeout_s=s.index_timeout_s,
        top_k=s.top_k,
    )

    async def on_answer(ev: AnswerProduced) -> None:
        online.observe_answer(ev)

    async def on_verdict(ev: GuardrailVerdict) -> None:
        online.observe_verdict(ev)

    tenants = GrpcTenantDirectory(ctx.channel("retrieval"))

    async def on_tenant_deleted(ev: TenantDeleted) -> None:
        tenant = parse_tenant_id(ev.tenant_id)
        tenants.forget(tenant)
        online.drop_tenant(tenant)

    return Offer(
        registrars=[
            partial(
                evaluation_pb2_grpc.add_EvaluationServiceServicer_to_server,
                EvaluationServicer(runner, online, tenants, s.datasets_root, s.max_upload_bytes),
            )
        ],
        grpc_service_names=[evaluation_pb2.DESCRIPTOR.services_by_name["EvaluationService"].full_name],
        subscriptions=[
            subscribe(topics.ANSWERS_PRODUCED, GROUP, on_answer),
            subscribe(topics.GUARDRAIL_VERDICTS, GROUP, on_verdict),
            subscribe(topics.TENANTS_DELETED, GROUP, on_tenant_deleted),
        ],
        topics=[topics.ANSWERS_PRODUCED, topics.GUARDRAIL_VERDICTS, topics.TENANTS_DELETED],
    )


MODULE = Module(
    name=NAME,
    settings_cls=EvaluationSettings,
    build=build,
    depends_on=("ingestion", "retrieval"),
    description="retrieval metrics on datasets and on live traffic",
)
