"""ListTenants lists only the tenants the caller may read (the real servicer over the embedded store,
behind the real auth interceptor)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from isthmus.retrieval.v1 import retrieval_pb2 as pb
from isthmus.retrieval.v1 import retrieval_pb2_grpc as pb_grpc
from isthmus_core.auth.identity import ROLE_PERMISSIONS, Role
from isthmus_core.auth.local_issuer import ISSUER, LocalIssuer
from isthmus_core.auth.stack import AuthStack
from isthmus_core.auth.tokens import JwtVerifier, StaticJwks
from isthmus_core.grpc.server import GrpcServer
from isthmus_core.testing.auth import Bindings
from isthmus_retrieval.api import RetrievalServicer
from isthmus_retrieval.service import Retrieval
from isthmus_retrieval.store_embedded import EmbeddedStore


async def _nothing(*_: Any, **__: Any) -> Any:
    return None


async def serve(tmp_path: Path, stack: AuthStack | None) -> tuple[GrpcServer, LocalIssuer]:
    store = EmbeddedStore(tmp_path / "store")
    core = Retrieval(store, _nothing, _nothing, _nothing)
    for tenant in ("acme", "globex", "initech"):
        await core.create_tenant(tenant)
    servicer = RetrievalServicer(core, default_top_k=10, default_alpha=0.5)
    server = GrpcServer("127.0.0.1", 0, auth=stack)
    server.add(
        [lambda s: pb_grpc.add_RetrievalServiceServicer_to_server(servicer, s)],
        ["isthmus.retrieval.v1.RetrievalService"],
    )
    await server.start()
    return server, LocalIssuer(tmp_path / "local-issuer.pem")


@pytest.fixture
async def secured(tmp_path: Path) -> AsyncIterator[tuple[GrpcServer, LocalIssuer]]:
    issuer = LocalIssuer(tmp_path / "local-issuer.pem")
    verifier = JwtVerifier(
        issuer=ISSUER, audience="isthmus", algorithms=["ES256"], keys=StaticJwks(issuer.jwks())
    )
    authorizer = Bindings(
        {
            ("alice", "acme"): ROLE_PERMISSIONS[Role.READER],
            ("group:initech-readers", "initech"): ROLE_PERMISSIONS[Role.READER],
            ("root", "*"): ROLE_PERMISSIONS[Role.PLATFORM_ADMIN],
        }
    )
    server, issuer = await serve(tmp_path, AuthStack(verifier, authorizer))
    yield server, issuer
    await server.stop(0)


async def list_tenants(address: str, token: str | None = None) -> list[str]:
    md = [("authorization", f"Bearer {token}")] if token else None
    async with grpc.aio.insecure_channel(address) as ch:
        r = await pb_grpc.RetrievalServiceStub(ch).ListTenants(pb.ListTenantsRequest(), metadata=md)
    return sorted(t.tenant_id for t in r.tenants)


async def test_list_tenants_shows_only_readable_tenants(secured: tuple[GrpcServer, LocalIssuer]) -> None:
    server, issuer = secured
    assert await list_tenants(server.address, issuer.mint("alice")) == ["acme"]
    assert await list_tenants(server.address, issuer.mint("alice", ["initech-readers"])) == [
        "acme",
        "initech",
    ]
    assert await list_tenants(server.address, issuer.mint("root")) == ["acme", "globex", "initech"]
    with pytest.raises(grpc.aio.AioRpcError) as info:  # no tenant readable anywhere: refused outright
        await list_tenants(server.address, issuer.mint("mallory"))
    assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED


async def test_list_tenants_with_auth_off_lists_everything(tmp_path: Path) -> None:
    server, _ = await serve(tmp_path, None)
    try:
        assert await list_tenants(server.address) == ["acme", "globex", "initech"]
    finally:
        await server.stop(0)
