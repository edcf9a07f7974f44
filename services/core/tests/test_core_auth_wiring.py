"""The auth settings and their wiring: refusing to listen beyond loopback without authentication, every
settings problem listed at once, build_stack / service_tokens per ``auth`` mode, and a runtime whose
server, modules and channels share one stack."""

from __future__ import annotations

import stat
from pathlib import Path
from typing import Any, ClassVar

import grpc
import pytest
from structlog.testing import capture_logs

from isthmus.embedding.v1 import embedding_pb2, embedding_pb2_grpc
from isthmus_core.auth.context import AllowAll, current_principal
from isthmus_core.auth.local_issuer import SERVICE_SUBJECT
from isthmus_core.auth.outbound import ClientCredentialsToken, LocalServiceToken, NoToken
from isthmus_core.auth.stack import AuthStack
from isthmus_core.auth.tokens import JwtVerifier, RemoteJwks
from isthmus_core.auth.wiring import build_stack, local_issuer, service_tokens
from isthmus_core.bus.inprocess import InProcessBus
from isthmus_core.errors import ConfigurationError
from isthmus_core.runtime.module import Module, ModuleContext, Offer
from isthmus_core.runtime.runtime import Runtime, warn_about_auth
from isthmus_core.settings import CommonSettings, SectionSettings, load_all, section_config


def common(**values: Any) -> CommonSettings:
    settings = load_all([CommonSettings], None, {"common": values})["common"]
    assert isinstance(settings, CommonSettings)
    return settings


# --- settings --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("host", ["0.0.0.0", "10.1.2.3", "::", "isthmus.example.com"])
def test_auth_off_refuses_to_listen_beyond_loopback(host: str) -> None:
    with pytest.raises(ConfigurationError, match="not a loopback address and auth is off"):
        common(grpc_host=host)
    assert common(grpc_host=host, auth="local").grpc_host == host
    assert common(grpc_host=host, auth="oidc", auth_issuer="https://idp.test").grpc_host == host


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.2", "localhost", "::1", "[::1]"])
def test_auth_off_on_loopback_is_fine(host: str) -> None:
    assert common(grpc_host=host).auth == "off"


def test_every_settings_problem_is_listed_at_once() -> None:
    """Auth, region and Kafka problems together, one per line (not only the first check's)."""
    with pytest.raises(ConfigurationError) as info:
        common(
            grpc_host="0.0.0.0",
            auth_algorithms=["RS256", "HS256"],
            auth_service_token_url="https://idp.test/token",
            regions=["eu", "us"],
            region="ap",
            bus="kafka",
            kafka_security_protocol="SASL_SSL",
        )
    lines = str(info.value).splitlines()[1:]
    assert all(line.startswith("  [common] ") for line in lines)
    text = str(info.value)
    for expected in (
        "not a loopback address and auth is off",
        "auth_algorithms ['HS256'] refused",
        "auth_service_token_url needs auth_service_client_id",
        "region 'ap' must be one of regions",
        "sasl",
    ):
        assert expected in text.lower() or expected in text
    assert len(lines) >= 5


def test_oidc_needs_an_issuer() -> None:
    with pytest.raises(ConfigurationError, match="auth = 'oidc' needs auth_issuer"):
        common(auth="oidc")


# --- build_stack / service_tokens ------------------------------------------------------------------------


def test_auth_off_builds_an_open_stack() -> None:
    stack = build_stack(common(), InProcessBus())
    assert not stack.enabled and isinstance(stack.authorizer, AllowAll)
    assert service_tokens(common()) is None


async def test_auth_local_verifies_the_local_issuers_tokens(tmp_path: Path) -> None:
    c = common(auth="local", data_dir=str(tmp_path), auth_exempt_methods=["/x.Y/Z"], region="eu")
    stack = build_stack(c, InProcessBus())
    assert stack.enabled and stack.exempt_methods == frozenset({"/x.Y/Z"}) and stack.region == "eu"
    key_file = tmp_path / "auth" / "local-issuer.pem"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert stack.verifier is not None
    p = await stack.verifier.verify(local_issuer(c).mint("alice", ["g"]))
    assert (p.subject, p.groups, p.via) == ("alice", ("g",), "local")
    tokens = service_tokens(c)
    assert isinstance(tokens, LocalServiceToken)
    service = await stack.verifier.verify(await tokens.token() or "")
    assert service.subject == SERVICE_SUBJECT


def test_auth_oidc_fetches_the_issuers_jwks() -> None:
    c = common(
        auth="oidc", auth_issuer="https://idp.test/", auth_algorithms=["ES256"], auth_groups_claim="roles"
    )
    stack = build_stack(c, InProcessBus())
    assert isinstance(stack.verifier, JwtVerifier)
    assert isinstance(stack.verifier.keys, RemoteJwks)
    assert stack.verifier.keys.url == "https://idp.test/.well-known/jwks.json"
    assert stack.verifier.algorithms == frozenset({"ES256"}) and stack.verifier.groups_claim == "roles"
    explicit = common(auth="oidc", auth_issuer="https://idp.test", auth_jwks_url="http://idp:4444/keys")
    verifier = build_stack(explicit, InProcessBus()).verifier
    assert isinstance(verifier, JwtVerifier) and isinstance(verifier.keys, RemoteJwks)
    assert verifier.keys.url == "http://idp:4444/keys"
    with pytest.raises(ConfigurationError, match="auth_jwks_url"):
        build_stack(common(auth="oidc", auth_issuer="https://i", auth_jwks_url="file:///k"), InProcessBus())
    assert isinstance(service_tokens(c), NoToken)
    with_client = common(
        auth="oidc",
        auth_issuer="https://idp.test",
        auth_service_token_url="https://idp.test/oauth2/token",
        auth_service_client_id="isthmus-retrieval",
        auth_service_client_secret="s",
    )
    assert isinstance(service_tokens(with_client), ClientCredentialsToken)


def test_auth_off_is_said_loudly() -> None:
    with capture_logs() as logs:
        warn_about_auth(common())
        warn_about_auth(common(auth="local"))
    assert [entry["event"].split(":")[0] for entry in logs] == ["authentication is OFF"]
    assert "loopback only" in logs[0]["event"] and logs[0]["log_level"] == "warning"


# --- the runtime -----------------------------------------------------------------------------------------


class ProbeSettings(SectionSettings):
    section: ClassVar[str] = "probe"
    model_config = section_config("probe")


class EmbSettings(SectionSettings):
    section: ClassVar[str] = "emb"
    model_config = section_config("emb")


class Embedding(embedding_pb2_grpc.EmbeddingServiceServicer):
    async def Embed(self, request: Any, context: Any) -> Any:
        p = current_principal()
        return embedding_pb2.EmbedResponse(model_id=p.subject if p else "")


contexts: list[ModuleContext[Any]] = []


async def _build_embedding(ctx: ModuleContext[Any]) -> Offer:
    def register(server: grpc.aio.Server) -> None:
        embedding_pb2_grpc.add_EmbeddingServiceServicer_to_server(Embedding(), server)

    return Offer(registrars=[register], grpc_service_names=["isthmus.embedding.v1.EmbeddingService"])


async def _build_probe(ctx: ModuleContext[Any]) -> Offer:
    contexts.append(ctx)
    return Offer()


EMBEDDING = Module(name="embedding", settings_cls=EmbSettings, build=_build_embedding)
PROBE = Module(name="probe", settings_cls=ProbeSettings, build=_build_probe, depends_on=("embedding",))


async def test_the_runtime_shares_one_stack(tmp_path: Path) -> None:
    contexts.clear()
    overrides = {"common": {"data_dir": str(tmp_path), "grpc_port": 0, "metrics_port": 0, "auth": "local"}}
    rt = Runtime.from_settings("all", [EMBEDDING, PROBE], overrides=overrides)
    await rt.start()
    try:
        assert isinstance(rt.auth, AuthStack) and rt.auth.enabled
        assert rt.server is not None and rt.server.auth is rt.auth
        [ctx] = contexts
        assert ctx.auth is rt.auth
        async with grpc.aio.insecure_channel(rt.address) as ch:
            stub = embedding_pb2_grpc.EmbeddingServiceStub(ch)
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await stub.Embed(embedding_pb2.EmbedRequest())
            assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
            token = local_issuer(rt.common).mint("alice")
            r = await stub.Embed(
                embedding_pb2.EmbedRequest(), metadata=[("authorization", f"Bearer {token}")]
            )
            assert r.model_id == "alice"
        # the module's own channel, outside any call: the process's service identity
        r = await embedding_pb2_grpc.EmbeddingServiceStub(ctx.channel("embedding")).Embed(
            embedding_pb2.EmbedRequest()
        )
        assert r.model_id == SERVICE_SUBJECT
    finally:
        await rt.stop()
