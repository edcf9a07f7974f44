"""One way for the server's interceptors to wrap a method's handler, whatever its streaming shape."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import grpc

#: ``wrap(behaviour, streaming_in, streaming_out)`` -> the behaviour to register instead
Wrap = Callable[[Callable[..., Any], bool, bool], Callable[..., Any]]

_FRAMEWORK_METHODS = ("/grpc.health", "/grpc.reflection")


def is_framework_method(method: str) -> bool:
    """Health and reflection: served by grpcio itself, never wrapped."""
    return method.startswith(_FRAMEWORK_METHODS)


def rewrap(
    handler: grpc.RpcMethodHandler,
    wrap: Wrap,
    request_deserializer: Callable[[bytes], Any] | None = None,
) -> grpc.RpcMethodHandler:
    """``handler`` with its behaviour passed through ``wrap`` (and, if given, another request
    deserializer), keeping its streaming shape and response serializer."""
    kw = {
        "request_deserializer": request_deserializer or handler.request_deserializer,
        "response_serializer": handler.response_serializer,
    }
    if handler.unary_unary:
        return grpc.unary_unary_rpc_method_handler(wrap(handler.unary_unary, False, False), **kw)
    if handler.unary_stream:
        return grpc.unary_stream_rpc_method_handler(wrap(handler.unary_stream, False, True), **kw)
    if handler.stream_unary:
        return grpc.stream_unary_rpc_method_handler(wrap(handler.stream_unary, True, False), **kw)
    if handler.stream_stream:
        return grpc.stream_stream_rpc_method_handler(wrap(handler.stream_stream, True, True), **kw)
    return handler


class WrappingInterceptor(grpc.aio.ServerInterceptor):
    """A server interceptor that wraps the handler of every Isthmus method; health and reflection, and
    methods no servicer has, pass untouched. Subclasses say how in :meth:`wrap` (usually with
    :func:`rewrap`)."""

    def wrap(self, handler: grpc.RpcMethodHandler, method: str) -> grpc.RpcMethodHandler:
        raise NotImplementedError

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        method = handler_call_details.method
        if handler is None or is_framework_method(method):
            return handler
        return self.wrap(handler, method)
