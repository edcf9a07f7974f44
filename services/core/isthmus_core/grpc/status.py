"""Map Isthmus errors to gRPC status codes (and back).

A :class:`~isthmus_core.errors.ResourceExhausted` with a retry delay travels as a ``google.rpc.Status``
carrying a ``google.rpc.RetryInfo`` (trailing metadata ``grpc-status-details-bin``, encoded by
``grpcio-status``): :func:`rich_status` builds it, :func:`retry_after_s` reads it back, and
:func:`from_rpc_error` keeps it, so a downstream service's retry hint reaches the first caller.
"""

from __future__ import annotations

import grpc
from google.protobuf import any_pb2, duration_pb2
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status

from isthmus_core import errors

_TO_GRPC: dict[errors.ErrorCode, grpc.StatusCode] = {
    errors.ErrorCode.INVALID_ARGUMENT: grpc.StatusCode.INVALID_ARGUMENT,
    errors.ErrorCode.NOT_FOUND: grpc.StatusCode.NOT_FOUND,
    errors.ErrorCode.ALREADY_EXISTS: grpc.StatusCode.ALREADY_EXISTS,
    errors.ErrorCode.FAILED_PRECONDITION: grpc.StatusCode.FAILED_PRECONDITION,
    errors.ErrorCode.RESOURCE_EXHAUSTED: grpc.StatusCode.RESOURCE_EXHAUSTED,
    errors.ErrorCode.UNAVAILABLE: grpc.StatusCode.UNAVAILABLE,
    errors.ErrorCode.DEADLINE_EXCEEDED: grpc.StatusCode.DEADLINE_EXCEEDED,
    errors.ErrorCode.PERMISSION_DENIED: grpc.StatusCode.PERMISSION_DENIED,
    errors.ErrorCode.UNAUTHENTICATED: grpc.StatusCode.UNAUTHENTICATED,
    errors.ErrorCode.INTERNAL: grpc.StatusCode.INTERNAL,
}

_FROM_GRPC: dict[grpc.StatusCode, type[errors.IsthmusError]] = {
    grpc.StatusCode.INVALID_ARGUMENT: errors.InvalidArgument,
    grpc.StatusCode.NOT_FOUND: errors.NotFound,
    grpc.StatusCode.ALREADY_EXISTS: errors.AlreadyExists,
    grpc.StatusCode.FAILED_PRECONDITION: errors.FailedPrecondition,
    grpc.StatusCode.RESOURCE_EXHAUSTED: errors.ResourceExhausted,
    grpc.StatusCode.UNAVAILABLE: errors.Unavailable,
    grpc.StatusCode.DEADLINE_EXCEEDED: errors.DeadlineExceeded,
    grpc.StatusCode.PERMISSION_DENIED: errors.PermissionDenied,
    grpc.StatusCode.UNAUTHENTICATED: errors.Unauthenticated,
}


def to_grpc(code: errors.ErrorCode) -> grpc.StatusCode:
    return _TO_GRPC.get(code, grpc.StatusCode.INTERNAL)


def rich_status(
    code: grpc.StatusCode,
    message: str,
    retry_after_s: float | None,
    quota_violations: list[tuple[str, str]] | None = None,
) -> grpc.Status:
    """A status for ``context.abort_with_status``: ``code`` and ``message``, plus a ``RetryInfo`` with
    ``retry_after_s`` (if given) and a ``QuotaFailure`` with ``quota_violations`` (subject, description)
    (if given) in the ``google.rpc.Status`` details."""
    status = status_pb2.Status(code=code.value[0], message=message)
    if retry_after_s is not None:
        delay = duration_pb2.Duration()
        delay.FromNanoseconds(round(max(retry_after_s, 0.0) * 1e9))
        detail = any_pb2.Any()
        detail.Pack(error_details_pb2.RetryInfo(retry_delay=delay))
        status.details.append(detail)
    if quota_violations:
        failure = error_details_pb2.QuotaFailure(
            violations=[
                error_details_pb2.QuotaFailure.Violation(subject=s, description=d)
                for s, d in quota_violations
            ]
        )
        detail = any_pb2.Any()
        detail.Pack(failure)
        status.details.append(detail)
    result: grpc.Status = rpc_status.to_status(status)
    return result


def retry_after_s(exc: grpc.aio.AioRpcError | grpc.Call) -> float | None:
    """The ``RetryInfo`` delay a failed call carries, in seconds (None: none, or unreadable)."""
    try:
        status = rpc_status.from_call(exc)
    except ValueError:  # a status proto that contradicts the call's code or details: ignore it
        return None
    if status is None:
        return None
    for detail in status.details:
        if detail.Is(error_details_pb2.RetryInfo.DESCRIPTOR):
            info = error_details_pb2.RetryInfo()
            detail.Unpack(info)
            delay: float = info.retry_delay.ToNanoseconds() / 1e9
            return delay
    return None


def from_rpc_error(exc: grpc.aio.AioRpcError) -> errors.IsthmusError:
    """A downstream call's failure as an Isthmus error (so bus handlers can tell permanent from transient).
    A ``RESOURCE_EXHAUSTED`` keeps its ``RetryInfo`` delay (then it is transient)."""
    reason = exc.details() or exc.code().name
    if exc.code() == grpc.StatusCode.RESOURCE_EXHAUSTED:
        return errors.ResourceExhausted(reason, retry_after_s(exc))
    cls = _FROM_GRPC.get(exc.code(), errors.Unavailable)
    return cls(reason)


def quota_violations(exc: grpc.aio.AioRpcError | grpc.Call) -> list[tuple[str, str]]:
    """The ``QuotaFailure`` violations a failed call carries, as (subject, description) pairs."""
    try:
        status = rpc_status.from_call(exc)
    except ValueError:
        return []
    out: list[tuple[str, str]] = []
    for detail in status.details if status is not None else ():
        if detail.Is(error_details_pb2.QuotaFailure.DESCRIPTOR):
            failure = error_details_pb2.QuotaFailure()
            detail.Unpack(failure)
            out.extend((v.subject, v.description) for v in failure.violations)
    return out
