"""The evaluation module: dataset runs over gRPC, online metrics from answer and verdict events."""

from __future__ import annotations

from functools import partial

from isthmus.evaluation.v1 import evaluation_pb2, evaluation_pb2_grpc
from isthmus_core.bus.typed import subscribe
from isthmus_core.clients.tenant_directory import GrpcTenantDirectory
from isthmus_core.contracts import topics
from isthmus_core.contracts.events import AnswerProduced, GuardrailVerdict, TenantDeleted
from isthmus_core.contracts.ids import parse_tenant_id
from isthmus_core.runtime.module import Module, ModuleContext, Offer
from isthmus_evaluation.api import EvaluationServicer
from isthmus_evaluation.clients import GrpcEvalPlatform
from isthmus_evaluation.online import OnlineMetrics
from isthmus_evaluation.runner import EvalRunner
from isthmus_evaluation.settings import EvaluationSettings

NAME = "evaluation"
GROUP = "evaluation"


async def build(ctx: ModuleContext[EvaluationSettings]) -> Offer:
    s = ctx.settings
    online = OnlineMetrics()
    runner = EvalRunner(
        GrpcEvalPlatform(ctx.channel("retrieval"), ctx.channel("ingestion")),
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
