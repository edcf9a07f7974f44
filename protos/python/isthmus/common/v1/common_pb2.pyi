from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class GuardAction(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    GUARD_ACTION_UNSPECIFIED: _ClassVar[GuardAction]
    GUARD_ACTION_ALLOW: _ClassVar[GuardAction]
    GUARD_ACTION_REDACT: _ClassVar[GuardAction]
    GUARD_ACTION_BLOCK: _ClassVar[GuardAction]
    GUARD_ACTION_FLAG: _ClassVar[GuardAction]
GUARD_ACTION_UNSPECIFIED: GuardAction
GUARD_ACTION_ALLOW: GuardAction
GUARD_ACTION_REDACT: GuardAction
GUARD_ACTION_BLOCK: GuardAction
GUARD_ACTION_FLAG: GuardAction

class Citation(_message.Message):
    __slots__ = ("chunk_id", "document_id", "start", "end", "source_name", "title", "uri")
    CHUNK_ID_FIELD_NUMBER: _ClassVar[int]
    DOCUMENT_ID_FIELD_NUMBER: _ClassVar[int]
    START_FIELD_NUMBER: _ClassVar[int]
    END_FIELD_NUMBER: _ClassVar[int]
    SOURCE_NAME_FIELD_NUMBER: _ClassVar[int]
    TITLE_FIELD_NUMBER: _ClassVar[int]
    URI_FIELD_NUMBER: _ClassVar[int]
    chunk_id: str
    document_id: str
    start: int
    end: int
    source_name: str
    title: str
    uri: str
    def __init__(self, chunk_id: _Optional[str] = ..., document_id: _Optional[str] = ..., start: _Optional[int] = ..., end: _Optional[int] = ..., source_name: _Optional[str] = ..., title: _Optional[str] = ..., uri: _Optional[str] = ...) -> None: ...

class Finding(_message.Message):
    __slots__ = ("code", "message", "start", "end", "score")
    CODE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    START_FIELD_NUMBER: _ClassVar[int]
    END_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    code: str
    message: str
    start: int
    end: int
    score: float
    def __init__(self, code: _Optional[str] = ..., message: _Optional[str] = ..., start: _Optional[int] = ..., end: _Optional[int] = ..., score: _Optional[float] = ...) -> None: ...

class Verdict(_message.Message):
    __slots__ = ("action", "findings", "text", "policy_version")
    ACTION_FIELD_NUMBER: _ClassVar[int]
    FINDINGS_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    POLICY_VERSION_FIELD_NUMBER: _ClassVar[int]
    action: GuardAction
    findings: _containers.RepeatedCompositeFieldContainer[Finding]
    text: str
    policy_version: str
    def __init__(self, action: _Optional[_Union[GuardAction, str]] = ..., findings: _Optional[_Iterable[_Union[Finding, _Mapping]]] = ..., text: _Optional[str] = ..., policy_version: _Optional[str] = ...) -> None: ...

class Context(_message.Message):
    __slots__ = ("chunk_id", "document_id", "text", "start", "score")
    CHUNK_ID_FIELD_NUMBER: _ClassVar[int]
    DOCUMENT_ID_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    START_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    chunk_id: str
    document_id: str
    text: str
    start: int
    score: float
    def __init__(self, chunk_id: _Optional[str] = ..., document_id: _Optional[str] = ..., text: _Optional[str] = ..., start: _Optional[int] = ..., score: _Optional[float] = ...) -> None: ...

class AnswerSentence(_message.Message):
    __slots__ = ("text", "citations")
    TEXT_FIELD_NUMBER: _ClassVar[int]
    CITATIONS_FIELD_NUMBER: _ClassVar[int]
    text: str
    citations: _containers.RepeatedCompositeFieldContainer[Citation]
    def __init__(self, text: _Optional[str] = ..., citations: _Optional[_Iterable[_Union[Citation, _Mapping]]] = ...) -> None: ...

class AccessScope(_message.Message):
    __slots__ = ("principals",)
    PRINCIPALS_FIELD_NUMBER: _ClassVar[int]
    principals: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, principals: _Optional[_Iterable[str]] = ...) -> None: ...
