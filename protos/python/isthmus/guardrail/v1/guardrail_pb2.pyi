import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from isthmus.common.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class CheckInputRequest(_message.Message):
    __slots__ = ("tenant_id", "text", "subject_id", "origin")
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    SUBJECT_ID_FIELD_NUMBER: _ClassVar[int]
    ORIGIN_FIELD_NUMBER: _ClassVar[int]
    tenant_id: str
    text: str
    subject_id: str
    origin: str
    def __init__(self, tenant_id: _Optional[str] = ..., text: _Optional[str] = ..., subject_id: _Optional[str] = ..., origin: _Optional[str] = ...) -> None: ...

class CheckOutputRequest(_message.Message):
    __slots__ = ("tenant_id", "sentences", "contexts", "subject_id")
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    SENTENCES_FIELD_NUMBER: _ClassVar[int]
    CONTEXTS_FIELD_NUMBER: _ClassVar[int]
    SUBJECT_ID_FIELD_NUMBER: _ClassVar[int]
    tenant_id: str
    sentences: _containers.RepeatedCompositeFieldContainer[_common_pb2.AnswerSentence]
    contexts: _containers.RepeatedCompositeFieldContainer[_common_pb2.Context]
    subject_id: str
    def __init__(self, tenant_id: _Optional[str] = ..., sentences: _Optional[_Iterable[_Union[_common_pb2.AnswerSentence, _Mapping]]] = ..., contexts: _Optional[_Iterable[_Union[_common_pb2.Context, _Mapping]]] = ..., subject_id: _Optional[str] = ...) -> None: ...

class CheckOutputHeader(_message.Message):
    __slots__ = ("tenant_id", "subject_id", "contexts")
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    SUBJECT_ID_FIELD_NUMBER: _ClassVar[int]
    CONTEXTS_FIELD_NUMBER: _ClassVar[int]
    tenant_id: str
    subject_id: str
    contexts: _containers.RepeatedCompositeFieldContainer[_common_pb2.Context]
    def __init__(self, tenant_id: _Optional[str] = ..., subject_id: _Optional[str] = ..., contexts: _Optional[_Iterable[_Union[_common_pb2.Context, _Mapping]]] = ...) -> None: ...

class CheckOutputStreamRequest(_message.Message):
    __slots__ = ("header", "sentence")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    SENTENCE_FIELD_NUMBER: _ClassVar[int]
    header: CheckOutputHeader
    sentence: _common_pb2.AnswerSentence
    def __init__(self, header: _Optional[_Union[CheckOutputHeader, _Mapping]] = ..., sentence: _Optional[_Union[_common_pb2.AnswerSentence, _Mapping]] = ...) -> None: ...

class GetPolicyRequest(_message.Message):
    __slots__ = ("tenant_id", "version")
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    tenant_id: str
    version: int
    def __init__(self, tenant_id: _Optional[str] = ..., version: _Optional[int] = ...) -> None: ...

class BannedTopic(_message.Message):
    __slots__ = ("name", "description", "threshold")
    NAME_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    name: str
    description: str
    threshold: float
    def __init__(self, name: _Optional[str] = ..., description: _Optional[str] = ..., threshold: _Optional[float] = ...) -> None: ...

class Policy(_message.Message):
    __slots__ = ("tenant_id", "block_injection", "injection_threshold", "redact_pii", "pii_entities", "pii_threshold", "grounding_threshold", "block_ungrounded", "version", "label", "digest", "created_at", "created_by", "source", "current", "pii_action", "block_toxicity", "toxicity_threshold", "banned_topics", "output_pii_entities", "set_output_pii_entities", "output_pii_action", "grounding_model", "contradiction_threshold", "entailment_threshold", "scan_ingest", "ingest_injection_action", "ingest_injection_threshold", "ingest_pii_entities", "set_ingest_pii_entities", "ingest_pii_action", "ingest_scope")
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    BLOCK_INJECTION_FIELD_NUMBER: _ClassVar[int]
    INJECTION_THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    REDACT_PII_FIELD_NUMBER: _ClassVar[int]
    PII_ENTITIES_FIELD_NUMBER: _ClassVar[int]
    PII_THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    GROUNDING_THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    BLOCK_UNGROUNDED_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    LABEL_FIELD_NUMBER: _ClassVar[int]
    DIGEST_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    CREATED_BY_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    CURRENT_FIELD_NUMBER: _ClassVar[int]
    PII_ACTION_FIELD_NUMBER: _ClassVar[int]
    BLOCK_TOXICITY_FIELD_NUMBER: _ClassVar[int]
    TOXICITY_THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    BANNED_TOPICS_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_PII_ENTITIES_FIELD_NUMBER: _ClassVar[int]
    SET_OUTPUT_PII_ENTITIES_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_PII_ACTION_FIELD_NUMBER: _ClassVar[int]
    GROUNDING_MODEL_FIELD_NUMBER: _ClassVar[int]
    CONTRADICTION_THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    ENTAILMENT_THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    SCAN_INGEST_FIELD_NUMBER: _ClassVar[int]
    INGEST_INJECTION_ACTION_FIELD_NUMBER: _ClassVar[int]
    INGEST_INJECTION_THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    INGEST_PII_ENTITIES_FIELD_NUMBER: _ClassVar[int]
    SET_INGEST_PII_ENTITIES_FIELD_NUMBER: _ClassVar[int]
    INGEST_PII_ACTION_FIELD_NUMBER: _ClassVar[int]
    INGEST_SCOPE_FIELD_NUMBER: _ClassVar[int]
    tenant_id: str
    block_injection: bool
    injection_threshold: float
    redact_pii: bool
    pii_entities: _containers.RepeatedScalarFieldContainer[str]
    pii_threshold: float
    grounding_threshold: float
    block_ungrounded: bool
    version: int
    label: str
    digest: str
    created_at: _timestamp_pb2.Timestamp
    created_by: str
    source: str
    current: bool
    pii_action: str
    block_toxicity: bool
    toxicity_threshold: float
    banned_topics: _containers.RepeatedCompositeFieldContainer[BannedTopic]
    output_pii_entities: _containers.RepeatedScalarFieldContainer[str]
    set_output_pii_entities: bool
    output_pii_action: str
    grounding_model: bool
    contradiction_threshold: float
    entailment_threshold: float
    scan_ingest: bool
    ingest_injection_action: str
    ingest_injection_threshold: float
    ingest_pii_entities: _containers.RepeatedScalarFieldContainer[str]
    set_ingest_pii_entities: bool
    ingest_pii_action: str
    ingest_scope: str
    def __init__(self, tenant_id: _Optional[str] = ..., block_injection: bool = ..., injection_threshold: _Optional[float] = ..., redact_pii: bool = ..., pii_entities: _Optional[_Iterable[str]] = ..., pii_threshold: _Optional[float] = ..., grounding_threshold: _Optional[float] = ..., block_ungrounded: bool = ..., version: _Optional[int] = ..., label: _Optional[str] = ..., digest: _Optional[str] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., created_by: _Optional[str] = ..., source: _Optional[str] = ..., current: bool = ..., pii_action: _Optional[str] = ..., block_toxicity: bool = ..., toxicity_threshold: _Optional[float] = ..., banned_topics: _Optional[_Iterable[_Union[BannedTopic, _Mapping]]] = ..., output_pii_entities: _Optional[_Iterable[str]] = ..., set_output_pii_entities: bool = ..., output_pii_action: _Optional[str] = ..., grounding_model: bool = ..., contradiction_threshold: _Optional[float] = ..., entailment_threshold: _Optional[float] = ..., scan_ingest: bool = ..., ingest_injection_action: _Optional[str] = ..., ingest_injection_threshold: _Optional[float] = ..., ingest_pii_entities: _Optional[_Iterable[str]] = ..., set_ingest_pii_entities: bool = ..., ingest_pii_action: _Optional[str] = ..., ingest_scope: _Optional[str] = ...) -> None: ...

class ListPolicyVersionsRequest(_message.Message):
    __slots__ = ("tenant_id",)
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    tenant_id: str
    def __init__(self, tenant_id: _Optional[str] = ...) -> None: ...

class ListPolicyVersionsResponse(_message.Message):
    __slots__ = ("versions", "current")
    VERSIONS_FIELD_NUMBER: _ClassVar[int]
    CURRENT_FIELD_NUMBER: _ClassVar[int]
    versions: _containers.RepeatedCompositeFieldContainer[Policy]
    current: int
    def __init__(self, versions: _Optional[_Iterable[_Union[Policy, _Mapping]]] = ..., current: _Optional[int] = ...) -> None: ...

class RollbackPolicyRequest(_message.Message):
    __slots__ = ("tenant_id", "version")
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    tenant_id: str
    version: int
    def __init__(self, tenant_id: _Optional[str] = ..., version: _Optional[int] = ...) -> None: ...

class ApplyPolicyRefRequest(_message.Message):
    __slots__ = ("tenant_id", "name", "version")
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    tenant_id: str
    name: str
    version: int
    def __init__(self, tenant_id: _Optional[str] = ..., name: _Optional[str] = ..., version: _Optional[int] = ...) -> None: ...

class ChunkToScan(_message.Message):
    __slots__ = ("index", "text")
    INDEX_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    index: int
    text: str
    def __init__(self, index: _Optional[int] = ..., text: _Optional[str] = ...) -> None: ...

class ScanChunksRequest(_message.Message):
    __slots__ = ("tenant_id", "document_id", "chunks")
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    DOCUMENT_ID_FIELD_NUMBER: _ClassVar[int]
    CHUNKS_FIELD_NUMBER: _ClassVar[int]
    tenant_id: str
    document_id: str
    chunks: _containers.RepeatedCompositeFieldContainer[ChunkToScan]
    def __init__(self, tenant_id: _Optional[str] = ..., document_id: _Optional[str] = ..., chunks: _Optional[_Iterable[_Union[ChunkToScan, _Mapping]]] = ...) -> None: ...

class ChunkVerdict(_message.Message):
    __slots__ = ("index", "action", "findings", "text")
    INDEX_FIELD_NUMBER: _ClassVar[int]
    ACTION_FIELD_NUMBER: _ClassVar[int]
    FINDINGS_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    index: int
    action: _common_pb2.GuardAction
    findings: _containers.RepeatedCompositeFieldContainer[_common_pb2.Finding]
    text: str
    def __init__(self, index: _Optional[int] = ..., action: _Optional[_Union[_common_pb2.GuardAction, str]] = ..., findings: _Optional[_Iterable[_Union[_common_pb2.Finding, _Mapping]]] = ..., text: _Optional[str] = ...) -> None: ...

class ScanChunksResponse(_message.Message):
    __slots__ = ("verdicts", "policy_version", "scope")
    VERDICTS_FIELD_NUMBER: _ClassVar[int]
    POLICY_VERSION_FIELD_NUMBER: _ClassVar[int]
    SCOPE_FIELD_NUMBER: _ClassVar[int]
    verdicts: _containers.RepeatedCompositeFieldContainer[ChunkVerdict]
    policy_version: str
    scope: str
    def __init__(self, verdicts: _Optional[_Iterable[_Union[ChunkVerdict, _Mapping]]] = ..., policy_version: _Optional[str] = ..., scope: _Optional[str] = ...) -> None: ...

class EntailPair(_message.Message):
    __slots__ = ("premise", "hypothesis")
    PREMISE_FIELD_NUMBER: _ClassVar[int]
    HYPOTHESIS_FIELD_NUMBER: _ClassVar[int]
    premise: str
    hypothesis: str
    def __init__(self, premise: _Optional[str] = ..., hypothesis: _Optional[str] = ...) -> None: ...

class EntailRequest(_message.Message):
    __slots__ = ("tenant_id", "pairs")
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    PAIRS_FIELD_NUMBER: _ClassVar[int]
    tenant_id: str
    pairs: _containers.RepeatedCompositeFieldContainer[EntailPair]
    def __init__(self, tenant_id: _Optional[str] = ..., pairs: _Optional[_Iterable[_Union[EntailPair, _Mapping]]] = ...) -> None: ...

class Entailment(_message.Message):
    __slots__ = ("entailment", "neutral", "contradiction")
    ENTAILMENT_FIELD_NUMBER: _ClassVar[int]
    NEUTRAL_FIELD_NUMBER: _ClassVar[int]
    CONTRADICTION_FIELD_NUMBER: _ClassVar[int]
    entailment: float
    neutral: float
    contradiction: float
    def __init__(self, entailment: _Optional[float] = ..., neutral: _Optional[float] = ..., contradiction: _Optional[float] = ...) -> None: ...

class EntailResponse(_message.Message):
    __slots__ = ("results", "model")
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[Entailment]
    model: str
    def __init__(self, results: _Optional[_Iterable[_Union[Entailment, _Mapping]]] = ..., model: _Optional[str] = ...) -> None: ...

class ScoreRelevanceRequest(_message.Message):
    __slots__ = ("tenant_id", "query", "passages")
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    QUERY_FIELD_NUMBER: _ClassVar[int]
    PASSAGES_FIELD_NUMBER: _ClassVar[int]
    tenant_id: str
    query: str
    passages: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, tenant_id: _Optional[str] = ..., query: _Optional[str] = ..., passages: _Optional[_Iterable[str]] = ...) -> None: ...

class ScoreRelevanceResponse(_message.Message):
    __slots__ = ("scores", "model")
    SCORES_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    scores: _containers.RepeatedScalarFieldContainer[float]
    model: str
    def __init__(self, scores: _Optional[_Iterable[float]] = ..., model: _Optional[str] = ...) -> None: ...
