"""gRPC edge of evaluation."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import grpc

from isthmus.evaluation.v1 import evaluation_pb2 as pb
from isthmus.evaluation.v1 import evaluation_pb2_grpc as pb_grpc
from isthmus_core.contracts.events import AnswerProduced, ChunkProvenance, VerdictSummary
from isthmus_core.contracts.ids import parse_tenant_id
from isthmus_core.errors import FailedPrecondition, InvalidArgument, NotFound
from isthmus_core.ports.tenants import TenantDirectory, require_tenant
from isthmus_evaluation.audit_api import read_timestamp, timestamp_pb
from isthmus_evaluation.datasets import BeirDataset, DatasetUpload, dataset_under_root, load_beir
from isthmus_evaluation.online import resolve_window
from isthmus_evaluation.online_store import BUNDLED_MODELS, OnlineStore, OnlineSummary, Window
from isthmus_evaluation.records import RecordStore
from isthmus_evaluation.report import AnswerMetrics, AnswerResult, EvalReport, QueryResult
from isthmus_evaluation.runner import EvalProgress, EvalRunner, check_answers, check_modes


def _query_result_pb(q: QueryResult) -> pb.QueryResult:
    return pb.QueryResult(
        query_id=q.query_id,
        ndcg_at_10=q.ndcg_at_10,
        recall_at_100=q.recall_at_100,
        mrr_at_10=q.mrr_at_10,
        map_at_100=q.map_at_100,
        latency_ms=q.latency_ms,
        top=[pb.RankedDocument(document_id=d, score=sc) for d, sc in q.top],
    )


def _answers_pb(a: AnswerMetrics) -> pb.AnswerMetrics:
    return pb.AnswerMetrics(
        samples=a.samples,
        metrics=[pb.MetricValue(name=m.name, mean=m.mean, n=m.n, failures=m.failures) for m in a.metrics],
        failure_reasons=a.failure_reasons,
        judge=a.judge,
        blocked=a.blocked,
        latency_p50_ms=a.latency_p50_ms,
        latency_p95_ms=a.latency_p95_ms,
    )


def _answer_result_pb(a: AnswerResult) -> pb.AnswerResult:
    return pb.AnswerResult(
        query_id=a.query_id,
        question=a.question,
        answer=a.answer,
        scores=a.scores,
        failure=a.failure,
        failure_detail=a.failure_detail,
        blocked=a.blocked,
        latency_ms=a.latency_ms,
        context_documents=a.context_documents,
    )


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
                map_at_100=m.map_at_100,
                per_query=[_query_result_pb(q) for q in m.per_query],
            )
            for m in r.modes
        ],
        answers=_answers_pb(r.answers) if r.answers is not None else None,
        answer_results=[_answer_result_pb(a) for a in r.answer_results],
        query_texts=[
            pb.QueryText(query_id=q.query_id, text=q.text, relevant=q.relevant) for q in r.query_texts
        ],
        passages=[pb.Passage(document_id=p.document_id, title=p.title, text=p.text) for p in r.passages],
    )


def event_pb(ev: EvalProgress | EvalReport) -> pb.EvalEvent:
    if isinstance(ev, EvalProgress):
        return pb.EvalEvent(progress=pb.EvalProgress(phase=ev.phase, done=ev.done, total=ev.total))
    return pb.EvalEvent(report=report_pb(ev))


async def read_upload(
    requests: AsyncIterator[pb.RunEvalUploadRequest], max_bytes: int, default_judge: str = "offline"
) -> tuple[pb.RunEvalUploadHeader, BeirDataset]:
    """The header and the parsed dataset of a RunEvalUpload stream (held in memory, never on disk)."""
    header: pb.RunEvalUploadHeader | None = None
    upload = DatasetUpload(max_bytes)
    # a refusal raised while the client is still writing reaches it with its reason: the shared server
    # reads (bounded) what the client still sends before answering (isthmus_core.grpc.server._Requests)
    async for req in requests:
        kind = req.WhichOneof("part")
        if kind == "header":
            if header is not None:
                raise InvalidArgument("the upload stream has two headers; send exactly one, first")
            header = req.header
            check_modes(header.modes)  # fail fast, before the bytes
            check_answers(header.answers, header.judge, default_judge)
        elif kind is not None:
            if header is None:
                raise InvalidArgument("the first message of RunEvalUpload must be the header")
            upload.add(kind, getattr(req, kind))
    if header is None:
        raise InvalidArgument("empty RunEvalUpload stream: send a header, then the dataset's files")
    return header, await asyncio.to_thread(upload.parse, header.name)


#: the longest model bundle name (``Provenance.model_bundle``)
MAX_MODEL_BUNDLE_CHARS = 128


def online_metrics_pb(s: OnlineSummary, start: datetime | None, end: datetime) -> pb.OnlineMetrics:
    out = pb.OnlineMetrics(
        answers=s.answers,
        latency_p50_ms=s.latency_p50_ms or 0.0,
        latency_p95_ms=s.latency_p95_ms or 0.0,
        citations_per_answer=s.citations_per_answer,
        guardrail_blocks=s.guardrail_blocks,
        guardrail_redactions=s.guardrail_redactions,
        blocked_answers=s.blocked_answers,
        quality=[
            pb.MetricValue(name=name, mean=v.mean, n=v.n, failures=v.failures)
            for name, v in sorted(s.quality.items())
        ],
        guardrail_block_rate=s.block_rate,
        samples=s.samples,
        judge_failures=s.judge_failures,
        failure_reasons=s.failure_reasons,
        window_end=timestamp_pb(end),
        model_bundle=s.model_bundle,
    )
    if start is not None:
        out.window_start.CopyFrom(timestamp_pb(start))
    return out


#: answer ids are the orchestrator's question ids (32 hex digits); anything printable up to this is looked up
MAX_ANSWER_ID_CHARS = 128


def _chunk_pb(c: ChunkProvenance) -> pb.ProvenanceChunk:
    return pb.ProvenanceChunk(
        chunk_id=c.chunk_id,
        document_id=c.document_id,
        document_version=c.document_version,
        start=c.start,
        end=c.end,
        score=c.score,
    )


def _verdict_pb(v: VerdictSummary) -> pb.ProvenanceVerdict:
    return pb.ProvenanceVerdict(action=v.action, codes=v.codes)


def provenance_pb(ev: AnswerProduced) -> pb.Provenance:
    p = ev.provenance
    return pb.Provenance(
        answer_id=ev.question_id,
        tenant_id=ev.tenant_id,
        principal=p.principal,
        answered_at=timestamp_pb(ev.occurred_at),
        retrieved=[_chunk_pb(c) for c in p.retrieved],
        cited=[_chunk_pb(c) for c in p.cited],
        embedding_model=p.embedding_model,
        generator=p.generator or ev.generator,
        generator_model=p.generator_model,
        prompt_version=p.prompt_version,
        guardrail_policy_version=p.guardrail_policy_version,
        input_verdict=_verdict_pb(p.input_verdict),
        output_verdict=_verdict_pb(p.output_verdict),
        timings_ms=p.timings_ms,
        latency_ms=ev.latency_ms,
        blocked=ev.blocked,
    )


class EvaluationServicer(pb_grpc.EvaluationServiceServicer):
    def __init__(
        self,
        runner: EvalRunner,
        online: OnlineStore,
        tenants: TenantDirectory,
        datasets_root: Path | None = None,
        max_upload_bytes: int = 256 * 1024 * 1024,
        records: RecordStore | None = None,
    ) -> None:
        self._runner = runner
        self._online = online
        self._tenants = tenants
        self._root = datasets_root
        self._max_upload = max_upload_bytes
        self._records = records

    async def RunEval(
        self, request: pb.RunEvalRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[pb.EvalEvent]:
        check_modes(request.modes)
        check_answers(request.answers, request.judge, self._runner.default_judge)
        path = dataset_under_root(self._root, request.dataset_path)
        ds = await asyncio.to_thread(load_beir, path)
        async for ev in self._runner.run(
            ds,
            list(request.modes),
            request.max_queries,
            request.keep_tenant,
            answers=request.answers,
            judge=request.judge,
        ):
            yield event_pb(ev)

    async def RunEvalUpload(
        self, request_iterator: AsyncIterator[pb.RunEvalUploadRequest], context: grpc.aio.ServicerContext
    ) -> AsyncIterator[pb.EvalEvent]:
        header, ds = await read_upload(request_iterator, self._max_upload, self._runner.default_judge)
        async for ev in self._runner.run(
            ds,
            list(header.modes),
            header.max_queries,
            header.keep_tenant,
            answers=header.answers,
            judge=header.judge,
        ):
            yield event_pb(ev)

    async def GetOnlineMetrics(
        self, request: pb.GetOnlineMetricsRequest, context: grpc.aio.ServicerContext
    ) -> pb.OnlineMetrics:
        tenant = None  # no tenant id: the figures of all tenants together
        if request.tenant_id:
            tenant = await require_tenant(self._tenants, parse_tenant_id(request.tenant_id))
        window = resolve_window(
            request.window_seconds,
            read_timestamp(request.start, "start") if request.HasField("start") else None,
            read_timestamp(request.end, "end") if request.HasField("end") else None,
            datetime.now(UTC),
        )
        bundle = request.model_bundle
        if len(bundle) > MAX_MODEL_BUNDLE_CHARS or not bundle.isprintable():
            raise InvalidArgument(
                f"model_bundle must be at most {MAX_MODEL_BUNDLE_CHARS} printable characters"
            )
        if bundle and bundle != BUNDLED_MODELS and "@" not in bundle:
            raise InvalidArgument(
                f"model_bundle must be '<name>@<version>', {BUNDLED_MODELS!r} (the bundled models) or "
                f"empty (every bundle), got {bundle!r}"
            )
        s = await asyncio.to_thread(
            self._online.summary, tenant, Window.between(window.start, window.end), bundle
        )
        return online_metrics_pb(s, window.start, window.end)

    async def GetProvenance(
        self, request: pb.GetProvenanceRequest, context: grpc.aio.ServicerContext
    ) -> pb.Provenance:
        tenant = parse_tenant_id(request.tenant_id)
        answer_id = request.answer_id
        if not answer_id:
            raise InvalidArgument("answer_id is required: the question_id of the answer's AskResponse")
        if len(answer_id) > MAX_ANSWER_ID_CHARS or not answer_id.isprintable():
            raise InvalidArgument(f"answer_id must be at most {MAX_ANSWER_ID_CHARS} printable characters")
        if self._records is None:
            raise FailedPrecondition("this evaluation service keeps no provenance records")
        ev = await asyncio.to_thread(self._records.provenance, tenant, answer_id)
        if ev is None:  # never says whether another tenant has such an answer
            raise NotFound(f"tenant {tenant!r} has no answer {answer_id!r}")
        return provenance_pb(ev)
