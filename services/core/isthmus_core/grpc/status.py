"""Map Isthmus errors to gRPC status codes (and back)."""

from __future__ import annotations

import grpc

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
}


def to_grpc(code: errors.ErrorCode) -> grpc.StatusCode:
    return _TO_GRPC.get(code, grpc.StatusCode.INTERNAL)


def from_rpc_error(exc: grpc.aio.AioRpcError) -> errors.IsthmusError:
    """A downstream call's failure as an Isthmus error (so bus handlers can tell permanent from transient)."""
    cls = _FROM_GRPC.get(exc.code(), errors.Unavailable)
    return cls(exc.details() or exc.code().name)
