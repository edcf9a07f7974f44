"""The TenantRegistry port: one contract, run against the in-memory fake and the gRPC adapter talking to the
real retrieval servicer (embedded store) on a loopback port."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator

import pytest

from isthmus_core.errors import InvalidArgument, Unavailable
from isthmus_operator.retrieval import GrpcTenantRegistry, InMemoryTenantRegistry, TenantRegistry
from isthmus_operator.settings import OperatorSettings


@pytest.fixture(params=["in-memory", "grpc"])
async def registry(request: pytest.FixtureRequest) -> AsyncIterator[TenantRegistry]:
    if request.param == "in-memory":
        impl: TenantRegistry = InMemoryTenantRegistry()
    else:
        impl = GrpcTenantRegistry(request.getfixturevalue("retrieval_server").endpoint, timeout_s=5)
    yield impl
    await impl.close()


async def test_ensure_is_idempotent(registry: TenantRegistry) -> None:
    assert isinstance(registry, TenantRegistry)
    assert await registry.ensure_tenant("contract-a") is True
    assert await registry.ensure_tenant("contract-a") is False
    assert await registry.remove_tenant("contract-a") is True


async def test_remove_is_idempotent(registry: TenantRegistry) -> None:
    await registry.ensure_tenant("contract-b")
    assert await registry.remove_tenant("contract-b") is True
    assert await registry.remove_tenant("contract-b") is False
    assert await registry.ensure_tenant("contract-b") is True  # gone for real: it can be created again
    await registry.remove_tenant("contract-b")


async def test_an_invalid_tenant_id_is_refused_not_retried(registry: TenantRegistry) -> None:
    with pytest.raises(InvalidArgument) as info:
        await registry.ensure_tenant("Not Valid")
    assert "Not Valid" in str(info.value)


async def test_grpc_adapter_really_creates_the_tenant_in_retrieval(retrieval_server) -> None:
    impl = GrpcTenantRegistry(retrieval_server.endpoint)
    try:
        await impl.ensure_tenant("contract-real")
        assert retrieval_server.has_tenant("contract-real")
        await impl.remove_tenant("contract-real")
        assert not retrieval_server.has_tenant("contract-real")
    finally:
        await impl.close()


async def test_grpc_adapter_reports_an_unreachable_retrieval_as_unavailable() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again when the block ends: nothing listens there
    impl = GrpcTenantRegistry(f"127.0.0.1:{port}", timeout_s=1)
    try:
        with pytest.raises(Unavailable) as info:
            await impl.ensure_tenant("acme")
        assert f"retrieval at 127.0.0.1:{port}: CreateTenant failed" in str(info.value)
    finally:
        await impl.close()


def test_grpc_adapter_rejects_an_endpoint_without_port() -> None:
    with pytest.raises(InvalidArgument, match="retrieval endpoint must be host:port, got 'retrieval'"):
        GrpcTenantRegistry("retrieval")


async def test_fake_injects_unavailability_on_demand() -> None:
    fake = InMemoryTenantRegistry()
    fake.fail_next = 1
    with pytest.raises(Unavailable, match="injected"):
        await fake.ensure_tenant("acme")
    assert await fake.ensure_tenant("acme") is True
    assert fake.calls == [("ensure", "acme"), ("ensure", "acme")]


def test_settings_come_from_isthmus_operator_env(monkeypatch: pytest.MonkeyPatch) -> None:
    from isthmus_core.errors import ConfigurationError
    from isthmus_core.settings import load_all

    monkeypatch.setenv("ISTHMUS_OPERATOR_EVALUATION_ENDPOINT", "isthmus-evaluation:50051")
    monkeypatch.setenv("ISTHMUS_OPERATOR_RETRIEVAL_ENDPOINT", "isthmus-retrieval:50051")
    monkeypatch.setenv("ISTHMUS_OPERATOR_ROLLOUT_INTERVAL_S", "5")
    settings = load_all([OperatorSettings])["operator"]
    assert isinstance(settings, OperatorSettings)
    assert settings.retrieval_endpoint == "isthmus-retrieval:50051"
    assert settings.rollout_interval_s == 5.0
    assert settings.namespace == ""

    monkeypatch.setenv("ISTHMUS_OPERATOR_RETRIEVAL_ENDPOINT", "no port")
    monkeypatch.setenv("ISTHMUS_OPERATOR_ROLLOUT_INTERVAL_S", "0")
    with pytest.raises(ConfigurationError) as info:
        load_all([OperatorSettings])
    assert "[operator] retrieval_endpoint" in str(info.value)
    assert "(env ISTHMUS_OPERATOR_RETRIEVAL_ENDPOINT)" in str(info.value)
    assert "[operator] rollout_interval_s" in str(info.value)


def test_regions_come_from_a_json_env_var_and_exclude_the_single_endpoint(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from isthmus_core.errors import ConfigurationError
    from isthmus_core.settings import load_all

    monkeypatch.setenv("ISTHMUS_OPERATOR_EVALUATION_ENDPOINT", "isthmus-evaluation:50051")
    monkeypatch.setenv("ISTHMUS_OPERATOR_REGIONS", '{"a": "isthmus-a:50051", "b": "isthmus-b:50051"}')
    settings = load_all([OperatorSettings])["operator"]
    assert isinstance(settings, OperatorSettings)
    assert settings.regions == {"a": "isthmus-a:50051", "b": "isthmus-b:50051"}
    assert settings.retrieval_endpoint == ""

    monkeypatch.setenv("ISTHMUS_OPERATOR_REGIONS", '{"A": "isthmus-a:50051", "b": "no-port"}')
    monkeypatch.setenv("ISTHMUS_OPERATOR_RETRIEVAL_ENDPOINT", "isthmus-retrieval:50051")
    with pytest.raises(ConfigurationError) as info:
        load_all([OperatorSettings])
    message = str(info.value)
    assert "regions: 'A': region names are 1-63 characters" in message
    assert "regions.b: the endpoint must be host:port, got 'no-port'" in message
    assert "set either retrieval_endpoint (one region) or regions (several), not both" in message
