"""A request stream refused while the client is still writing: the client sees the status with its reason,
not "INTERNAL: Internal error from Core" (a grpc.aio client whose write fails once the call has ended
reports that instead, grpc/grpc#36066). The shared server reads what the client still sends, within bounds,
before answering. A real grpc.aio server on loopback."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import grpc
import pytest

from isthmus.common.v1 import common_pb2
from isthmus.guardrail.v1 import guardrail_pb2 as gpb
from isthmus.guardrail.v1 import guardrail_pb2_grpc as ggrpc
from isthmus_core.errors import InvalidArgument
from isthmus_core.grpc import server as grpc_server
from isthmus_core.grpc.server import GrpcServer

SERVICE = "test.Streams"
BAD = b"bad"
FILLER = b"x" * 1000


@dataclass
class Streams:
    """Handlers over raw bytes that refuse the message ``BAD``; ``reads`` = messages the server decoded."""

    reads: list[bytes] = field(default_factory=list)

    def decode(self, raw: bytes) -> bytes:
        self.reads.append(raw)
        return raw

    async def upload(self, requests: AsyncIterator[bytes], context: grpc.aio.ServicerContext) -> bytes:
        n = 0
        async for r in requests:
            if r == BAD:
                raise InvalidArgument(f"message {n} is bad")
            n += 1
        return b"%d" % n

    async def chat(self, requests: AsyncIterator[bytes], context: grpc.aio.ServicerContext) -> Any:
        n = 0
        async for r in requests:
            if r == BAD:
                raise InvalidArgument(f"message {n} is bad")
            n += 1
            yield r[:1]

    def register(self, server: grpc.aio.Server) -> None:
        handlers = {
            "Upload": grpc.stream_unary_rpc_method_handler(self.upload, self.decode, bytes),
            "Chat": grpc.stream_stream_rpc_method_handler(self.chat, self.decode, bytes),
        }
        server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, handlers),))


class OutputChecks(ggrpc.GuardrailServiceServicer):
    """A bidi servicer of the real protos: the edge validates each message before it gets here."""

    def __init__(self) -> None:
        self.seen = 0

    async def CheckOutputStream(
        self, requests: AsyncIterator[gpb.CheckOutputStreamRequest], context: grpc.aio.ServicerContext
    ) -> AsyncIterator[common_pb2.Verdict]:
        async for _ in requests:
            self.seen += 1
            yield common_pb2.Verdict(action=common_pb2.GUARD_ACTION_ALLOW)


@dataclass
class Served:
    ch: grpc.aio.Channel
    streams: Streams
    checks: OutputChecks


@pytest.fixture
async def served() -> AsyncIterator[Served]:
    streams, checks = Streams(), OutputChecks()
    srv = GrpcServer("127.0.0.1", 0)
    srv.add(
        [streams.register, lambda s: ggrpc.add_GuardrailServiceServicer_to_server(checks, s)],
        [SERVICE, gpb.DESCRIPTOR.services_by_name["GuardrailService"].full_name],
    )
    await srv.start()
    async with grpc.aio.insecure_channel(srv.address) as ch:
        yield Served(ch, streams, checks)
    await srv.stop(0)


async def _send(ch: grpc.aio.Channel, method: str, payload: list[bytes]) -> tuple[grpc.StatusCode, str]:
    """The whole stream written from an iterator (as a client uploading does); the call's status."""
    try:
        if method == "Upload":
            await ch.stream_unary(f"/{SERVICE}/Upload")(iter(payload), timeout=30)
        else:
            async for _ in ch.stream_stream(f"/{SERVICE}/Chat")(iter(payload), timeout=30):
                pass
    except grpc.aio.AioRpcError as exc:
        return exc.code(), exc.details() or ""
    return grpc.StatusCode.OK, ""


@pytest.mark.parametrize("method", ["Upload", "Chat"])
async def test_a_refusal_reaches_a_client_that_is_still_writing(served: Served, method: str) -> None:
    code, details = await _send(served.ch, method, [b"a", b"b", BAD, *[FILLER] * 50])
    assert (code, details) == (grpc.StatusCode.INVALID_ARGUMENT, "message 2 is bad")
    assert len(served.streams.reads) == 53  # what followed the refusal was read (and dropped)


async def test_a_message_refused_by_the_edge_mid_stream_reaches_a_client_still_writing(
    served: Served,
) -> None:
    context = common_pb2.Context(chunk_id="c", document_id="doc-1", text="Ice cores hold old air.")
    header = gpb.CheckOutputStreamRequest(header=gpb.CheckOutputHeader(tenant_id="acme", contexts=[context]))
    sentence = gpb.CheckOutputStreamRequest(sentence=common_pb2.AnswerSentence(text="Ice cores hold air."))
    bad = gpb.CheckOutputStreamRequest(header=gpb.CheckOutputHeader(tenant_id="../etc"))
    stub = ggrpc.GuardrailServiceStub(served.ch)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        async for _ in stub.CheckOutputStream(iter([header, sentence, bad, *[sentence] * 50]), timeout=30):
            pass
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "invalid header.tenant_id" in (caught.value.details() or "")
    assert served.checks.seen == 2  # the handler saw nothing after the refused message


async def test_a_client_waiting_for_an_answer_gets_the_status_once_it_stops_writing(
    served: Served, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(grpc_server, "DRAIN_IDLE_S", 0.05)
    call = served.ch.stream_stream(f"/{SERVICE}/Chat")(timeout=30)
    await call.write(b"hello")
    assert await call.read() == b"h"
    await call.write(BAD)  # no half-close: the client waits for an answer, as an interactive one does
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call.read()
    assert (caught.value.code(), caught.value.details()) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "message 1 is bad",
    )


@pytest.mark.parametrize(("bound", "value"), [("DRAIN_MAX_MESSAGES", 3), ("DRAIN_MAX_BYTES", 2500)])
async def test_reading_after_a_refusal_stops_at_its_bounds(
    served: Served, monkeypatch: pytest.MonkeyPatch, bound: str, value: int
) -> None:
    monkeypatch.setattr(grpc_server, bound, value)
    code, _ = await _send(served.ch, "Chat", [BAD, *[FILLER] * 200])
    # past the bound the client may see grpc.aio's INTERNAL again: what matters is that the server stopped
    assert code in (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.INTERNAL)
    assert len(served.streams.reads) == 1 + 3  # the refused message, then 3 of 1000 bytes each
