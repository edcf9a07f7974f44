"""The shared gRPC server and client: trace propagation, error mapping, health while draining."""

from __future__ import annotations

import asyncio
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from opentelemetry import trace

from isthmus_core.errors import NotFound, Unavailable
from isthmus_core.grpc.client import Channels, open_channel
from isthmus_core.grpc.server import GrpcServer
from isthmus_core.telemetry.tracing import configure_tracing

SERVICE = "test.Echo"


def _identity(b: bytes) -> bytes:
    return b


async def _trace_id(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
    ctx = trace.get_current_span().get_span_context()
    return format(ctx.trace_id, "032x").encode()


async def _fail(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
    if request == b"missing":
        raise NotFound("tenant 'x' does not exist")
    if request == b"down":
        raise Unavailable("store unreachable")
    raise RuntimeError("boom")


def _register(server: grpc.aio.Server) -> None:
    handlers = {
        "TraceId": grpc.unary_unary_rpc_method_handler(_trace_id, _identity, _identity),
        "Fail": grpc.unary_unary_rpc_method_handler(_fail, _identity, _identity),
    }
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, handlers),))


@pytest.fixture
async def server() -> Any:
    srv = GrpcServer("127.0.0.1", 0)
    srv.add([_register], [SERVICE])
    await srv.start()
    await srv.set_serving()
    yield srv
    await srv.stop(0)


async def test_trace_context_crosses_the_call(server: GrpcServer) -> None:
    configure_tracing("test")
    async with open_channel(server.address) as ch:
        call = ch.unary_unary(
            f"/{SERVICE}/TraceId", request_serializer=_identity, response_deserializer=_identity
        )
        with trace.get_tracer("test").start_as_current_span("client") as span:
            remote = await call(b"")
        assert remote.decode() == format(span.get_span_context().trace_id, "032x")


@pytest.mark.parametrize(
    ("payload", "code", "details"),
    [
        (b"missing", grpc.StatusCode.NOT_FOUND, "tenant 'x' does not exist"),
        (b"down", grpc.StatusCode.UNAVAILABLE, "store unreachable"),
        (b"other", grpc.StatusCode.INTERNAL, "RuntimeError: boom"),
    ],
)
async def test_errors_become_statuses_with_reasons(
    server: GrpcServer, payload: bytes, code: grpc.StatusCode, details: str
) -> None:
    async with open_channel(server.address) as ch:
        call = ch.unary_unary(
            f"/{SERVICE}/Fail", request_serializer=_identity, response_deserializer=_identity
        )
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await call(payload)
    assert info.value.code() == code
    assert details in (info.value.details() or "")


async def test_health_goes_not_serving_when_draining(server: GrpcServer) -> None:
    async with grpc.aio.insecure_channel(server.address) as ch:
        health = health_pb2_grpc.HealthStub(ch)
        ok = await health.Check(health_pb2.HealthCheckRequest(service=SERVICE))
        assert ok.status == health_pb2.HealthCheckResponse.SERVING
        stopping = asyncio.create_task(server.stop(grace=1.0, drain_delay=0.5))
        await asyncio.sleep(0.1)
        draining = await health.Check(health_pb2.HealthCheckRequest(service=SERVICE))
        assert draining.status == health_pb2.HealthCheckResponse.NOT_SERVING
        overall = await health.Check(health_pb2.HealthCheckRequest(service=""))
        assert overall.status == health_pb2.HealthCheckResponse.NOT_SERVING
        await stopping
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await health.Check(health_pb2.HealthCheckRequest(service=SERVICE), timeout=2)
        assert info.value.code() == grpc.StatusCode.UNAVAILABLE


def test_channels_resolve_endpoints_or_fall_back_to_self() -> None:
    ch = Channels({"retrieval": "retrieval:50051"}, "127.0.0.1:1234")
    assert ch.address("retrieval") == "retrieval:50051"
    assert ch.address("embedding") == "127.0.0.1:1234"
