"""Admission control on a real ``grpc.aio`` server: refusals are RESOURCE_EXHAUSTED with a RetryInfo
(read back with ``grpc_status``), admitted calls run, health is never limited, a downstream refusal
reaches the first caller with its retry hint, and handlers see their call's deadline."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_status import rpc_status

from isthmus_core.admission import Limits, Policy
from isthmus_core.errors import ConfigurationError, ResourceExhausted
from isthmus_core.grpc import deadline
from isthmus_core.grpc.admission import policy_from_settings
from isthmus_core.grpc.client import open_channel
from isthmus_core.grpc.server import GrpcServer
from isthmus_core.grpc.status import from_rpc_error, rich_status
from isthmus_core.settings import CommonSettings, load_all

SERVICE = "test.v1.Gate"


def _identity(b: bytes) -> bytes:
    return b


class Gate:
    """``Hold`` (and the stream ``HoldStream``) run until :attr:`opened` is set; ``Relay`` calls ``Hold``
    on the same server; ``Deadline`` answers the timeout a downstream call would get."""

    def __init__(self) -> None:
        self.entered = asyncio.Event()
        self.opened = asyncio.Event()
        self.address = ""

    async def hold(self, request: bytes, context: grpc.aio.ServicerContext) -> bytes:
        self.entered.set()
        await self.opened.wait()
        return b"done"

    async def hold_stream(self, request: bytes, context: grpc.aio.ServicerContext) -> AsyncIterator[bytes]:
        yield b"started"
        await self.opened.wait()
        yield b"done"

    async def relay(self, request: bytes, context: grpc.aio.ServicerContext) -> bytes:
        async with open_channel(self.address) as ch:
            try:
                result: bytes = await _call(ch, "Hold")(request)
            except grpc.aio.AioRpcError as exc:
                raise from_rpc_error(exc) from exc
        return result

    async def timeout(self, request: bytes, context: grpc.aio.ServicerContext) -> bytes:
        return repr(deadline.remaining(1000.0)).encode()

    async def shed(self, request: bytes, context: grpc.aio.ServicerContext) -> bytes:
        raise ResourceExhausted("the model pool is busy", retry_after_s=0.25)

    def register(self, server: grpc.aio.Server) -> None:
        handlers = {
            "Hold": grpc.unary_unary_rpc_method_handler(self.hold, _identity, _identity),
            "HoldStream": grpc.unary_stream_rpc_method_handler(self.hold_stream, _identity, _identity),
            "Relay": grpc.unary_unary_rpc_method_handler(self.relay, _identity, _identity),
            "Deadline": grpc.unary_unary_rpc_method_handler(self.timeout, _identity, _identity),
            "Shed": grpc.unary_unary_rpc_method_handler(self.shed, _identity, _identity),
        }
        server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, handlers),))


def _call(ch: grpc.aio.Channel, method: str) -> Any:
    return ch.unary_unary(
        f"/{SERVICE}/{method}", request_serializer=_identity, response_deserializer=_identity
    )


@pytest.fixture
async def gate() -> AsyncIterator[tuple[Gate, GrpcServer]]:
    g = Gate()
    # one call of the Hold family at a time, no queue; health is (mis)configured into that family too:
    # it must never be limited anyway
    policy = Policy(
        Limits(max_concurrent=1, max_queue=0, max_queue_wait_s=1.0),
        families={"Gate/HoldStream": "Gate/Hold", "Health": "Gate/Hold"},
    )
    srv = GrpcServer("127.0.0.1", 0, admission=policy)
    g.address = srv.address
    srv.add([g.register], [SERVICE])
    await srv.start()
    await srv.set_serving()
    yield g, srv
    g.opened.set()
    await srv.stop(0)


def _retry_delay_s(exc: grpc.aio.AioRpcError) -> float:
    status = rpc_status.from_call(exc)
    assert status is not None, "no google.rpc.Status in the trailers"
    infos = [d for d in status.details if d.Is(error_details_pb2.RetryInfo.DESCRIPTOR)]
    assert len(infos) == 1, status
    info = error_details_pb2.RetryInfo()
    infos[0].Unpack(info)
    delay: float = info.retry_delay.ToNanoseconds() / 1e9
    return delay


async def test_past_capacity_a_call_is_refused_with_retry_info_and_the_admitted_one_completes(
    gate: tuple[Gate, GrpcServer],
) -> None:
    g, srv = gate
    async with open_channel(srv.address) as ch:
        admitted = asyncio.ensure_future(_call(ch, "Hold")(b""))
        await g.entered.wait()
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await _call(ch, "Hold")(b"")
        assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "Gate/Hold" in (info.value.details() or "")
        assert "1 in flight, 0 queued" in (info.value.details() or "")
        assert _retry_delay_s(info.value) > 0

        health = health_pb2_grpc.HealthStub(ch)  # health shares nothing with the limits
        ok = await health.Check(health_pb2.HealthCheckRequest(service=SERVICE))
        assert ok.status == health_pb2.HealthCheckResponse.SERVING

        g.opened.set()
        assert await admitted == b"done"
        assert await _call(ch, "Hold")(b"") == b"done"  # the slot came back


async def test_a_streaming_call_holds_its_slot_until_it_ends(gate: tuple[Gate, GrpcServer]) -> None:
    g, srv = gate
    async with open_channel(srv.address) as ch:
        stream = ch.unary_stream(
            f"/{SERVICE}/HoldStream", request_serializer=_identity, response_deserializer=_identity
        )(b"")
        replies = stream.__aiter__()
        assert await anext(replies) == b"started"
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await _call(ch, "Hold")(b"")
        assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        g.opened.set()
        assert [r async for r in replies] == [b"done"]
        assert await _call(ch, "Hold")(b"") == b"done"


async def test_a_downstream_refusal_reaches_the_caller_with_its_retry_hint(
    gate: tuple[Gate, GrpcServer],
) -> None:
    g, srv = gate
    async with open_channel(srv.address) as ch:
        holder = asyncio.ensure_future(_call(ch, "Hold")(b""))
        await g.entered.wait()
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await _call(ch, "Relay")(b"")  # Relay is its own family: admitted; its call to Hold is not
        assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "Gate/Hold" in (info.value.details() or "")
        assert _retry_delay_s(info.value) > 0
        g.opened.set()
        await holder


async def test_a_handler_may_shed_load_itself_with_a_retry_hint(gate: tuple[Gate, GrpcServer]) -> None:
    _, srv = gate
    async with open_channel(srv.address) as ch:
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await _call(ch, "Shed")(b"")
    assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert info.value.details() == "the model pool is busy"
    assert _retry_delay_s(info.value) == pytest.approx(0.25)


async def test_a_handler_sees_its_callers_deadline(gate: tuple[Gate, GrpcServer]) -> None:
    _, srv = gate
    async with open_channel(srv.address) as ch:
        bounded = float(await _call(ch, "Deadline")(b"", timeout=30))
        unbounded = float(await _call(ch, "Deadline")(b""))
    assert 0 < bounded < 60  # the caller's 30 s (as the server rounds it), not the default
    assert unbounded == 1000.0


def test_from_rpc_error_keeps_the_retry_hint_and_makes_the_refusal_transient() -> None:
    status = rich_status(grpc.StatusCode.RESOURCE_EXHAUSTED, "busy", 0.4)
    exc = grpc.aio.AioRpcError(
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        grpc.aio.Metadata(),
        grpc.aio.Metadata(*status.trailing_metadata),
        "busy",
    )
    err = from_rpc_error(exc)
    assert isinstance(err, ResourceExhausted)
    assert err.retry_after_s == pytest.approx(0.4) and not err.permanent
    plain = from_rpc_error(
        grpc.aio.AioRpcError(
            grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.aio.Metadata(), grpc.aio.Metadata(), "too big"
        )
    )
    assert isinstance(plain, ResourceExhausted) and plain.retry_after_s is None and plain.permanent


def test_settings_give_the_policy_with_built_in_entries_kept_and_every_error_together() -> None:
    common = load_all(
        [CommonSettings],
        overrides={
            "common": {
                "admission_max_concurrent": 4,
                "admission_overrides": {"AgentOrchestratorService/Ask": {"max_queue": 0}},
            }
        },
    )["common"]
    assert isinstance(common, CommonSettings)
    policy = policy_from_settings(common)
    assert policy is not None
    ask = policy.family_for("/isthmus.agent_orchestrator.v1.AgentOrchestratorService/Ask")
    assert policy.family_for("/isthmus.agent_orchestrator.v1.AgentOrchestratorService/AskStream") is ask
    assert ask.limits == Limits(4, 0, common.admission_max_queue_wait_ms / 1000)
    watch = policy.family_for("/isthmus.ingestion.v1.IngestionService/WatchDocuments")
    assert watch.limits.max_concurrent > ask.limits.max_concurrent and watch.limits.max_queue == 0
    assert policy_from_settings(CommonSettings(admission_enabled=False)) is None

    with pytest.raises(ConfigurationError) as info:
        load_all(
            [CommonSettings],
            overrides={
                "common": {
                    "admission_max_queue": -1,
                    "admission_overrides": {"no such/key/at all": {"max_concurrent": 0}},
                }
            },
        )
    problems = str(info.value)
    assert "admission_max_queue" in problems and "ISTHMUS_ADMISSION_MAX_QUEUE" in problems
    assert "no such/key/at all" in problems and "max_concurrent" in problems
