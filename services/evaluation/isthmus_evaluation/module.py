"""The evaluation module: dataset runs over gRPC, online metrics from answer and verdict events, the audit
log (``AuditService``) and the provenance of answers (``GetProvenance``), kept in SQLite under
``<data_dir>/evaluation``."""

from __future__ import annotations

import asyncio
from functools import partial

from isthmus.audit.v1 import audit_pb2, audit_pb2_grpc
from isthmus.evaluation.v1 import evaluation_pb2, evaluation_pb2_grpc
from isthmus_core.bus.replication import Outcome, replica_subscriptions, replica_topics
from isthmus_core.bus.typed import publisher, subscribe
from isthmus_core.clients.tenant_directory import GrpcTenantDirectory
from isthmus_core.contracts import topics
from isthmus_core.contracts.events import (
    AnswerProduced,
    AuditRecorded,
    ErasureApplied,
    ErasureRequested,
    GuardrailVerdict,
    TenantDeleted,
)
from isthmus_core.contracts.ids import parse_tenant_id
from isthmus_core.runtime.module import Hook, Module, ModuleContext, Offer
from isthmus_evaluation.api import EvaluationServicer
from isthmus_evaluation.audit_api import AuditServicer
from isthmus_evaluation.clients import GrpcEvalPlatform
from isthmus_evaluation.online import OnlineMetrics
from isthmus_evaluation.records import RecordStore
from isthmus_evaluation.runner import EvalRunner
from isthmus_evaluation.settings import EvaluationSettings

NAME = "evaluation"
GROUP = "evaluation"
#: the audit log has its own consumer group: its progress never waits on (or replays) the metrics'
AUDIT_GROUP = "evaluation-audit"
ERASURE_GROUP = "evaluation-erasure"
ERASURE_PLACE = "evaluation"


def _applied(ev: ErasureRequested, region: str, count: int, detail: str, status: str) -> ErasureApplied:
    return ErasureApplied(
        tenant_id=ev.tenant_id,
        idempotency_key=f"{ev.tenant_id}/erasure/{ev.erasure_id}/{ERASURE_PLACE}/{region}",
        erasure_id=ev.erasure_id,
        place=ERASURE_PLACE,
        region=region,
        count=count,
        status="failed" if status == "failed" else "done",
        detail=detail,
    )


async def build(ctx: ModuleContext[EvaluationSettings]) -> Offer:
    s = ctx.settings
    online = OnlineMetrics()
    records = RecordStore(ctx.data_dir / "evaluation" / "records.sqlite")
    runner = EvalRunner(
        GrpcEvalPlatform(
            ctx.channel("retrieval"), ctx.channel("ingestion"), ctx.channel("agent-orchestrator")
        ),
        upload_concurrency=s.upload_concurrency,
        search_concurrency=s.search_concurrency,
        index_timeout_s=s.index_timeout_s,
        top_k=s.top_k,
        # TODO(lead, slice A): judge_factory=lambda kind: build_judge(kind, s, ctx.channel("guardrail")),
        # (and "guardrail" in depends_on); until then a run with answers > 0 is FAILED_PRECONDITION
        judge_concurrency=s.judge_concurrency,
        default_judge=s.judge,
    )

    async def on_answer(ev: AnswerProduced) -> None:
        await asyncio.to_thread(records.add_answer, ev)
        online.observe_answer(ev)

    async def on_audit(ev: AuditRecorded) -> None:
        await asyncio.to_thread(records.add_audit, ev)

    async def on_verdict(ev: GuardrailVerdict) -> None:
        online.observe_verdict(ev)

    tenants = GrpcTenantDirectory(ctx.channel("retrieval"))

    async def on_tenant_deleted(ev: TenantDeleted) -> None:
        tenant = parse_tenant_id(ev.tenant_id)
        tenants.forget(tenant)
        online.drop_tenant(tenant)
        await asyncio.to_thread(records.drop_tenant_answers, tenant, ev.occurred_at)

    publish_applied = publisher(ctx.bus, topics.ERASURES_APPLIED)
    region = ctx.common.region

    async def erase(ev: ErasureRequested) -> Outcome:
        """Forget the answers (provenance) that used an erased document, and report it for the receipt."""
        try:
            count = await asyncio.to_thread(
                records.erase_answers, ev.tenant_id, ev.document_ids, ev.whole_tenant
            )
        except Exception as exc:
            await publish_applied(_applied(ev, region, 0, f"{type(exc).__name__}: {exc}", "failed"))
            raise
        what = "every answer of the tenant" if ev.whole_tenant else "answers that used them"
        await publish_applied(_applied(ev, region, count, f"{count} {what} forgotten (provenance)", "done"))
        return "applied"

    async def on_erasure(ev: ErasureRequested) -> None:
        await erase(ev)

    async def held_here(tenant_id: str) -> bool:
        return await tenants.exists(parse_tenant_id(tenant_id))

    async def on_answer_from(ev: AnswerProduced) -> Outcome:
        if not await held_here(ev.tenant_id):
            return "tenant_absent"
        await asyncio.to_thread(records.add_answer, ev)
        online.observe_answer(ev)
        return "applied"

    async def on_verdict_from(ev: GuardrailVerdict) -> Outcome:
        if not await held_here(ev.tenant_id):
            return "tenant_absent"
        online.observe_verdict(ev)
        return "applied"

    peers = ctx.common.peer_regions()
    return Offer(
        registrars=[
            partial(
                evaluation_pb2_grpc.add_EvaluationServiceServicer_to_server,
                EvaluationServicer(runner, online, tenants, s.datasets_root, s.max_upload_bytes, records),
            ),
            partial(audit_pb2_grpc.add_AuditServiceServicer_to_server, AuditServicer(records)),
        ],
        grpc_service_names=[
            evaluation_pb2.DESCRIPTOR.services_by_name["EvaluationService"].full_name,
            audit_pb2.DESCRIPTOR.services_by_name["AuditService"].full_name,
        ],
        subscriptions=[
            subscribe(topics.ANSWERS_PRODUCED, GROUP, on_answer),
            subscribe(topics.GUARDRAIL_VERDICTS, GROUP, on_verdict),
            subscribe(topics.TENANTS_DELETED, GROUP, on_tenant_deleted),
            subscribe(topics.AUDIT_RECORDED, AUDIT_GROUP, on_audit),
            # erasures requested here and in the other regions: answers that used the documents go
            subscribe(topics.ERASURES_REQUESTED, ERASURE_GROUP, on_erasure),
            *replica_subscriptions(topics.ERASURES_REQUESTED, ERASURE_GROUP, peers, erase, service=NAME),
            # answers and verdicts of the other regions: online metrics cover the tenant everywhere
            *replica_subscriptions(topics.ANSWERS_PRODUCED, GROUP, peers, on_answer_from, service=NAME),
            *replica_subscriptions(topics.GUARDRAIL_VERDICTS, GROUP, peers, on_verdict_from, service=NAME),
        ],
        topics=[
            topics.ANSWERS_PRODUCED,
            topics.GUARDRAIL_VERDICTS,
            topics.TENANTS_DELETED,
            topics.AUDIT_RECORDED,
            topics.ERASURES_REQUESTED,
            topics.ERASURES_APPLIED,
            *replica_topics(
                [topics.ANSWERS_PRODUCED, topics.GUARDRAIL_VERDICTS, topics.ERASURES_REQUESTED], peers
            ),
        ],
        on_stop=[_closer(records)],
    )


def _closer(records: RecordStore) -> Hook:
    async def close() -> None:
        records.close()

    return close


MODULE = Module(
    name=NAME,
    settings_cls=EvaluationSettings,
    build=build,
    depends_on=("ingestion", "retrieval", "agent-orchestrator"),
    description="retrieval metrics on datasets and on live traffic; the audit log; answers' provenance",
)
