"""The evaluation module: dataset runs over gRPC, online evaluation of answer and verdict events (durable
series, sampled answers judged, drops raised as ``QualityDropped``, Prometheus gauges), the audit log
(``AuditService``) and the provenance of answers (``GetProvenance``), kept in SQLite under
``<data_dir>/evaluation``."""

from __future__ import annotations

import asyncio
from functools import partial

import grpc

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
from isthmus_core.errors import IsthmusError
from isthmus_core.ports.judge import Judge
from isthmus_core.runtime.module import Hook, Module, ModuleContext, Offer
from isthmus_evaluation.api import EvaluationServicer
from isthmus_evaluation.audit_api import AuditServicer
from isthmus_evaluation.clients import GrpcEvalPlatform
from isthmus_evaluation.judges import build_judge, close_judge
from isthmus_evaluation.online_scoring import SampleScorer, ScoreFn
from isthmus_evaluation.online_service import OnlineEvaluation, load_eval_sets
from isthmus_evaluation.online_store import OnlineStore
from isthmus_evaluation.online_telemetry import (
    OnlineCollector,
    register_online_collector,
    unregister_online_collector,
)
from isthmus_evaluation.rag_metrics import RagSample, SampleScores, score_sample
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


def online_score_fn(settings: EvaluationSettings, judges: _Judges) -> ScoreFn | None:
    """How sampled live answers are scored: the RAG metrics with the ``online_judge`` (built on first
    use); None with ``online_judge = "none"`` (samples recorded, not scored). A judge that cannot be
    built (the llm judge without its URL) fails each sample with the code ``no_judge``."""
    kind = settings.online_judge
    if kind == "none":
        return None

    async def score(sample: RagSample, tenant_id: str) -> SampleScores:
        try:
            judge = judges.get(kind)
        except IsthmusError as exc:
            return SampleScores(failure="no_judge", detail=str(exc))
        return await score_sample(sample, judge, tenant_id)

    return score


async def build(ctx: ModuleContext[EvaluationSettings]) -> Offer:
    s = ctx.settings
    judges = _Judges(s, ctx.channel("guardrail"))
    store = OnlineStore(ctx.data_dir / "evaluation" / "online.sqlite")
    score = online_score_fn(s, judges)
    online = OnlineEvaluation(
        store,
        s,
        publisher(ctx.bus, topics.QUALITY_DROPPED),
        scorer=None if score is None else SampleScorer(store, score, concurrency=s.judge_concurrency),
        eval_sets=await asyncio.to_thread(load_eval_sets, s.datasets_root, s.online_eval_sets),
        region=ctx.common.region,
    )
    collector = OnlineCollector(store, s.online_window_s)
    register_online_collector(collector)
    records = RecordStore(ctx.data_dir / "evaluation" / "records.sqlite")
    runner = EvalRunner(
        GrpcEvalPlatform(
            ctx.channel("retrieval"), ctx.channel("ingestion"), ctx.channel("agent-orchestrator")
        ),
        upload_concurrency=s.upload_concurrency,
        search_concurrency=s.search_concurrency,
        index_timeout_s=s.index_timeout_s,
        top_k=s.top_k,
        judge_factory=judges.get,
        judge_concurrency=s.judge_concurrency,
        default_judge=s.judge,
    )

    async def on_answer(ev: AnswerProduced) -> None:
        await asyncio.to_thread(records.add_answer, ev)
        await online.observe_answer(ev)

    async def on_audit(ev: AuditRecorded) -> None:
        await asyncio.to_thread(records.add_audit, ev)

    async def on_verdict(ev: GuardrailVerdict) -> None:
        await online.observe_verdict(ev)

    tenants = GrpcTenantDirectory(ctx.channel("retrieval"))

    async def on_tenant_deleted(ev: TenantDeleted) -> None:
        tenant = parse_tenant_id(ev.tenant_id)
        tenants.forget(tenant)
        await asyncio.to_thread(store.drop_tenant, tenant, ev.occurred_at)
        await asyncio.to_thread(records.drop_tenant_answers, tenant, ev.occurred_at)

    publish_applied = publisher(ctx.bus, topics.ERASURES_APPLIED)
    region = ctx.common.region

    async def erase(ev: ErasureRequested) -> Outcome:
        """Forget the answers (provenance) and the online samples that used an erased document, and
        report it for the receipt."""
        try:
            count = await asyncio.to_thread(
                records.erase_answers, ev.tenant_id, ev.document_ids, ev.whole_tenant
            )
            samples = await asyncio.to_thread(store.erase, ev.tenant_id, ev.document_ids, ev.whole_tenant)
        except Exception as exc:
            await publish_applied(_applied(ev, region, 0, f"{type(exc).__name__}: {exc}", "failed"))
            raise
        what = "every answer of the tenant" if ev.whole_tenant else "answers that used them"
        detail = f"{count} {what} forgotten (provenance), {samples} online evaluation samples"
        await publish_applied(_applied(ev, region, count, detail, "done"))  # count: answers
        return "applied"

    async def on_erasure(ev: ErasureRequested) -> None:
        await erase(ev)

    async def held_here(tenant_id: str) -> bool:
        return await tenants.exists(parse_tenant_id(tenant_id))

    async def on_answer_from(ev: AnswerProduced) -> Outcome:
        if not await held_here(ev.tenant_id):
            return "tenant_absent"
        await asyncio.to_thread(records.add_answer, ev)
        await online.observe_answer(ev)
        return "applied"

    async def on_verdict_from(ev: GuardrailVerdict) -> Outcome:
        if not await held_here(ev.tenant_id):
            return "tenant_absent"
        await online.observe_verdict(ev)
        return "applied"

    peers = ctx.common.peer_regions()
    return Offer(
        registrars=[
            partial(
                evaluation_pb2_grpc.add_EvaluationServiceServicer_to_server,
                EvaluationServicer(runner, store, tenants, s.datasets_root, s.max_upload_bytes, records),
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
            topics.QUALITY_DROPPED,
            *replica_topics(
                [topics.ANSWERS_PRODUCED, topics.GUARDRAIL_VERDICTS, topics.ERASURES_REQUESTED], peers
            ),
        ],
        on_start=[online.start],
        # the scorer stops before the judges it calls are closed
        on_stop=[online.stop, _closer(records, store, collector), judges.close],
    )


class _Judges:
    """One judge per kind, built on first use (an unconfigured llm judge fails the run that asks for it,
    not the service's start), closed on stop."""

    def __init__(self, settings: EvaluationSettings, guardrail: grpc.aio.Channel) -> None:
        self._settings = settings
        self._guardrail = guardrail
        self._built: dict[str, Judge] = {}

    def get(self, kind: str) -> Judge:
        if kind not in self._built:
            self._built[kind] = build_judge(kind, self._settings, self._guardrail)
        return self._built[kind]

    async def close(self) -> None:
        for judge in self._built.values():
            await close_judge(judge)
        self._built.clear()


def _closer(records: RecordStore, store: OnlineStore, collector: OnlineCollector) -> Hook:
    async def close() -> None:
        unregister_online_collector(collector)
        records.close()
        store.close()

    return close


MODULE = Module(
    name=NAME,
    settings_cls=EvaluationSettings,
    build=build,
    depends_on=("ingestion", "retrieval", "agent-orchestrator", "guardrail"),
    description="retrieval and answer metrics on datasets; online evaluation of live answers (quality, "
    "drops); the audit log; answers' provenance",
)
