"""Edge validation: every request message is checked *before* its handler runs.

:class:`ValidationInterceptor` wraps every Isthmus method (not health or reflection) of the shared
server. It walks the request's protobuf descriptor — nested messages, repeated fields and maps included,
and each message of a client stream as it arrives — and refuses the call with ``INVALID_ARGUMENT``
(reason: the field path and the rule) when:

* the bytes do not decode as the request type (grpc.aio would otherwise answer ``UNKNOWN``);
* a field named in :data:`FIELD_RULES` breaks its rule: ``tenant_id`` → :func:`parse_tenant_id`,
  ``document_id`` → :func:`parse_document_id`, ``principals`` → :func:`parse_principals`,
  ``subject_id`` (the verdict event's idempotency key) ≤ 128 printable characters, ``filename`` a
  printable file name ≤ 255 characters, ``dataset_path`` a printable path ≤ 1000 characters whose
  components are ≤ 255 bytes (it names a directory), ``erasure_id`` 32 hexadecimal digits,
  ``data_subject`` ≤ 256 printable characters, not blank; a list of ``ids`` (an erasure's documents)
  ≤ 10,000 document ids. An empty ``tenant_id`` / ``document_id`` / ``erasure_id`` is refused
  ("is required") unless the field is in :data:`EMPTY_ALLOWED` (optional by design in the proto);
* any other string is longer than :data:`MAX_STRING_CHARS`, or a map key than :data:`MAX_KEY_CHARS`
  (bytes are bounded by the server's message size and each service's own limit, e.g. the upload size);
* an enum field holds a number the enum does not declare;
* a float or double field is NaN or infinite.

Semantic limits that depend on settings (``top_k``, text lengths, thresholds) stay with each service.
A handler that reads its stream with ``context.read()`` instead of the request iterator is not covered.
"""

from __future__ import annotations

import math
import re
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from typing import Any, Final

import grpc
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message

from isthmus_core.contracts.events import ERASE_MAX_IDS, ERASE_MAX_SUBJECT_CHARS, ERASURE_ID_PATTERN
from isthmus_core.contracts.ids import parse_document_id, parse_principals, parse_tenant_id
from isthmus_core.errors import InvalidArgument
from isthmus_core.grpc.handlers import WrappingInterceptor, rewrap

#: longest accepted string field without a rule of its own (services enforce tighter, settings-based limits)
MAX_STRING_CHARS: Final = 1_000_000
#: longest accepted map key (metadata keys, search filter keys)
MAX_KEY_CHARS: Final = 256
MAX_SUBJECT_CHARS: Final = 128
MAX_FILENAME_CHARS: Final = 255
MAX_PATH_CHARS: Final = 1000  # ≤ 4000 UTF-8 bytes, under PATH_MAX
#: longest component of a path, in UTF-8 bytes (NAME_MAX of common file systems)
MAX_NAME_BYTES: Final = 255

#: ``<full message name>.<field>`` of id fields that may be empty (the proto says so): empty = all tenants,
#: or a server-assigned id
EMPTY_ALLOWED: Final = frozenset(
    {
        "isthmus.evaluation.v1.GetOnlineMetricsRequest.tenant_id",
        "isthmus.audit.v1.ListAuditEventsRequest.tenant_id",
        "isthmus.operations.v1.ListDeadLettersRequest.tenant_id",
        "isthmus.operations.v1.ReplayDeadLetterRequest.tenant_id",
        "isthmus.ingestion.v1.UploadHeader.document_id",
    }
)


def _printable(value: str, path: str, limit: int, what: str) -> None:
    if len(value) > limit:
        raise InvalidArgument(f"{path} is {len(value)} characters; {what} are at most {limit}")
    if not value.isprintable():
        raise InvalidArgument(f"{path} has a control or non-printable character; {what} are printable")


def _subject(value: str, path: str) -> None:
    _printable(value, path, MAX_SUBJECT_CHARS, "subject ids")


def _filename(value: str, path: str) -> None:
    _printable(value, path, MAX_FILENAME_CHARS, "file names")


def _dataset_path(value: str, path: str) -> None:
    _printable(value, path, MAX_PATH_CHARS, "paths")
    longest = max((len(part.encode()) for part in value.split("/")), default=0)
    if longest > MAX_NAME_BYTES:  # the file system counts bytes: ENAMETOOLONG otherwise
        raise InvalidArgument(f"{path} has a {longest}-byte component; the limit is {MAX_NAME_BYTES} bytes")


_ERASURE_ID: Final = re.compile(ERASURE_ID_PATTERN)


def _erasure_id(value: str, path: str) -> None:
    if not _ERASURE_ID.fullmatch(value):
        raise InvalidArgument(f"{path} must be the 32 hexadecimal digits an Erase call returned")


def _data_subject(value: str, path: str) -> None:
    if not value.strip():
        raise InvalidArgument(f"{path} is empty; name the subject whose documents to erase")
    _printable(value, path, ERASE_MAX_SUBJECT_CHARS, "data subjects")


def _document_ids(values: Sequence[str], path: str) -> None:
    if len(values) > ERASE_MAX_IDS:
        raise InvalidArgument(f"{path} names {len(values)} documents; the limit is {ERASE_MAX_IDS} per call")
    for i, value in enumerate(values):
        parse_document_id(value, f"{path}[{i}]")


#: field name → rule for one string value (the value, its path in the message); raises InvalidArgument
FIELD_RULES: Final[Mapping[str, Callable[[str, str], object]]] = {
    "tenant_id": parse_tenant_id,
    "document_id": parse_document_id,
    "subject_id": _subject,
    "filename": _filename,
    "dataset_path": _dataset_path,
    "erasure_id": _erasure_id,
    "data_subject": _data_subject,
}
#: string fields that may not be empty (unless in :data:`EMPTY_ALLOWED`)
REQUIRED: Final = ("tenant_id", "document_id", "erasure_id")
#: field name → rule for a whole repeated string field
LIST_RULES: Final[Mapping[str, Callable[[Sequence[str], str], object]]] = {
    "principals": parse_principals,
    "ids": _document_ids,
}

_FLOATS: Final = (FieldDescriptor.TYPE_FLOAT, FieldDescriptor.TYPE_DOUBLE)


def _is_map(field: FieldDescriptor) -> bool:
    entry = field.message_type
    return entry is not None and bool(entry.GetOptions().map_entry)


def _check_scalar(field: FieldDescriptor, value: Any, path: str) -> None:
    if field.type == FieldDescriptor.TYPE_STRING:
        rule = FIELD_RULES.get(field.name)
        if rule is not None:
            if value == "" and field.full_name in EMPTY_ALLOWED:
                return
            rule(value, path)
        elif len(value) > MAX_STRING_CHARS:
            raise InvalidArgument(f"{path} is {len(value)} characters; the limit is {MAX_STRING_CHARS}")
    elif field.type == FieldDescriptor.TYPE_ENUM:
        enum = field.enum_type
        if enum is not None and value not in enum.values_by_number:
            raise InvalidArgument(f"{path} is {value}, not a value of {enum.full_name}")
    elif field.type in _FLOATS and not math.isfinite(value):
        raise InvalidArgument(f"{path} must be a finite number, got {value}")


def _check_value(field: FieldDescriptor, value: Any, path: str) -> None:
    if field.type == FieldDescriptor.TYPE_MESSAGE:
        _check(value, f"{path}.")
    else:
        _check_scalar(field, value, path)


def _check(msg: Message, prefix: str) -> None:
    for field, value in msg.ListFields():  # set fields only: proto3 defaults are checked below
        path = prefix + field.name
        if _is_map(field):
            value_field = field.message_type.fields_by_name["value"]  # type: ignore[union-attr]
            for key, item in value.items():
                if isinstance(key, str) and len(key) > MAX_KEY_CHARS:
                    raise InvalidArgument(
                        f"a key of {path} is {len(key)} characters; the limit is {MAX_KEY_CHARS}"
                    )
                _check_value(value_field, item, f"{path}[{key!r}]")
        elif field.is_repeated:
            list_rule = LIST_RULES.get(field.name)
            if list_rule is not None and field.type == FieldDescriptor.TYPE_STRING:
                list_rule(list(value), path)
                continue
            for i, item in enumerate(value):
                _check_value(field, item, f"{path}[{i}]")
        else:
            _check_value(field, value, path)
    _check_required(msg, prefix)


def _check_required(msg: Message, prefix: str) -> None:
    """Ids left at their proto3 default ("" is not listed by ListFields) are required, unless allowed."""
    for field in msg.DESCRIPTOR.fields:
        if (
            field.type == FieldDescriptor.TYPE_STRING
            and not field.is_repeated
            and field.name in REQUIRED
            and field.full_name not in EMPTY_ALLOWED
            and getattr(msg, field.name) == ""
            and (field.containing_oneof is None or msg.WhichOneof(field.containing_oneof.name) == field.name)
        ):  # a field of a oneof is required only when its oneof chose it
            FIELD_RULES[field.name]("", prefix + field.name)


def validate_message(msg: Message) -> None:
    """Raise :class:`InvalidArgument` (field path and rule) if ``msg`` breaks a rule of this module."""
    _check(msg, "")


class _Undecodable:
    """What the wrapped deserializer returns for bytes that are not the request type."""

    def __init__(self, reason: str, size: int) -> None:
        self.reason = reason
        self.size = size


def request_size(request: object) -> int:
    """The size in bytes of a request as received (decoded or not), for limits on reading a stream."""
    if isinstance(request, _Undecodable):
        return request.size
    if isinstance(request, Message):
        return request.ByteSize()
    return len(request) if isinstance(request, bytes | bytearray) else 0


def _checked(request: Any) -> None:
    if isinstance(request, _Undecodable):
        raise InvalidArgument(request.reason)
    if isinstance(request, Message):
        validate_message(request)


def _deserializer(inner: Callable[[bytes], Any] | None, method: str) -> Callable[[bytes], Any] | None:
    if inner is None:
        return None

    def deserialize(raw: bytes) -> Any:
        try:
            return inner(raw)
        except Exception as exc:  # the bytes are bad, whatever the parser calls it
            return _Undecodable(f"the request to {method} does not decode: {exc}", len(raw))

    return deserialize


async def _each_checked(requests: AsyncIterator[Any]) -> AsyncIterator[Any]:
    async for request in requests:
        _checked(request)
        yield request


def _unary_in(fn: Callable[..., Any], streaming_out: bool) -> Callable[..., Any]:
    if streaming_out:

        async def stream(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
            _checked(request)
            async for item in fn(request, context):
                yield item

        return stream

    async def unary(request: Any, context: grpc.aio.ServicerContext) -> Any:
        _checked(request)
        return await fn(request, context)

    return unary


def _stream_in(fn: Callable[..., Any], streaming_out: bool) -> Callable[..., Any]:
    if streaming_out:

        async def stream(
            requests: AsyncIterator[Any], context: grpc.aio.ServicerContext
        ) -> AsyncIterator[Any]:
            async for item in fn(_each_checked(requests), context):
                yield item

        return stream

    async def unary(requests: AsyncIterator[Any], context: grpc.aio.ServicerContext) -> Any:
        return await fn(_each_checked(requests), context)

    return unary


class ValidationInterceptor(WrappingInterceptor):
    """Validate each request (see the module docstring) before the handler sees it.

    Install it *inside* the error interceptor (after it in the server's list), so its
    :class:`InvalidArgument` becomes ``INVALID_ARGUMENT`` with the reason, like any handler's."""

    def wrap(self, handler: grpc.RpcMethodHandler, method: str) -> grpc.RpcMethodHandler:
        def wrap(fn: Callable[..., Any], streaming_in: bool, streaming_out: bool) -> Callable[..., Any]:
            return _stream_in(fn, streaming_out) if streaming_in else _unary_in(fn, streaming_out)

        return rewrap(handler, wrap, _deserializer(handler.request_deserializer, method))
