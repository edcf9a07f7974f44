from isthmus.common.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class CheckInputRequest(_message.Message):
    __slots__ = ("tenant_id", "text", "subject_id")
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    SUBJECT_ID_FIELD_NUMBER: _ClassVar[int]
    tenant_id: str
    text: str
    subject_id: str
    def __init__(self, tenant_id: _Optional[str] = ..., text: _Optional[str] = ..., subject_id: _Optional[str] = ...) -> None: ...

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
    __slots__ = ("tenant_id",)
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    tenant_id: str
    def __init__(self, tenant_id: _Optional[str] = ...) -> None: ...

class Policy(_message.Message):
    __slots__ = ("tenant_id", "block_injection", "injection_threshold", "redact_pii", "pii_entities", "pii_threshold", "grounding_threshold", "block_ungrounded")
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    BLOCK_INJECTION_FIELD_NUMBER: _ClassVar[int]
    INJECTION_THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    REDACT_PII_FIELD_NUMBER: _ClassVar[int]
    PII_ENTITIES_FIELD_NUMBER: _ClassVar[int]
    PII_THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    GROUNDING_THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    BLOCK_UNGROUNDED_FIELD_NUMBER: _ClassVar[int]
    tenant_id: str
    block_injection: bool
    injection_threshold: float
    redact_pii: bool
    pii_entities: _containers.RepeatedScalarFieldContainer[str]
    pii_threshold: float
    grounding_threshold: float
    block_ungrounded: bool
    def __init__(self, tenant_id: _Optional[str] = ..., block_injection: bool = ..., injection_threshold: _Optional[float] = ..., redact_pii: bool = ..., pii_entities: _Optional[_Iterable[str]] = ..., pii_threshold: _Optional[float] = ..., grounding_threshold: _Optional[float] = ..., block_ungrounded: bool = ...) -> None: ...
