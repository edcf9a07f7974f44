"""Bearer tokens on outgoing calls (isthmus_core.auth.outbound): the caller's token forwarded on nested
calls, the process's service token outside any call (local issuer, OAuth2 client credentials against a
real local HTTP token endpoint), on every streaming shape, through a real grpc.aio server."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import grpc
import jwt
import pytest

from isthmus.common.v1 import common_pb2
from isthmus.embedding.v1 import embedding_pb2, embedding_pb2_grpc
from isthmus.guardrail.v1 import guardrail_pb2, guardrail_pb2_grpc
from isthmus.ingestion.v1 import ingestion_pb2, ingestion_pb2_grpc
from isthmus.retrieval.v1 import retrieval_pb2, retrieval_pb2_grpc
from isthmus_core.auth.context import Access, AllowAll, acting_as, current_principal
from isthmus_core.auth.identity import ANONYMOUS, ROLE_PERMISSIONS, Role
from isthmus_core.auth.local_issuer import ISSUER, SERVICE_SUBJECT, LocalIssuer
from isthmus_core.auth.outbound import (
    ClientCredentialsToken,
    LocalServiceToken,
    NoToken,
    StaticToken,
    bearer_for_call,
)
from isthmus_core.auth.stack import AuthStack, ListAudit
from isthmus_core.auth.tokens import JwtVerifier, StaticJwks
from isthmus_core.errors import Unavailable
from isthmus_core.grpc.client import Channels, open_channel
from isthmus_core.grpc.server import GrpcServer
from isthmus_core.testing.auth import Bindings, IdpServer

SERVICES = [
    "isthmus.retrieval.v1.RetrievalService",
    "isthmus.embedding.v1.EmbeddingService",
    "isthmus.ingestion.v1.IngestionService",
    "isthmus.guardrail.v1.GuardrailService",
]


class Embedding(embedding_pb2_grpc.EmbeddingServiceServicer):
    """Says who called it."""

    async def Embed(self, request: Any, context: Any) -> Any:
        p = current_principal()
        return embedding_pb2.EmbedResponse(model_id=p.subject if p else "")


class Retrieval(retrieval_pb2_grpc.RetrievalServiceServicer):
    """Search calls embedding (a nested call, as the real retrieval does) and returns who embedding saw."""

    def __init__(self, channels: Channels) -> None:
        self.channels = channels

    async def Search(self, request: Any, context: Any) -> Any:
        stub = embedding_pb2_grpc.EmbeddingServiceStub(self.channels.for_service("embedding"))
        r = await stub.Embed(embedding_pb2.EmbedRequest(texts=[request.query]))
        return retrieval_pb2.SearchResponse(model_id=r.model_id)


class Ingestion(ingestion_pb2_grpc.IngestionServiceServicer):
    async def Upload(self, requests: Any, context: Any) -> Any:
        async for _ in requests:
            pass
        p = current_principal()
        return ingestion_pb2.UploadResponse(document_id=p.subject if p else "")

    async def WatchDocuments(self, request: Any, context: Any) -> AsyncIterator[Any]:
        p = current_principal()
        yield ingestion_pb2.DocumentEvent(document=ingestion_pb2.Document(document_id=p.subject if p else ""))


class Guardrail(guardrail_pb2_grpc.GuardrailServiceServicer):
    async def CheckOutputStream(self, requests: Any, context: Any) -> AsyncIterator[Any]:
        async for _ in requests:
            pass
        p = current_principal()
        yield common_pb2.Verdict(text=p.subject if p else "")


class Platform:
    def __init__(self, server: GrpcServer, channels: Channels, issuer: LocalIssuer) -> None:
        self.server, self.channels, self.issuer = server, channels, issuer


@pytest.fixture
async def platform(tmp_path: Path) -> AsyncIterator[Platform]:
    issuer = LocalIssuer(tmp_path / "local-issuer.pem")
    verifier = JwtVerifier(
        issuer=ISSUER, audience="isthmus", algorithms=["ES256"], keys=StaticJwks(issuer.jwks()), via="local"
    )
    authorizer = Bindings(
        {
            ("alice", "acme"): ROLE_PERMISSIONS[Role.WRITER],
            ("bob", "acme"): ROLE_PERMISSIONS[Role.READER],
            (SERVICE_SUBJECT, "*"): ROLE_PERMISSIONS[Role.SERVICE],
        }
    )
    server = GrpcServer("127.0.0.1", 0, auth=AuthStack(verifier, authorizer, audit=ListAudit()))
    # what the runtime does: the process's channels carry its service token outside calls
    channels = Channels({}, server.address, LocalServiceToken(issuer))

    def register(s: grpc.aio.Server) -> None:
        retrieval_pb2_grpc.add_RetrievalServiceServicer_to_server(Retrieval(channels), s)
        embedding_pb2_grpc.add_EmbeddingServiceServicer_to_server(Embedding(), s)
        ingestion_pb2_grpc.add_IngestionServiceServicer_to_server(Ingestion(), s)
        guardrail_pb2_grpc.add_GuardrailServiceServicer_to_server(Guardrail(), s)

    server.add([register], SERVICES)
    await server.start()
    await server.set_serving()
    try:
        yield Platform(server, channels, issuer)
    finally:
        await channels.close()
        await server.stop(0)


def search() -> Any:
    return retrieval_pb2.SearchRequest(tenant_id="acme", query="q")


async def test_a_nested_call_carries_the_callers_token(platform: Platform) -> None:
    async with open_channel(platform.server.address, StaticToken(platform.issuer.mint("alice"))) as ch:
        r = await retrieval_pb2_grpc.RetrievalServiceStub(ch).Search(search())
    assert r.model_id == "alice"  # embedding saw alice, not the service identity


async def test_a_call_outside_any_call_carries_the_service_token(platform: Platform) -> None:
    stub = embedding_pb2_grpc.EmbeddingServiceStub(platform.channels.for_service("embedding"))
    r = await stub.Embed(embedding_pb2.EmbedRequest(texts=["x"]))
    assert r.model_id == SERVICE_SUBJECT
    # ... and that identity is no more than the service role: it may not upload
    ingestion = ingestion_pb2_grpc.IngestionServiceStub(platform.channels.for_service("ingestion"))
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await ingestion.Upload(upload())
    assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED


def upload() -> Iterator[Any]:
    yield ingestion_pb2.UploadRequest(header=ingestion_pb2.UploadHeader(tenant_id="acme", filename="a.txt"))
    yield ingestion_pb2.UploadRequest(data=b"x")


def check_stream() -> Iterator[Any]:
    yield guardrail_pb2.CheckOutputStreamRequest(header=guardrail_pb2.CheckOutputHeader(tenant_id="acme"))
    yield guardrail_pb2.CheckOutputStreamRequest(sentence=common_pb2.AnswerSentence(text="s"))


async def _shapes(ch: grpc.aio.Channel) -> list[str]:
    """One call of each streaming shape; the subject each handler saw."""
    ingestion = ingestion_pb2_grpc.IngestionServiceStub(ch)
    guardrail = guardrail_pb2_grpc.GuardrailServiceStub(ch)
    embedding = embedding_pb2_grpc.EmbeddingServiceStub(ch)
    unary_unary = (await embedding.Embed(embedding_pb2.EmbedRequest(texts=["x"]))).model_id
    watch = ingestion_pb2.WatchDocumentsRequest(tenant_id="acme")
    [unary_stream] = [e.document.document_id async for e in ingestion.WatchDocuments(watch)]
    stream_unary = (await ingestion.Upload(upload())).document_id
    [stream_stream] = [v.text async for v in guardrail.CheckOutputStream(check_stream())]
    return [unary_unary, unary_stream, stream_unary, stream_stream]


async def test_every_streaming_shape_carries_the_token(platform: Platform) -> None:
    async with open_channel(platform.server.address, StaticToken(platform.issuer.mint("alice"))) as ch:
        assert await _shapes(ch) == ["alice"] * 4
    async with open_channel(platform.server.address, NoToken()) as ch:
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await embedding_pb2_grpc.EmbeddingServiceStub(ch).Embed(embedding_pb2.EmbedRequest(texts=["x"]))
        assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED


async def test_a_call_with_its_own_authorization_keeps_it(platform: Platform) -> None:
    async with open_channel(platform.server.address, StaticToken(platform.issuer.mint("alice"))) as ch:
        md = [("authorization", f"Bearer {platform.issuer.mint('bob')}")]
        r = await embedding_pb2_grpc.EmbeddingServiceStub(ch).Embed(embedding_pb2.EmbedRequest(), metadata=md)
    assert r.model_id == "bob"


async def test_inside_a_call_without_a_token_nothing_is_borrowed() -> None:
    """Authentication off: the anonymous caller has no token, and its calls do not borrow the
    process's identity; outside a call the process's token is used."""
    service = StaticToken("service-token")
    with acting_as(Access(ANONYMOUS, AllowAll())):
        assert await bearer_for_call(service) is None
    assert await bearer_for_call(service) == "service-token"
    assert await bearer_for_call(NoToken()) is None


async def test_the_local_service_token_is_reminted_before_it_expires(tmp_path: Path) -> None:
    now = [1_000_000.0]
    source = LocalServiceToken(LocalIssuer(tmp_path / "k.pem"), ttl_s=600, clock=lambda: now[0])
    first = await source.token()
    assert first is not None
    claims = jwt.decode(first, options={"verify_signature": False})
    assert (claims["sub"], claims["exp"]) == (SERVICE_SUBJECT, 1_000_600)
    now[0] += 500  # 100 s left of 600: still more than the renewal margin (60 s)
    assert await source.token() == first
    now[0] += 50  # 50 s left: renewed
    second = await source.token()
    assert second != first
    assert jwt.decode(second or "", options={"verify_signature": False})["exp"] == 1_000_550 + 600


# --- OAuth2 client credentials against a real local token endpoint ---------------------------------------


@pytest.fixture
def idp() -> Iterator[IdpServer]:
    with IdpServer() as server:
        yield server


async def test_client_credentials_token_is_fetched_once_and_cached(idp: IdpServer) -> None:
    now = [0.0]
    idp.state.token_response = (200, {"access_token": "tok-1", "token_type": "bearer", "expires_in": 3600})
    source = ClientCredentialsToken(
        idp.url + "/token", "svc client", "s3cr/t", audience="isthmus", clock=lambda: now[0]
    )
    assert await asyncio.gather(*(source.token() for _ in range(5))) == ["tok-1"] * 5
    assert len(idp.state.token_requests) == 1
    header, form = idp.state.token_requests[0]
    assert header.startswith("Basic ")
    # client_secret_basic: id and secret form-urlencoded, then base64 (RFC 6749 2.3.1)
    assert base64.b64decode(header.removeprefix("Basic ")).decode() == "svc%20client:s3cr%2Ft"
    assert form == {"grant_type": ["client_credentials"], "audience": ["isthmus"]}
    now[0] = 3600 - 61  # still more than a minute left
    assert await source.token() == "tok-1"
    idp.state.token_response = (200, {"access_token": "tok-2", "expires_in": 3600})
    now[0] = 3600 - 59
    assert await source.token() == "tok-2"
    assert len(idp.state.token_requests) == 2


async def test_client_credentials_without_expires_in_use_the_tokens_exp(idp: IdpServer) -> None:
    now = [1_000_000.0]
    token = jwt.encode({"sub": "svc", "exp": 1_000_100}, "k" * 32, algorithm="HS256")  # opaque to us
    idp.state.token_response = (200, {"access_token": token})
    source = ClientCredentialsToken(idp.url + "/token", "svc", "pw", clock=lambda: now[0])
    assert await source.token() == token
    now[0] = 1_000_075  # 25 s left of 100: kept (renewed when less than 20 % of the lifetime is left)
    await source.token()
    assert len(idp.state.token_requests) == 1
    now[0] = 1_000_085
    await source.token()
    assert len(idp.state.token_requests) == 2


async def test_a_failing_token_endpoint_is_unavailable_and_keeps_the_secret(idp: IdpServer) -> None:
    idp.state.token_response = (401, {"error": "invalid_client"})
    source = ClientCredentialsToken(idp.url + "/token", "svc", "very-secret-value")
    with pytest.raises(Unavailable) as info:
        await source.token()
    assert "invalid_client" in info.value.reason and "401" in info.value.reason
    assert "very-secret-value" not in info.value.reason
