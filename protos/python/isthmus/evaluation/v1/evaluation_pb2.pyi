import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class RunEvalRequest(_message.Message):
    __slots__ = ("dataset_path", "modes", "max_queries", "keep_tenant", "answers", "judge")
    DATASET_PATH_FIELD_NUMBER: _ClassVar[int]
    MODES_FIELD_NUMBER: _ClassVar[int]
    MAX_QUERIES_FIELD_NUMBER: _ClassVar[int]
    KEEP_TENANT_FIELD_NUMBER: _ClassVar[int]
    ANSWERS_FIELD_NUMBER: _ClassVar[int]
    JUDGE_FIELD_NUMBER: _ClassVar[int]
    dataset_path: str
    modes: _containers.RepeatedScalarFieldContainer[str]
    max_queries: int
    keep_tenant: bool
    answers: int
    judge: str
    def __init__(self, dataset_path: _Optional[str] = ..., modes: _Optional[_Iterable[str]] = ..., max_queries: _Optional[int] = ..., keep_tenant: bool = ..., answers: _Optional[int] = ..., judge: _Optional[str] = ...) -> None: ...

class RunEvalUploadHeader(_message.Message):
    __slots__ = ("name", "modes", "max_queries", "keep_tenant", "answers", "judge")
    NAME_FIELD_NUMBER: _ClassVar[int]
    MODES_FIELD_NUMBER: _ClassVar[int]
    MAX_QUERIES_FIELD_NUMBER: _ClassVar[int]
    KEEP_TENANT_FIELD_NUMBER: _ClassVar[int]
    ANSWERS_FIELD_NUMBER: _ClassVar[int]
    JUDGE_FIELD_NUMBER: _ClassVar[int]
    name: str
    modes: _containers.RepeatedScalarFieldContainer[str]
    max_queries: int
    keep_tenant: bool
    answers: int
    judge: str
    def __init__(self, name: _Optional[str] = ..., modes: _Optional[_Iterable[str]] = ..., max_queries: _Optional[int] = ..., keep_tenant: bool = ..., answers: _Optional[int] = ..., judge: _Optional[str] = ...) -> None: ...

class RunEvalUploadRequest(_message.Message):
    __slots__ = ("header", "corpus", "queries", "qrels")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    CORPUS_FIELD_NUMBER: _ClassVar[int]
    QUERIES_FIELD_NUMBER: _ClassVar[int]
    QRELS_FIELD_NUMBER: _ClassVar[int]
    header: RunEvalUploadHeader
    corpus: bytes
    queries: bytes
    qrels: bytes
    def __init__(self, header: _Optional[_Union[RunEvalUploadHeader, _Mapping]] = ..., corpus: _Optional[bytes] = ..., queries: _Optional[bytes] = ..., qrels: _Optional[bytes] = ...) -> None: ...

class EvalProgress(_message.Message):
    __slots__ = ("phase", "done", "total")
    PHASE_FIELD_NUMBER: _ClassVar[int]
    DONE_FIELD_NUMBER: _ClassVar[int]
    TOTAL_FIELD_NUMBER: _ClassVar[int]
    phase: str
    done: int
    total: int
    def __init__(self, phase: _Optional[str] = ..., done: _Optional[int] = ..., total: _Optional[int] = ...) -> None: ...

class ModeMetrics(_message.Message):
    __slots__ = ("mode", "ndcg_at_10", "recall_at_100", "mrr_at_10", "latency_p50_ms", "latency_p95_ms", "map_at_100", "per_query")
    MODE_FIELD_NUMBER: _ClassVar[int]
    NDCG_AT_10_FIELD_NUMBER: _ClassVar[int]
    RECALL_AT_100_FIELD_NUMBER: _ClassVar[int]
    MRR_AT_10_FIELD_NUMBER: _ClassVar[int]
    LATENCY_P50_MS_FIELD_NUMBER: _ClassVar[int]
    LATENCY_P95_MS_FIELD_NUMBER: _ClassVar[int]
    MAP_AT_100_FIELD_NUMBER: _ClassVar[int]
    PER_QUERY_FIELD_NUMBER: _ClassVar[int]
    mode: str
    ndcg_at_10: float
    recall_at_100: float
    mrr_at_10: float
    latency_p50_ms: float
    latency_p95_ms: float
    map_at_100: float
    per_query: _containers.RepeatedCompositeFieldContainer[QueryResult]
    def __init__(self, mode: _Optional[str] = ..., ndcg_at_10: _Optional[float] = ..., recall_at_100: _Optional[float] = ..., mrr_at_10: _Optional[float] = ..., latency_p50_ms: _Optional[float] = ..., latency_p95_ms: _Optional[float] = ..., map_at_100: _Optional[float] = ..., per_query: _Optional[_Iterable[_Union[QueryResult, _Mapping]]] = ...) -> None: ...

class RankedDocument(_message.Message):
    __slots__ = ("document_id", "score")
    DOCUMENT_ID_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    document_id: str
    score: float
    def __init__(self, document_id: _Optional[str] = ..., score: _Optional[float] = ...) -> None: ...

class QueryResult(_message.Message):
    __slots__ = ("query_id", "ndcg_at_10", "recall_at_100", "mrr_at_10", "map_at_100", "latency_ms", "top")
    QUERY_ID_FIELD_NUMBER: _ClassVar[int]
    NDCG_AT_10_FIELD_NUMBER: _ClassVar[int]
    RECALL_AT_100_FIELD_NUMBER: _ClassVar[int]
    MRR_AT_10_FIELD_NUMBER: _ClassVar[int]
    MAP_AT_100_FIELD_NUMBER: _ClassVar[int]
    LATENCY_MS_FIELD_NUMBER: _ClassVar[int]
    TOP_FIELD_NUMBER: _ClassVar[int]
    query_id: str
    ndcg_at_10: float
    recall_at_100: float
    mrr_at_10: float
    map_at_100: float
    latency_ms: float
    top: _containers.RepeatedCompositeFieldContainer[RankedDocument]
    def __init__(self, query_id: _Optional[str] = ..., ndcg_at_10: _Optional[float] = ..., recall_at_100: _Optional[float] = ..., mrr_at_10: _Optional[float] = ..., map_at_100: _Optional[float] = ..., latency_ms: _Optional[float] = ..., top: _Optional[_Iterable[_Union[RankedDocument, _Mapping]]] = ...) -> None: ...

class QueryText(_message.Message):
    __slots__ = ("query_id", "text", "relevant")
    class RelevantEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    QUERY_ID_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    RELEVANT_FIELD_NUMBER: _ClassVar[int]
    query_id: str
    text: str
    relevant: _containers.ScalarMap[str, int]
    def __init__(self, query_id: _Optional[str] = ..., text: _Optional[str] = ..., relevant: _Optional[_Mapping[str, int]] = ...) -> None: ...

class Passage(_message.Message):
    __slots__ = ("document_id", "title", "text")
    DOCUMENT_ID_FIELD_NUMBER: _ClassVar[int]
    TITLE_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    document_id: str
    title: str
    text: str
    def __init__(self, document_id: _Optional[str] = ..., title: _Optional[str] = ..., text: _Optional[str] = ...) -> None: ...

class AnswerResult(_message.Message):
    __slots__ = ("query_id", "question", "answer", "scores", "failure", "failure_detail", "blocked", "latency_ms", "context_documents")
    class ScoresEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    QUERY_ID_FIELD_NUMBER: _ClassVar[int]
    QUESTION_FIELD_NUMBER: _ClassVar[int]
    ANSWER_FIELD_NUMBER: _ClassVar[int]
    SCORES_FIELD_NUMBER: _ClassVar[int]
    FAILURE_FIELD_NUMBER: _ClassVar[int]
    FAILURE_DETAIL_FIELD_NUMBER: _ClassVar[int]
    BLOCKED_FIELD_NUMBER: _ClassVar[int]
    LATENCY_MS_FIELD_NUMBER: _ClassVar[int]
    CONTEXT_DOCUMENTS_FIELD_NUMBER: _ClassVar[int]
    query_id: str
    question: str
    answer: str
    scores: _containers.ScalarMap[str, float]
    failure: str
    failure_detail: str
    blocked: bool
    latency_ms: float
    context_documents: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, query_id: _Optional[str] = ..., question: _Optional[str] = ..., answer: _Optional[str] = ..., scores: _Optional[_Mapping[str, float]] = ..., failure: _Optional[str] = ..., failure_detail: _Optional[str] = ..., blocked: bool = ..., latency_ms: _Optional[float] = ..., context_documents: _Optional[_Iterable[str]] = ...) -> None: ...

class MetricValue(_message.Message):
    __slots__ = ("name", "mean", "n", "failures")
    NAME_FIELD_NUMBER: _ClassVar[int]
    MEAN_FIELD_NUMBER: _ClassVar[int]
    N_FIELD_NUMBER: _ClassVar[int]
    FAILURES_FIELD_NUMBER: _ClassVar[int]
    name: str
    mean: float
    n: int
    failures: int
    def __init__(self, name: _Optional[str] = ..., mean: _Optional[float] = ..., n: _Optional[int] = ..., failures: _Optional[int] = ...) -> None: ...

class AnswerMetrics(_message.Message):
    __slots__ = ("samples", "metrics", "failure_reasons", "judge", "blocked", "latency_p50_ms", "latency_p95_ms")
    class FailureReasonsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    SAMPLES_FIELD_NUMBER: _ClassVar[int]
    METRICS_FIELD_NUMBER: _ClassVar[int]
    FAILURE_REASONS_FIELD_NUMBER: _ClassVar[int]
    JUDGE_FIELD_NUMBER: _ClassVar[int]
    BLOCKED_FIELD_NUMBER: _ClassVar[int]
    LATENCY_P50_MS_FIELD_NUMBER: _ClassVar[int]
    LATENCY_P95_MS_FIELD_NUMBER: _ClassVar[int]
    samples: int
    metrics: _containers.RepeatedCompositeFieldContainer[MetricValue]
    failure_reasons: _containers.ScalarMap[str, int]
    judge: str
    blocked: int
    latency_p50_ms: float
    latency_p95_ms: float
    def __init__(self, samples: _Optional[int] = ..., metrics: _Optional[_Iterable[_Union[MetricValue, _Mapping]]] = ..., failure_reasons: _Optional[_Mapping[str, int]] = ..., judge: _Optional[str] = ..., blocked: _Optional[int] = ..., latency_p50_ms: _Optional[float] = ..., latency_p95_ms: _Optional[float] = ...) -> None: ...

class EvalReport(_message.Message):
    __slots__ = ("dataset", "documents", "queries", "modes", "tenant_id", "ingest_seconds", "answers", "answer_results", "query_texts", "passages")
    DATASET_FIELD_NUMBER: _ClassVar[int]
    DOCUMENTS_FIELD_NUMBER: _ClassVar[int]
    QUERIES_FIELD_NUMBER: _ClassVar[int]
    MODES_FIELD_NUMBER: _ClassVar[int]
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    INGEST_SECONDS_FIELD_NUMBER: _ClassVar[int]
    ANSWERS_FIELD_NUMBER: _ClassVar[int]
    ANSWER_RESULTS_FIELD_NUMBER: _ClassVar[int]
    QUERY_TEXTS_FIELD_NUMBER: _ClassVar[int]
    PASSAGES_FIELD_NUMBER: _ClassVar[int]
    dataset: str
    documents: int
    queries: int
    modes: _containers.RepeatedCompositeFieldContainer[ModeMetrics]
    tenant_id: str
    ingest_seconds: float
    answers: AnswerMetrics
    answer_results: _containers.RepeatedCompositeFieldContainer[AnswerResult]
    query_texts: _containers.RepeatedCompositeFieldContainer[QueryText]
    passages: _containers.RepeatedCompositeFieldContainer[Passage]
    def __init__(self, dataset: _Optional[str] = ..., documents: _Optional[int] = ..., queries: _Optional[int] = ..., modes: _Optional[_Iterable[_Union[ModeMetrics, _Mapping]]] = ..., tenant_id: _Optional[str] = ..., ingest_seconds: _Optional[float] = ..., answers: _Optional[_Union[AnswerMetrics, _Mapping]] = ..., answer_results: _Optional[_Iterable[_Union[AnswerResult, _Mapping]]] = ..., query_texts: _Optional[_Iterable[_Union[QueryText, _Mapping]]] = ..., passages: _Optional[_Iterable[_Union[Passage, _Mapping]]] = ...) -> None: ...

class EvalEvent(_message.Message):
    __slots__ = ("progress", "report")
    PROGRESS_FIELD_NUMBER: _ClassVar[int]
    REPORT_FIELD_NUMBER: _ClassVar[int]
    progress: EvalProgress
    report: EvalReport
    def __init__(self, progress: _Optional[_Union[EvalProgress, _Mapping]] = ..., report: _Optional[_Union[EvalReport, _Mapping]] = ...) -> None: ...

class GetOnlineMetricsRequest(_message.Message):
    __slots__ = ("tenant_id", "window_seconds", "start", "end", "model_bundle")
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    WINDOW_SECONDS_FIELD_NUMBER: _ClassVar[int]
    START_FIELD_NUMBER: _ClassVar[int]
    END_FIELD_NUMBER: _ClassVar[int]
    MODEL_BUNDLE_FIELD_NUMBER: _ClassVar[int]
    tenant_id: str
    window_seconds: int
    start: _timestamp_pb2.Timestamp
    end: _timestamp_pb2.Timestamp
    model_bundle: str
    def __init__(self, tenant_id: _Optional[str] = ..., window_seconds: _Optional[int] = ..., start: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., end: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., model_bundle: _Optional[str] = ...) -> None: ...

class OnlineMetrics(_message.Message):
    __slots__ = ("answers", "latency_p50_ms", "latency_p95_ms", "citations_per_answer", "guardrail_blocks", "guardrail_redactions", "blocked_answers", "quality", "guardrail_block_rate", "samples", "judge_failures", "failure_reasons", "window_start", "window_end", "model_bundle")
    class FailureReasonsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    ANSWERS_FIELD_NUMBER: _ClassVar[int]
    LATENCY_P50_MS_FIELD_NUMBER: _ClassVar[int]
    LATENCY_P95_MS_FIELD_NUMBER: _ClassVar[int]
    CITATIONS_PER_ANSWER_FIELD_NUMBER: _ClassVar[int]
    GUARDRAIL_BLOCKS_FIELD_NUMBER: _ClassVar[int]
    GUARDRAIL_REDACTIONS_FIELD_NUMBER: _ClassVar[int]
    BLOCKED_ANSWERS_FIELD_NUMBER: _ClassVar[int]
    QUALITY_FIELD_NUMBER: _ClassVar[int]
    GUARDRAIL_BLOCK_RATE_FIELD_NUMBER: _ClassVar[int]
    SAMPLES_FIELD_NUMBER: _ClassVar[int]
    JUDGE_FAILURES_FIELD_NUMBER: _ClassVar[int]
    FAILURE_REASONS_FIELD_NUMBER: _ClassVar[int]
    WINDOW_START_FIELD_NUMBER: _ClassVar[int]
    WINDOW_END_FIELD_NUMBER: _ClassVar[int]
    MODEL_BUNDLE_FIELD_NUMBER: _ClassVar[int]
    answers: int
    latency_p50_ms: float
    latency_p95_ms: float
    citations_per_answer: float
    guardrail_blocks: int
    guardrail_redactions: int
    blocked_answers: int
    quality: _containers.RepeatedCompositeFieldContainer[MetricValue]
    guardrail_block_rate: float
    samples: int
    judge_failures: int
    failure_reasons: _containers.ScalarMap[str, int]
    window_start: _timestamp_pb2.Timestamp
    window_end: _timestamp_pb2.Timestamp
    model_bundle: str
    def __init__(self, answers: _Optional[int] = ..., latency_p50_ms: _Optional[float] = ..., latency_p95_ms: _Optional[float] = ..., citations_per_answer: _Optional[float] = ..., guardrail_blocks: _Optional[int] = ..., guardrail_redactions: _Optional[int] = ..., blocked_answers: _Optional[int] = ..., quality: _Optional[_Iterable[_Union[MetricValue, _Mapping]]] = ..., guardrail_block_rate: _Optional[float] = ..., samples: _Optional[int] = ..., judge_failures: _Optional[int] = ..., failure_reasons: _Optional[_Mapping[str, int]] = ..., window_start: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., window_end: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., model_bundle: _Optional[str] = ...) -> None: ...

class GetProvenanceRequest(_message.Message):
    __slots__ = ("tenant_id", "answer_id")
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    ANSWER_ID_FIELD_NUMBER: _ClassVar[int]
    tenant_id: str
    answer_id: str
    def __init__(self, tenant_id: _Optional[str] = ..., answer_id: _Optional[str] = ...) -> None: ...

class ProvenanceChunk(_message.Message):
    __slots__ = ("chunk_id", "document_id", "document_version", "start", "end", "score")
    CHUNK_ID_FIELD_NUMBER: _ClassVar[int]
    DOCUMENT_ID_FIELD_NUMBER: _ClassVar[int]
    DOCUMENT_VERSION_FIELD_NUMBER: _ClassVar[int]
    START_FIELD_NUMBER: _ClassVar[int]
    END_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    chunk_id: str
    document_id: str
    document_version: int
    start: int
    end: int
    score: float
    def __init__(self, chunk_id: _Optional[str] = ..., document_id: _Optional[str] = ..., document_version: _Optional[int] = ..., start: _Optional[int] = ..., end: _Optional[int] = ..., score: _Optional[float] = ...) -> None: ...

class ProvenanceVerdict(_message.Message):
    __slots__ = ("action", "codes")
    ACTION_FIELD_NUMBER: _ClassVar[int]
    CODES_FIELD_NUMBER: _ClassVar[int]
    action: str
    codes: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, action: _Optional[str] = ..., codes: _Optional[_Iterable[str]] = ...) -> None: ...

class Provenance(_message.Message):
    __slots__ = ("answer_id", "tenant_id", "principal", "answered_at", "retrieved", "cited", "embedding_model", "generator", "generator_model", "prompt_version", "guardrail_policy_version", "input_verdict", "output_verdict", "timings_ms", "latency_ms", "blocked")
    class TimingsMsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    ANSWER_ID_FIELD_NUMBER: _ClassVar[int]
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    PRINCIPAL_FIELD_NUMBER: _ClassVar[int]
    ANSWERED_AT_FIELD_NUMBER: _ClassVar[int]
    RETRIEVED_FIELD_NUMBER: _ClassVar[int]
    CITED_FIELD_NUMBER: _ClassVar[int]
    EMBEDDING_MODEL_FIELD_NUMBER: _ClassVar[int]
    GENERATOR_FIELD_NUMBER: _ClassVar[int]
    GENERATOR_MODEL_FIELD_NUMBER: _ClassVar[int]
    PROMPT_VERSION_FIELD_NUMBER: _ClassVar[int]
    GUARDRAIL_POLICY_VERSION_FIELD_NUMBER: _ClassVar[int]
    INPUT_VERDICT_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_VERDICT_FIELD_NUMBER: _ClassVar[int]
    TIMINGS_MS_FIELD_NUMBER: _ClassVar[int]
    LATENCY_MS_FIELD_NUMBER: _ClassVar[int]
    BLOCKED_FIELD_NUMBER: _ClassVar[int]
    answer_id: str
    tenant_id: str
    principal: str
    answered_at: _timestamp_pb2.Timestamp
    retrieved: _containers.RepeatedCompositeFieldContainer[ProvenanceChunk]
    cited: _containers.RepeatedCompositeFieldContainer[ProvenanceChunk]
    embedding_model: str
    generator: str
    generator_model: str
    prompt_version: str
    guardrail_policy_version: str
    input_verdict: ProvenanceVerdict
    output_verdict: ProvenanceVerdict
    timings_ms: _containers.ScalarMap[str, float]
    latency_ms: float
    blocked: bool
    def __init__(self, answer_id: _Optional[str] = ..., tenant_id: _Optional[str] = ..., principal: _Optional[str] = ..., answered_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., retrieved: _Optional[_Iterable[_Union[ProvenanceChunk, _Mapping]]] = ..., cited: _Optional[_Iterable[_Union[ProvenanceChunk, _Mapping]]] = ..., embedding_model: _Optional[str] = ..., generator: _Optional[str] = ..., generator_model: _Optional[str] = ..., prompt_version: _Optional[str] = ..., guardrail_policy_version: _Optional[str] = ..., input_verdict: _Optional[_Union[ProvenanceVerdict, _Mapping]] = ..., output_verdict: _Optional[_Union[ProvenanceVerdict, _Mapping]] = ..., timings_ms: _Optional[_Mapping[str, float]] = ..., latency_ms: _Optional[float] = ..., blocked: bool = ...) -> None: ...
