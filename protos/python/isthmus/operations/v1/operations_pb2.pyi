import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ListConsumersRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ConsumerPartition(_message.Message):
    __slots__ = ("group", "topic", "partition", "position", "end_offset", "lag", "modules", "committed")
    GROUP_FIELD_NUMBER: _ClassVar[int]
    TOPIC_FIELD_NUMBER: _ClassVar[int]
    PARTITION_FIELD_NUMBER: _ClassVar[int]
    POSITION_FIELD_NUMBER: _ClassVar[int]
    END_OFFSET_FIELD_NUMBER: _ClassVar[int]
    LAG_FIELD_NUMBER: _ClassVar[int]
    MODULES_FIELD_NUMBER: _ClassVar[int]
    COMMITTED_FIELD_NUMBER: _ClassVar[int]
    group: str
    topic: str
    partition: int
    position: int
    end_offset: int
    lag: int
    modules: _containers.RepeatedScalarFieldContainer[str]
    committed: bool
    def __init__(self, group: _Optional[str] = ..., topic: _Optional[str] = ..., partition: _Optional[int] = ..., position: _Optional[int] = ..., end_offset: _Optional[int] = ..., lag: _Optional[int] = ..., modules: _Optional[_Iterable[str]] = ..., committed: bool = ...) -> None: ...

class ListConsumersResponse(_message.Message):
    __slots__ = ("consumers", "bus", "modules")
    CONSUMERS_FIELD_NUMBER: _ClassVar[int]
    BUS_FIELD_NUMBER: _ClassVar[int]
    MODULES_FIELD_NUMBER: _ClassVar[int]
    consumers: _containers.RepeatedCompositeFieldContainer[ConsumerPartition]
    bus: str
    modules: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, consumers: _Optional[_Iterable[_Union[ConsumerPartition, _Mapping]]] = ..., bus: _Optional[str] = ..., modules: _Optional[_Iterable[str]] = ...) -> None: ...

class ListDeadLettersRequest(_message.Message):
    __slots__ = ("topic", "limit", "tenant_id")
    TOPIC_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    topic: str
    limit: int
    tenant_id: str
    def __init__(self, topic: _Optional[str] = ..., limit: _Optional[int] = ..., tenant_id: _Optional[str] = ...) -> None: ...

class DeadLetter(_message.Message):
    __slots__ = ("topic", "partition", "offset", "key", "tenant_id", "error_class", "error_message", "attempts", "group", "source_topic", "source_partition", "source_offset", "timestamp", "payload_size", "payload_preview", "payload_truncated", "replayed", "replayed_to")
    TOPIC_FIELD_NUMBER: _ClassVar[int]
    PARTITION_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    ERROR_CLASS_FIELD_NUMBER: _ClassVar[int]
    ERROR_MESSAGE_FIELD_NUMBER: _ClassVar[int]
    ATTEMPTS_FIELD_NUMBER: _ClassVar[int]
    GROUP_FIELD_NUMBER: _ClassVar[int]
    SOURCE_TOPIC_FIELD_NUMBER: _ClassVar[int]
    SOURCE_PARTITION_FIELD_NUMBER: _ClassVar[int]
    SOURCE_OFFSET_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMP_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_PREVIEW_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_TRUNCATED_FIELD_NUMBER: _ClassVar[int]
    REPLAYED_FIELD_NUMBER: _ClassVar[int]
    REPLAYED_TO_FIELD_NUMBER: _ClassVar[int]
    topic: str
    partition: int
    offset: int
    key: str
    tenant_id: str
    error_class: str
    error_message: str
    attempts: int
    group: str
    source_topic: str
    source_partition: int
    source_offset: int
    timestamp: _timestamp_pb2.Timestamp
    payload_size: int
    payload_preview: str
    payload_truncated: bool
    replayed: bool
    replayed_to: ReplayedTo
    def __init__(self, topic: _Optional[str] = ..., partition: _Optional[int] = ..., offset: _Optional[int] = ..., key: _Optional[str] = ..., tenant_id: _Optional[str] = ..., error_class: _Optional[str] = ..., error_message: _Optional[str] = ..., attempts: _Optional[int] = ..., group: _Optional[str] = ..., source_topic: _Optional[str] = ..., source_partition: _Optional[int] = ..., source_offset: _Optional[int] = ..., timestamp: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., payload_size: _Optional[int] = ..., payload_preview: _Optional[str] = ..., payload_truncated: bool = ..., replayed: bool = ..., replayed_to: _Optional[_Union[ReplayedTo, _Mapping]] = ...) -> None: ...

class ReplayedTo(_message.Message):
    __slots__ = ("topic", "partition", "offset", "replayed_by", "replayed_at")
    TOPIC_FIELD_NUMBER: _ClassVar[int]
    PARTITION_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    REPLAYED_BY_FIELD_NUMBER: _ClassVar[int]
    REPLAYED_AT_FIELD_NUMBER: _ClassVar[int]
    topic: str
    partition: int
    offset: int
    replayed_by: str
    replayed_at: _timestamp_pb2.Timestamp
    def __init__(self, topic: _Optional[str] = ..., partition: _Optional[int] = ..., offset: _Optional[int] = ..., replayed_by: _Optional[str] = ..., replayed_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class ListDeadLettersResponse(_message.Message):
    __slots__ = ("dead_letters", "topic", "total")
    DEAD_LETTERS_FIELD_NUMBER: _ClassVar[int]
    TOPIC_FIELD_NUMBER: _ClassVar[int]
    TOTAL_FIELD_NUMBER: _ClassVar[int]
    dead_letters: _containers.RepeatedCompositeFieldContainer[DeadLetter]
    topic: str
    total: int
    def __init__(self, dead_letters: _Optional[_Iterable[_Union[DeadLetter, _Mapping]]] = ..., topic: _Optional[str] = ..., total: _Optional[int] = ...) -> None: ...

class ReplayDeadLetterRequest(_message.Message):
    __slots__ = ("topic", "partition", "offset", "tenant_id")
    TOPIC_FIELD_NUMBER: _ClassVar[int]
    PARTITION_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    topic: str
    partition: int
    offset: int
    tenant_id: str
    def __init__(self, topic: _Optional[str] = ..., partition: _Optional[int] = ..., offset: _Optional[int] = ..., tenant_id: _Optional[str] = ...) -> None: ...

class ReplayDeadLetterResponse(_message.Message):
    __slots__ = ("dead_letter", "replayed_to")
    DEAD_LETTER_FIELD_NUMBER: _ClassVar[int]
    REPLAYED_TO_FIELD_NUMBER: _ClassVar[int]
    dead_letter: DeadLetter
    replayed_to: ReplayedTo
    def __init__(self, dead_letter: _Optional[_Union[DeadLetter, _Mapping]] = ..., replayed_to: _Optional[_Union[ReplayedTo, _Mapping]] = ...) -> None: ...
