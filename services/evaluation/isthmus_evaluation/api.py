"""gRPC edge of evaluation."""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc

from isthmus.evaluation.v1 import evaluation_pb2 as pb
from isthmus.evaluation.v1 import evaluation_pb2_grpc as pb_grpc
from isthmus_core.contracts.ids import parse_tenant_id
from isthmus_core.ports.tenants import TenantDirectory, require_tenant
from isthmus_evaluation.online import OnlineMetrics
from isthmus_evaluation.report import EvalReport
from isthmus_evaluation.runner import EvalProgress, EvalRunner


def report_pb(r: EvalReport) -> pb.EvalReport:
    return pb.EvalReport(
        dataset=r.dataset,
        documents=r.documents,
        queries=r.queries,
        tenant_id=r.tenant_id,
        ingest_seconds=r.ingest_seconds,
        modes=[
            pb.ModeMetrics(
                mode=m.mode,
                ndcg_at_10=m.ndcg_at_10,
                recall_at_100=m.recall_at_100,
                mrr_at_10=m.mrr_at_10,
                latency_p50_ms=m.latency_p50_ms,
                latency_p95_ms=m.latency_p95_ms,
            )
            for m in r.modes
        ],
    )


class EvaluationServicer(pb_grpc.EvaluationServiceServicer):
    def __init__(self, runner: EvalRunner, online: OnlineMetrics, tenants: TenantDirectory) -> None:
        self._runner = runner
        self._online = online
        self._tenants = tenants

    async def RunEval(
        self, request: pb.RunEvalRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[pb.EvalEvent]:
        async for ev in self._runner.run(
            request.dataset_path, list(request.modes), request.max_queries, request.keep_tenant
        ):
            if isinstance(ev, EvalProgress):
                yield pb.EvalEvent(progress=pb.EvalProgress(phase=ev.phase, done=ev.done, total=ev.total))
            else:
                yield pb.EvalEvent(report=report_pb(ev))

    async def GetOnlineMetrics(
        self, request: pb.GetOnlineMetricsRequest, context: grpc.aio.ServicerContext
    ) -> pb.OnlineMetrics:
        tenant = None  # no tenant id: the figures of all tenants together
        if request.tenant_id:
            tenant = await require_tenant(self._tenants, parse_tenant_id(request.tenant_id))
        s = self._online.snapshot(tenant)
        return pb.OnlineMetrics(
            answers=s.answers,
            latency_p50_ms=s.latency_p50_ms,
            latency_p95_ms=s.latency_p95_ms,
            citations_per_answer=s.citations_per_answer,
            guardrail_blocks=s.guardrail_blocks,
            guardrail_redactions=s.guardrail_redactions,
            blocked_answers=s.blocked_answers,
        )
