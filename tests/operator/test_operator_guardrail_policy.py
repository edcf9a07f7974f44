"""The PolicyApplier port: one contract, run against the in-memory fake and the gRPC adapter talking to a
GuardrailService on a loopback port (``guardrail_server``: the real gRPC server stack, the fake's
``ApplyPolicyRef``); the adapter sends the operator's token and maps refusals and outages."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator

import pytest

from isthmus_core.auth.outbound import StaticToken
from isthmus_core.errors import InvalidArgument, NotFound, Unavailable
from isthmus_operator.guardrail import GrpcPolicyApplier, InMemoryPolicyApplier, PolicyApplier
from isthmus_operator.settings import OperatorSettings


@pytest.fixture(params=["in-memory", "grpc"])
async def applier(request: pytest.FixtureRequest) -> AsyncIterator[PolicyApplier]:
    if request.param == "in-memory":
        impl: PolicyApplier = InMemoryPolicyApplier()
    else:
        impl = GrpcPolicyApplier(request.getfixturevalue("guardrail_server").endpoint, timeout_s=5)
    yield impl
    await impl.close()


async def test_applying_a_preset_is_idempotent_and_returns_the_current_label(applier) -> None:
    assert isinstance(applier, PolicyApplier)
    first = await applier.apply("policy-a", "strict", None)
    assert (first.label, first.version, first.source) == ("v1", 1, "preset:strict")
    again = await applier.apply("policy-a", "strict", None)
    assert (again.label, again.version) == ("v1", 1), "the same preset again stores nothing"
    other = await applier.apply("policy-a", "permissive", None)
    assert (other.label, other.version) == ("v2", 2)


async def test_a_version_makes_that_stored_version_current(applier) -> None:
    await applier.apply("policy-b", "strict", None)
    await applier.apply("policy-b", "permissive", None)
    back = await applier.apply("policy-b", "ignored", 1)
    assert (back.label, back.version, back.source) == ("v1", 1, "preset:strict")


async def test_an_unknown_preset_or_version_is_refused_not_retried(applier) -> None:
    with pytest.raises(InvalidArgument) as info:
        await applier.apply("policy-c", "lenient", None)
    assert "unknown policy preset 'lenient'" in str(info.value)
    with pytest.raises(NotFound) as missing:
        await applier.apply("policy-c", "default", 9)
    assert "no policy version 9" in str(missing.value)


async def test_grpc_adapter_sends_the_operators_token(guardrail_server) -> None:
    impl = GrpcPolicyApplier(guardrail_server.endpoint, tokens=StaticToken("operator-token"))
    try:
        await impl.apply("policy-token", "default", None)
    finally:
        await impl.close()
    assert guardrail_server.bearers[-1] == "Bearer operator-token"
    assert guardrail_server.current("policy-token") == (1, "preset:default")


async def test_grpc_adapter_reports_an_unreachable_guardrail_as_unavailable() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again when the block ends: nothing listens there
    impl = GrpcPolicyApplier(f"127.0.0.1:{port}", timeout_s=1)
    try:
        with pytest.raises(Unavailable) as info:
            await impl.apply("acme", "default", None)
        assert f"guardrail at 127.0.0.1:{port}: ApplyPolicyRef failed" in str(info.value)
    finally:
        await impl.close()


def test_grpc_adapter_rejects_an_endpoint_without_port() -> None:
    with pytest.raises(InvalidArgument, match="guardrail endpoint must be host:port, got 'guardrail'"):
        GrpcPolicyApplier("guardrail")


async def test_fake_injects_unavailability_on_demand() -> None:
    fake = InMemoryPolicyApplier(fail_next=1)
    with pytest.raises(Unavailable, match="injected"):
        await fake.apply("acme", "default", None)
    assert (await fake.apply("acme", "default", None)).label == "v1"
    assert fake.calls == [("acme", "default", None), ("acme", "default", None)]


def test_the_guardrail_endpoint_setting_is_checked_and_excludes_regions(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from isthmus_core.errors import ConfigurationError
    from isthmus_core.settings import load_all

    monkeypatch.setenv("ISTHMUS_OPERATOR_EVALUATION_ENDPOINT", "isthmus-evaluation:50051")
    monkeypatch.setenv("ISTHMUS_OPERATOR_GUARDRAIL_ENDPOINT", "isthmus-guardrail:50051")
    settings = load_all([OperatorSettings])["operator"]
    assert isinstance(settings, OperatorSettings)
    assert settings.guardrail_endpoint == "isthmus-guardrail:50051"
    assert settings.guardrail_timeout_s == 5.0

    monkeypatch.setenv("ISTHMUS_OPERATOR_REGIONS", '{"a": "isthmus-a:50051"}')
    with pytest.raises(ConfigurationError) as info:
        load_all([OperatorSettings])
    assert "set either guardrail_endpoint (one region) or regions (several), not both" in str(info.value)
    monkeypatch.delenv("ISTHMUS_OPERATOR_REGIONS")
    monkeypatch.setenv("ISTHMUS_OPERATOR_GUARDRAIL_ENDPOINT", "no port")
    with pytest.raises(ConfigurationError, match="guardrail_endpoint"):
        load_all([OperatorSettings])
