"""Client channels between services: one per target address, trace context injected in metadata, and
a bearer token on every call when a token source is given (the caller's inside a call, else the
process's own: :mod:`isthmus_core.auth.outbound`)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import grpc

from isthmus_core.auth.outbound import TokenSource, bearer_interceptors
from isthmus_core.telemetry.tracing import inject


def _with_trace(details: grpc.aio.ClientCallDetails) -> grpc.aio.ClientCallDetails:
    metadata = list(details.metadata or [])
    metadata.extend(inject({}).items())
    return grpc.aio.ClientCallDetails(
        details.method,
        details.timeout,
        grpc.aio.Metadata(*metadata),
        details.credentials,
        details.wait_for_ready,
    )


class _TraceUnaryUnary(grpc.aio.UnaryUnaryClientInterceptor):
    async def intercept_unary_unary(
        self, continuation: Callable[..., Any], details: Any, request: Any
    ) -> Any:
        return await continuation(_with_trace(details), request)


class _TraceUnaryStream(grpc.aio.UnaryStreamClientInterceptor):
    async def intercept_unary_stream(
        self, continuation: Callable[..., Any], details: Any, request: Any
    ) -> Any:
        return await continuation(_with_trace(details), request)


class _TraceStreamUnary(grpc.aio.StreamUnaryClientInterceptor):
    async def intercept_stream_unary(
        self, continuation: Callable[..., Any], details: Any, request_iterator: Any
    ) -> Any:
        return await continuation(_with_trace(details), request_iterator)


#: the longest wait between two reconnect attempts to a callee that went away
MAX_RECONNECT_BACKOFF_MS = 5000


def open_channel(address: str, tokens: TokenSource | None = None) -> grpc.aio.Channel:
    """A channel to ``address``; with ``tokens``, every call carries a bearer token (None: no token)."""
    interceptors: list[grpc.aio.ClientInterceptor] = [
        _TraceUnaryUnary(),
        _TraceUnaryStream(),
        _TraceStreamUnary(),
    ]
    if tokens is not None:
        interceptors.extend(bearer_interceptors(tokens))
    return grpc.aio.insecure_channel(
        address,
        interceptors=interceptors,
        options=[
            ("grpc.max_receive_message_length", 64 * 1024 * 1024),
            ("grpc.max_send_message_length", 64 * 1024 * 1024),
            # a restarted callee (a pod replaced, a rolling upgrade) is retried within 5 s, not after
            # gRPC's default reconnect backoff, which grows to 2 minutes
            ("grpc.max_reconnect_backoff_ms", MAX_RECONNECT_BACKOFF_MS),
        ],
    )


class Channels:
    """Lazily opened channels keyed by address; ``for_service`` resolves a service's address."""

    def __init__(
        self, endpoints: dict[str, str], default_address: str, tokens: TokenSource | None = None
    ) -> None:
        self._endpoints = endpoints
        self._default = default_address
        self._tokens = tokens
        self._open: dict[str, grpc.aio.Channel] = {}

    def address(self, service: str) -> str:
        return self._endpoints.get(service, self._default)

    def for_service(self, service: str) -> grpc.aio.Channel:
        addr = self.address(service)
        if addr not in self._open:
            self._open[addr] = open_channel(addr, self._tokens)
        return self._open[addr]

    async def close(self) -> None:
        for ch in self._open.values():
            await ch.close()
        self._open.clear()
