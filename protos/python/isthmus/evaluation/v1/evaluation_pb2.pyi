from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class RunEvalRequest(_message.Message):
    __slots__ = ("dataset_path", "modes", "max_queries", "keep_tenant")
    DATASET_PATH_FIELD_NUMBER: _ClassVar[int]
    MODES_FIELD_NUMBER: _ClassVar[int]
    MAX_QUERIES_FIELD_NUMBER: _ClassVar[int]
    KEEP_TENANT_FIELD_NUMBER: _ClassVar[int]
    dataset_path: str
    modes: _containers.RepeatedScalarFieldContainer[str]
    max_queries: int
    keep_tenant: bool
    def __init__(self, dataset_path: _Optional[str] = ..., modes: _Optional[_Iterable[str]] = ..., max_queries: _Optional[int] = ..., keep_tenant: bool = ...) -> None: ...

class RunEvalUploadHeader(_message.Message):
    __slots__ = ("name", "modes", "max_queries", "keep_tenant")
    NAME_FIELD_NUMBER: _ClassVar[int]
    MODES_FIELD_NUMBER: _ClassVar[int]
    MAX_QUERIES_FIELD_NUMBER: _ClassVar[int]
    KEEP_TENANT_FIELD_NUMBER: _ClassVar[int]
    name: str
    modes: _containers.RepeatedScalarFieldContainer[str]
    max_queries: int
    keep_tenant: bool
    def __init__(self, name: _Optional[str] = ..., modes: _Optional[_Iterable[str]] = ..., max_queries: _Optional[int] = ..., keep_tenant: bool = ...) -> None: ...

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
    __slots__ = ("mode", "ndcg_at_10", "recall_at_100", "mrr_at_10", "latency_p50_ms", "latency_p95_ms")
    MODE_FIELD_NUMBER: _ClassVar[int]
    NDCG_AT_10_FIELD_NUMBER: _ClassVar[int]
    RECALL_AT_100_FIELD_NUMBER: _ClassVar[int]
    MRR_AT_10_FIELD_NUMBER: _ClassVar[int]
    LATENCY_P50_MS_FIELD_NUMBER: _ClassVar[int]
    LATENCY_P95_MS_FIELD_NUMBER: _ClassVar[int]
    mode: str
    ndcg_at_10: float
    recall_at_100: float
    mrr_at_10: float
    latency_p50_ms: float
    latency_p95_ms: float
    def __init__(self, mode: _Optional[str] = ..., ndcg_at_10: _Optional[float] = ..., recall_at_100: _Optional[float] = ..., mrr_at_10: _Optional[float] = ..., latency_p50_ms: _Optional[float] = ..., latency_p95_ms: _Optional[float] = ...) -> None: ...

class EvalReport(_message.Message):
    __slots__ = ("dataset", "documents", "queries", "modes", "tenant_id", "ingest_seconds")
    DATASET_FIELD_NUMBER: _ClassVar[int]
    DOCUMENTS_FIELD_NUMBER: _ClassVar[int]
    QUERIES_FIELD_NUMBER: _ClassVar[int]
    MODES_FIELD_NUMBER: _ClassVar[int]
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    INGEST_SECONDS_FIELD_NUMBER: _ClassVar[int]
    dataset: str
    documents: int
    queries: int
    modes: _containers.RepeatedCompositeFieldContainer[ModeMetrics]
    tenant_id: str
    ingest_seconds: float
    def __init__(self, dataset: _Optional[str] = ..., documents: _Optional[int] = ..., queries: _Optional[int] = ..., modes: _Optional[_Iterable[_Union[ModeMetrics, _Mapping]]] = ..., tenant_id: _Optional[str] = ..., ingest_seconds: _Optional[float] = ...) -> None: ...

class EvalEvent(_message.Message):
    __slots__ = ("progress", "report")
    PROGRESS_FIELD_NUMBER: _ClassVar[int]
    REPORT_FIELD_NUMBER: _ClassVar[int]
    progress: EvalProgress
    report: EvalReport
    def __init__(self, progress: _Optional[_Union[EvalProgress, _Mapping]] = ..., report: _Optional[_Union[EvalReport, _Mapping]] = ...) -> None: ...

class GetOnlineMetricsRequest(_message.Message):
    __slots__ = ("tenant_id",)
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    tenant_id: str
    def __init__(self, tenant_id: _Optional[str] = ...) -> None: ...

class OnlineMetrics(_message.Message):
    __slots__ = ("answers", "latency_p50_ms", "latency_p95_ms", "citations_per_answer", "guardrail_blocks", "guardrail_redactions", "blocked_answers")
    ANSWERS_FIELD_NUMBER: _ClassVar[int]
    LATENCY_P50_MS_FIELD_NUMBER: _ClassVar[int]
    LATENCY_P95_MS_FIELD_NUMBER: _ClassVar[int]
    CITATIONS_PER_ANSWER_FIELD_NUMBER: _ClassVar[int]
    GUARDRAIL_BLOCKS_FIELD_NUMBER: _ClassVar[int]
    GUARDRAIL_REDACTIONS_FIELD_NUMBER: _ClassVar[int]
    BLOCKED_ANSWERS_FIELD_NUMBER: _ClassVar[int]
    answers: int
    latency_p50_ms: float
    latency_p95_ms: float
    citations_per_answer: float
    guardrail_blocks: int
    guardrail_redactions: int
    blocked_answers: int
    def __init__(self, answers: _Optional[int] = ..., latency_p50_ms: _Optional[float] = ..., latency_p95_ms: _Optional[float] = ..., citations_per_answer: _Optional[float] = ..., guardrail_blocks: _Optional[int] = ..., guardrail_redactions: _Optional[int] = ..., blocked_answers: _Optional[int] = ...) -> None: ...
