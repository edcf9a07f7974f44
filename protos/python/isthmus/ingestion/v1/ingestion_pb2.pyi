import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class DocumentStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    DOCUMENT_STATUS_UNSPECIFIED: _ClassVar[DocumentStatus]
    DOCUMENT_STATUS_RECEIVED: _ClassVar[DocumentStatus]
    DOCUMENT_STATUS_CHUNKED: _ClassVar[DocumentStatus]
    DOCUMENT_STATUS_EMBEDDED: _ClassVar[DocumentStatus]
    DOCUMENT_STATUS_INDEXED: _ClassVar[DocumentStatus]
    DOCUMENT_STATUS_FAILED: _ClassVar[DocumentStatus]
    DOCUMENT_STATUS_QUARANTINED: _ClassVar[DocumentStatus]
    DOCUMENT_STATUS_DELETED: _ClassVar[DocumentStatus]

class ErasureStepStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ERASURE_STEP_STATUS_UNSPECIFIED: _ClassVar[ErasureStepStatus]
    ERASURE_STEP_STATUS_PENDING: _ClassVar[ErasureStepStatus]
    ERASURE_STEP_STATUS_DONE: _ClassVar[ErasureStepStatus]
    ERASURE_STEP_STATUS_FAILED: _ClassVar[ErasureStepStatus]
DOCUMENT_STATUS_UNSPECIFIED: DocumentStatus
DOCUMENT_STATUS_RECEIVED: DocumentStatus
DOCUMENT_STATUS_CHUNKED: DocumentStatus
DOCUMENT_STATUS_EMBEDDED: DocumentStatus
DOCUMENT_STATUS_INDEXED: DocumentStatus
DOCUMENT_STATUS_FAILED: DocumentStatus
DOCUMENT_STATUS_QUARANTINED: DocumentStatus
DOCUMENT_STATUS_DELETED: DocumentStatus
ERASURE_STEP_STATUS_UNSPECIFIED: ErasureStepStatus
ERASURE_STEP_STATUS_PENDING: ErasureStepStatus
ERASURE_STEP_STATUS_DONE: ErasureStepStatus
ERASURE_STEP_STATUS_FAILED: ErasureStepStatus

class UploadHeader(_message.Message):
    __slots__ = ("tenant_id", "filename", "content_type", "document_id", "metadata")
    class MetadataEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    FILENAME_FIELD_NUMBER: _ClassVar[int]
    CONTENT_TYPE_FIELD_NUMBER: _ClassVar[int]
    DOCUMENT_ID_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    tenant_id: str
    filename: str
    content_type: str
    document_id: str
    metadata: _containers.ScalarMap[str, str]
    def __init__(self, tenant_id: _Optional[str] = ..., filename: _Optional[str] = ..., content_type: _Optional[str] = ..., document_id: _Optional[str] = ..., metadata: _Optional[_Mapping[str, str]] = ...) -> None: ...

class UploadRequest(_message.Message):
    __slots__ = ("header", "data")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    header: UploadHeader
    data: bytes
    def __init__(self, header: _Optional[_Union[UploadHeader, _Mapping]] = ..., data: _Optional[bytes] = ...) -> None: ...

class UploadResponse(_message.Message):
    __slots__ = ("document_id", "status", "content_hash", "chunk_count", "duplicate", "duplicate_of", "quarantined_chunks", "flagged_chunks", "redacted_chunks", "quarantine_reason", "child_document_ids")
    DOCUMENT_ID_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    CONTENT_HASH_FIELD_NUMBER: _ClassVar[int]
    CHUNK_COUNT_FIELD_NUMBER: _ClassVar[int]
    DUPLICATE_FIELD_NUMBER: _ClassVar[int]
    DUPLICATE_OF_FIELD_NUMBER: _ClassVar[int]
    QUARANTINED_CHUNKS_FIELD_NUMBER: _ClassVar[int]
    FLAGGED_CHUNKS_FIELD_NUMBER: _ClassVar[int]
    REDACTED_CHUNKS_FIELD_NUMBER: _ClassVar[int]
    QUARANTINE_REASON_FIELD_NUMBER: _ClassVar[int]
    CHILD_DOCUMENT_IDS_FIELD_NUMBER: _ClassVar[int]
    document_id: str
    status: DocumentStatus
    content_hash: str
    chunk_count: int
    duplicate: bool
    duplicate_of: str
    quarantined_chunks: int
    flagged_chunks: int
    redacted_chunks: int
    quarantine_reason: str
    child_document_ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, document_id: _Optional[str] = ..., status: _Optional[_Union[DocumentStatus, str]] = ..., content_hash: _Optional[str] = ..., chunk_count: _Optional[int] = ..., duplicate: bool = ..., duplicate_of: _Optional[str] = ..., quarantined_chunks: _Optional[int] = ..., flagged_chunks: _Optional[int] = ..., redacted_chunks: _Optional[int] = ..., quarantine_reason: _Optional[str] = ..., child_document_ids: _Optional[_Iterable[str]] = ...) -> None: ...

class GetDocumentRequest(_message.Message):
    __slots__ = ("tenant_id", "document_id")
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    DOCUMENT_ID_FIELD_NUMBER: _ClassVar[int]
    tenant_id: str
    document_id: str
    def __init__(self, tenant_id: _Optional[str] = ..., document_id: _Optional[str] = ...) -> None: ...

class Document(_message.Message):
    __slots__ = ("tenant_id", "document_id", "filename", "content_type", "content_hash", "status", "failure_reason", "chunk_count", "version", "created_at", "updated_at", "metadata", "quarantined_chunks", "flagged_chunks", "redacted_chunks", "quarantine_reason", "history", "chunking", "parent_document_id")
    class MetadataEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    DOCUMENT_ID_FIELD_NUMBER: _ClassVar[int]
    FILENAME_FIELD_NUMBER: _ClassVar[int]
    CONTENT_TYPE_FIELD_NUMBER: _ClassVar[int]
    CONTENT_HASH_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    FAILURE_REASON_FIELD_NUMBER: _ClassVar[int]
    CHUNK_COUNT_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    QUARANTINED_CHUNKS_FIELD_NUMBER: _ClassVar[int]
    FLAGGED_CHUNKS_FIELD_NUMBER: _ClassVar[int]
    REDACTED_CHUNKS_FIELD_NUMBER: _ClassVar[int]
    QUARANTINE_REASON_FIELD_NUMBER: _ClassVar[int]
    HISTORY_FIELD_NUMBER: _ClassVar[int]
    CHUNKING_FIELD_NUMBER: _ClassVar[int]
    PARENT_DOCUMENT_ID_FIELD_NUMBER: _ClassVar[int]
    tenant_id: str
    document_id: str
    filename: str
    content_type: str
    content_hash: str
    status: DocumentStatus
    failure_reason: str
    chunk_count: int
    version: int
    created_at: _timestamp_pb2.Timestamp
    updated_at: _timestamp_pb2.Timestamp
    metadata: _containers.ScalarMap[str, str]
    quarantined_chunks: int
    flagged_chunks: int
    redacted_chunks: int
    quarantine_reason: str
    history: _containers.RepeatedCompositeFieldContainer[StatusChange]
    chunking: str
    parent_document_id: str
    def __init__(self, tenant_id: _Optional[str] = ..., document_id: _Optional[str] = ..., filename: _Optional[str] = ..., content_type: _Optional[str] = ..., content_hash: _Optional[str] = ..., status: _Optional[_Union[DocumentStatus, str]] = ..., failure_reason: _Optional[str] = ..., chunk_count: _Optional[int] = ..., version: _Optional[int] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., updated_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., metadata: _Optional[_Mapping[str, str]] = ..., quarantined_chunks: _Optional[int] = ..., flagged_chunks: _Optional[int] = ..., redacted_chunks: _Optional[int] = ..., quarantine_reason: _Optional[str] = ..., history: _Optional[_Iterable[_Union[StatusChange, _Mapping]]] = ..., chunking: _Optional[str] = ..., parent_document_id: _Optional[str] = ...) -> None: ...

class StatusChange(_message.Message):
    __slots__ = ("status", "at", "version", "detail")
    STATUS_FIELD_NUMBER: _ClassVar[int]
    AT_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    DETAIL_FIELD_NUMBER: _ClassVar[int]
    status: DocumentStatus
    at: _timestamp_pb2.Timestamp
    version: int
    detail: str
    def __init__(self, status: _Optional[_Union[DocumentStatus, str]] = ..., at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., version: _Optional[int] = ..., detail: _Optional[str] = ...) -> None: ...

class DeleteDocumentRequest(_message.Message):
    __slots__ = ("tenant_id", "document_id", "reason")
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    DOCUMENT_ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    tenant_id: str
    document_id: str
    reason: str
    def __init__(self, tenant_id: _Optional[str] = ..., document_id: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class GetDocumentTextRequest(_message.Message):
    __slots__ = ("tenant_id", "document_id", "start", "end")
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    DOCUMENT_ID_FIELD_NUMBER: _ClassVar[int]
    START_FIELD_NUMBER: _ClassVar[int]
    END_FIELD_NUMBER: _ClassVar[int]
    tenant_id: str
    document_id: str
    start: int
    end: int
    def __init__(self, tenant_id: _Optional[str] = ..., document_id: _Optional[str] = ..., start: _Optional[int] = ..., end: _Optional[int] = ...) -> None: ...

class DocumentText(_message.Message):
    __slots__ = ("document_id", "version", "content_type", "title", "text", "start", "end", "length")
    DOCUMENT_ID_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    CONTENT_TYPE_FIELD_NUMBER: _ClassVar[int]
    TITLE_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    START_FIELD_NUMBER: _ClassVar[int]
    END_FIELD_NUMBER: _ClassVar[int]
    LENGTH_FIELD_NUMBER: _ClassVar[int]
    document_id: str
    version: int
    content_type: str
    title: str
    text: str
    start: int
    end: int
    length: int
    def __init__(self, document_id: _Optional[str] = ..., version: _Optional[int] = ..., content_type: _Optional[str] = ..., title: _Optional[str] = ..., text: _Optional[str] = ..., start: _Optional[int] = ..., end: _Optional[int] = ..., length: _Optional[int] = ...) -> None: ...

class ListDocumentsRequest(_message.Message):
    __slots__ = ("tenant_id", "status")
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    tenant_id: str
    status: DocumentStatus
    def __init__(self, tenant_id: _Optional[str] = ..., status: _Optional[_Union[DocumentStatus, str]] = ...) -> None: ...

class ListDocumentsResponse(_message.Message):
    __slots__ = ("documents",)
    DOCUMENTS_FIELD_NUMBER: _ClassVar[int]
    documents: _containers.RepeatedCompositeFieldContainer[Document]
    def __init__(self, documents: _Optional[_Iterable[_Union[Document, _Mapping]]] = ...) -> None: ...

class WatchDocumentsRequest(_message.Message):
    __slots__ = ("tenant_id", "document_ids", "until_terminal")
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    DOCUMENT_IDS_FIELD_NUMBER: _ClassVar[int]
    UNTIL_TERMINAL_FIELD_NUMBER: _ClassVar[int]
    tenant_id: str
    document_ids: _containers.RepeatedScalarFieldContainer[str]
    until_terminal: bool
    def __init__(self, tenant_id: _Optional[str] = ..., document_ids: _Optional[_Iterable[str]] = ..., until_terminal: bool = ...) -> None: ...

class DocumentEvent(_message.Message):
    __slots__ = ("document", "initial")
    DOCUMENT_FIELD_NUMBER: _ClassVar[int]
    INITIAL_FIELD_NUMBER: _ClassVar[int]
    document: Document
    initial: bool
    def __init__(self, document: _Optional[_Union[Document, _Mapping]] = ..., initial: bool = ...) -> None: ...

class DocumentIds(_message.Message):
    __slots__ = ("ids",)
    IDS_FIELD_NUMBER: _ClassVar[int]
    ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, ids: _Optional[_Iterable[str]] = ...) -> None: ...

class EraseRequest(_message.Message):
    __slots__ = ("tenant_id", "documents", "data_subject", "whole_tenant", "reason")
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    DOCUMENTS_FIELD_NUMBER: _ClassVar[int]
    DATA_SUBJECT_FIELD_NUMBER: _ClassVar[int]
    WHOLE_TENANT_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    tenant_id: str
    documents: DocumentIds
    data_subject: str
    whole_tenant: bool
    reason: str
    def __init__(self, tenant_id: _Optional[str] = ..., documents: _Optional[_Union[DocumentIds, _Mapping]] = ..., data_subject: _Optional[str] = ..., whole_tenant: bool = ..., reason: _Optional[str] = ...) -> None: ...

class GetErasureRequest(_message.Message):
    __slots__ = ("tenant_id", "erasure_id")
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    ERASURE_ID_FIELD_NUMBER: _ClassVar[int]
    tenant_id: str
    erasure_id: str
    def __init__(self, tenant_id: _Optional[str] = ..., erasure_id: _Optional[str] = ...) -> None: ...

class ErasureStep(_message.Message):
    __slots__ = ("place", "region", "status", "count", "detail", "completed_at")
    PLACE_FIELD_NUMBER: _ClassVar[int]
    REGION_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    DETAIL_FIELD_NUMBER: _ClassVar[int]
    COMPLETED_AT_FIELD_NUMBER: _ClassVar[int]
    place: str
    region: str
    status: ErasureStepStatus
    count: int
    detail: str
    completed_at: _timestamp_pb2.Timestamp
    def __init__(self, place: _Optional[str] = ..., region: _Optional[str] = ..., status: _Optional[_Union[ErasureStepStatus, str]] = ..., count: _Optional[int] = ..., detail: _Optional[str] = ..., completed_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class ErasureReceipt(_message.Message):
    __slots__ = ("erasure_id", "tenant_id", "requested_by", "requested_at", "document_ids", "steps", "complete", "target", "reason")
    ERASURE_ID_FIELD_NUMBER: _ClassVar[int]
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    REQUESTED_BY_FIELD_NUMBER: _ClassVar[int]
    REQUESTED_AT_FIELD_NUMBER: _ClassVar[int]
    DOCUMENT_IDS_FIELD_NUMBER: _ClassVar[int]
    STEPS_FIELD_NUMBER: _ClassVar[int]
    COMPLETE_FIELD_NUMBER: _ClassVar[int]
    TARGET_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    erasure_id: str
    tenant_id: str
    requested_by: str
    requested_at: _timestamp_pb2.Timestamp
    document_ids: _containers.RepeatedScalarFieldContainer[str]
    steps: _containers.RepeatedCompositeFieldContainer[ErasureStep]
    complete: bool
    target: str
    reason: str
    def __init__(self, erasure_id: _Optional[str] = ..., tenant_id: _Optional[str] = ..., requested_by: _Optional[str] = ..., requested_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., document_ids: _Optional[_Iterable[str]] = ..., steps: _Optional[_Iterable[_Union[ErasureStep, _Mapping]]] = ..., complete: bool = ..., target: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...
