from isthmus.common.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Stage(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    STAGE_UNSPECIFIED: _ClassVar[Stage]
    STAGE_INPUT_GUARD: _ClassVar[Stage]
    STAGE_RETRIEVAL: _ClassVar[Stage]
    STAGE_GENERATION: _ClassVar[Stage]
    STAGE_OUTPUT_GUARD: _ClassVar[Stage]
    STAGE_DONE: _ClassVar[Stage]
STAGE_UNSPECIFIED: Stage
STAGE_INPUT_GUARD: Stage
STAGE_RETRIEVAL: Stage
STAGE_GENERATION: Stage
STAGE_OUTPUT_GUARD: Stage
STAGE_DONE: Stage

class AskRequest(_message.Message):
    __slots__ = ("tenant_id", "question", "top_k", "access")
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    QUESTION_FIELD_NUMBER: _ClassVar[int]
    TOP_K_FIELD_NUMBER: _ClassVar[int]
    ACCESS_FIELD_NUMBER: _ClassVar[int]
    tenant_id: str
    question: str
    top_k: int
    access: _common_pb2.AccessScope
    def __init__(self, tenant_id: _Optional[str] = ..., question: _Optional[str] = ..., top_k: _Optional[int] = ..., access: _Optional[_Union[_common_pb2.AccessScope, _Mapping]] = ...) -> None: ...

class AskResponse(_message.Message):
    __slots__ = ("question_id", "answer", "sentences", "citations", "input_verdict", "output_verdict", "blocked", "generator", "latency_ms")
    QUESTION_ID_FIELD_NUMBER: _ClassVar[int]
    ANSWER_FIELD_NUMBER: _ClassVar[int]
    SENTENCES_FIELD_NUMBER: _ClassVar[int]
    CITATIONS_FIELD_NUMBER: _ClassVar[int]
    INPUT_VERDICT_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_VERDICT_FIELD_NUMBER: _ClassVar[int]
    BLOCKED_FIELD_NUMBER: _ClassVar[int]
    GENERATOR_FIELD_NUMBER: _ClassVar[int]
    LATENCY_MS_FIELD_NUMBER: _ClassVar[int]
    question_id: str
    answer: str
    sentences: _containers.RepeatedCompositeFieldContainer[_common_pb2.AnswerSentence]
    citations: _containers.RepeatedCompositeFieldContainer[_common_pb2.Citation]
    input_verdict: _common_pb2.Verdict
    output_verdict: _common_pb2.Verdict
    blocked: bool
    generator: str
    latency_ms: float
    def __init__(self, question_id: _Optional[str] = ..., answer: _Optional[str] = ..., sentences: _Optional[_Iterable[_Union[_common_pb2.AnswerSentence, _Mapping]]] = ..., citations: _Optional[_Iterable[_Union[_common_pb2.Citation, _Mapping]]] = ..., input_verdict: _Optional[_Union[_common_pb2.Verdict, _Mapping]] = ..., output_verdict: _Optional[_Union[_common_pb2.Verdict, _Mapping]] = ..., blocked: bool = ..., generator: _Optional[str] = ..., latency_ms: _Optional[float] = ...) -> None: ...

class StageEvent(_message.Message):
    __slots__ = ("stage", "detail")
    STAGE_FIELD_NUMBER: _ClassVar[int]
    DETAIL_FIELD_NUMBER: _ClassVar[int]
    stage: Stage
    detail: str
    def __init__(self, stage: _Optional[_Union[Stage, str]] = ..., detail: _Optional[str] = ...) -> None: ...

class AskEvent(_message.Message):
    __slots__ = ("stage", "sentence", "final")
    STAGE_FIELD_NUMBER: _ClassVar[int]
    SENTENCE_FIELD_NUMBER: _ClassVar[int]
    FINAL_FIELD_NUMBER: _ClassVar[int]
    stage: StageEvent
    sentence: _common_pb2.AnswerSentence
    final: AskResponse
    def __init__(self, stage: _Optional[_Union[StageEvent, _Mapping]] = ..., sentence: _Optional[_Union[_common_pb2.AnswerSentence, _Mapping]] = ..., final: _Optional[_Union[AskResponse, _Mapping]] = ...) -> None: ...
