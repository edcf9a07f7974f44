"""Per-tenant quotas: request rates per RPC family (refusal with the violated quota and when to retry),
storage (documents, bytes), LLM tokens per UTC day (a fake clock crosses midnight), the replicas divisor,
changes from the access file; and the gRPC edge sending a refusal as RESOURCE_EXHAUSTED with RetryInfo
and QuotaFailure."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import grpc
import pytest

from isthmus_core.auth.access_file import AccessFile, AccessFileReloader, Quota, StaticAccess, save
from isthmus_core.auth.quotas import (
    TenantQuotas,
    build_quota_gate,
    per_replica_budget,
    per_replica_rate,
)
from isthmus_core.errors import ConfigurationError, QuotaExceeded
from isthmus_core.grpc.client import open_channel
from isthmus_core.grpc.server import GrpcServer
from isthmus_core.grpc.status import quota_violations, retry_after_s
from isthmus_core.settings import CommonSettings, load_all


def gate(replicas: int = 1, clock: FakeClock | None = None, **quota: object) -> TenantQuotas:
    model = AccessFile().with_quota("acme", Quota.model_validate(quota))
    if clock is None:
        return TenantQuotas(StaticAccess(model), replicas=replicas)
    return TenantQuotas(StaticAccess(model), replicas=replicas, clock=clock)


class FakeClock:
    def __init__(self, when: dt.datetime) -> None:
        self.now = when.timestamp()

    def __call__(self) -> float:
        return self.now


def test_a_rate_refusal_names_the_quota_and_when_to_retry() -> None:
    q = gate(requests_per_s={"ask": 3})
    for _ in range(3):
        q.check_rate("acme", "ask")
    with pytest.raises(QuotaExceeded) as info:
        q.check_rate("acme", "ask")
    exc = info.value
    assert exc.violations == [("tenant:acme/requests_per_s/ask", "at most 3 ask requests per second")]
    assert exc.retry_after_s is not None and 0 < exc.retry_after_s <= 1.0
    assert not exc.permanent  # it refills: the bus would retry it
    assert "3 ask requests per second" in exc.reason


def test_rates_count_per_tenant_and_family() -> None:
    q = gate(requests_per_s={"ask": 1})
    q.check_rate("acme", "ask")
    q.check_rate("acme", "search")  # no quota for that family
    q.check_rate("other", "ask")  # no quota for that tenant
    q.check_rate("", "ask")  # a call without a tenant
    for _ in range(50):
        q.check_rate("acme", "search")
        q.check_rate("other", "ask")
    with pytest.raises(QuotaExceeded):
        q.check_rate("acme", "ask")


def test_storage_refusals_list_every_violated_quota() -> None:
    q = gate(max_documents=2, max_bytes=100)
    q.check_storage("acme", documents=1, stored_bytes=60, incoming_bytes=40)
    with pytest.raises(QuotaExceeded) as info:
        q.check_storage("acme", documents=2, stored_bytes=90, incoming_bytes=20)
    assert [s for s, _ in info.value.violations] == ["tenant:acme/max_documents", "tenant:acme/max_bytes"]
    assert info.value.retry_after_s is None and info.value.permanent
    with pytest.raises(QuotaExceeded) as info:
        q.check_storage("acme", documents=0, stored_bytes=0, incoming_bytes=101)
    assert [s for s, _ in info.value.violations] == ["tenant:acme/max_bytes"]
    q.check_storage("other", documents=10**6, stored_bytes=10**12, incoming_bytes=1)
    gate(max_documents=0).check_storage("other", 0, 0, 0)
    with pytest.raises(QuotaExceeded):
        gate(max_documents=0).check_storage("acme", 0, 0, 0)


def test_the_token_budget_is_per_utc_day() -> None:
    clock = FakeClock(dt.datetime(2026, 3, 1, 23, 0, tzinfo=dt.UTC))
    q = gate(clock=clock, llm_tokens_per_day=1000)
    q.check_tokens("acme")
    q.charge_tokens("acme", 600)
    q.check_tokens("acme")
    q.charge_tokens("acme", 600)  # a generation may end past the budget: it is counted all the same
    assert q.tokens_used("acme") == 1200
    with pytest.raises(QuotaExceeded) as info:
        q.check_tokens("acme")
    assert info.value.violations[0][0] == "tenant:acme/llm_tokens_per_day"
    assert info.value.retry_after_s == pytest.approx(3600)  # the next midnight UTC

    clock.now += 3600  # 00:00 UTC: a new day, a new budget
    q.check_tokens("acme")
    assert q.tokens_used("acme") == 0
    q.check_tokens("other")
    q.charge_tokens("acme", 0)
    q.charge_tokens("acme", -5)
    assert q.tokens_used("acme") == 0


def test_replicas_share_the_tenant_s_quota() -> None:
    assert per_replica_rate(10, 2) == (5, 1)
    assert per_replica_rate(5, 3) == (5, 3)  # 5 per 3 s: 5/3 per second, exactly
    assert per_replica_rate(6, 4) == (3, 2)
    assert per_replica_rate(7, 1) == (7, 1)
    assert per_replica_budget(1000, 3) == 333
    assert per_replica_budget(1, 3) == 1
    assert per_replica_budget(0, 3) == 0

    q = gate(replicas=2, requests_per_s={"search": 4})
    q.check_rate("acme", "search")
    q.check_rate("acme", "search")
    with pytest.raises(QuotaExceeded) as info:
        q.check_rate("acme", "search")
    assert "this replica's share of 2: 2 per 1 s" in info.value.violations[0][1]

    q = gate(replicas=3, requests_per_s={"ask": 5})
    for _ in range(5):
        q.check_rate("acme", "ask")
    with pytest.raises(QuotaExceeded) as info:
        q.check_rate("acme", "ask")
    assert info.value.retry_after_s is not None and 0 < info.value.retry_after_s <= 3.0

    clock = FakeClock(dt.datetime(2026, 3, 1, 12, 0, tzinfo=dt.UTC))
    q = gate(replicas=4, clock=clock, llm_tokens_per_day=100)
    q.charge_tokens("acme", 25)
    with pytest.raises(QuotaExceeded, match="25 tokens of 25"):
        q.check_tokens("acme")


def test_quota_replicas_setting(tmp_path: Path) -> None:
    assert CommonSettings().quota_replicas == 1
    q = build_quota_gate(CommonSettings(data_dir=tmp_path, quota_replicas=3))
    assert isinstance(q, TenantQuotas) and q.replicas == 3
    with pytest.raises(ConfigurationError, match="quota_replicas"):
        load_all([CommonSettings], overrides={"common": {"quota_replicas": 0}})


def test_quotas_follow_the_access_file(tmp_path: Path) -> None:
    path = tmp_path / "access.toml"
    now = [0.0]
    reloader = AccessFileReloader(path, clock=lambda: now[0])
    q = TenantQuotas(reloader)
    for _ in range(20):
        q.check_rate("acme", "ask")  # no file: unlimited

    save(path, AccessFile().with_quota("acme", Quota(requests_per_s={"ask": 1}, max_documents=1)))
    now[0] += 2
    q.check_rate("acme", "ask")
    with pytest.raises(QuotaExceeded):
        q.check_rate("acme", "ask")
    with pytest.raises(QuotaExceeded):
        q.check_storage("acme", 1, 0, 0)

    save(path, AccessFile().with_quota("acme", Quota(requests_per_s={"ask": 100})))
    now[0] += 2
    q.check_rate("acme", "ask")  # a changed rate: a fresh window
    q.check_storage("acme", 1, 0, 0)


# -- the gRPC edge ----------------------------------------------------------------------------------------

SERVICE = "test.Quota"


def _identity(b: bytes) -> bytes:
    return b


async def test_the_grpc_edge_sends_retry_info_and_quota_failure() -> None:
    quotas = gate(requests_per_s={"ask": 1})

    async def ask(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
        quotas.check_rate("acme", "ask")
        return b"answer"

    def register(server: grpc.aio.Server) -> None:
        handler = grpc.unary_unary_rpc_method_handler(ask, _identity, _identity)
        server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, {"Ask": handler}),))

    server = GrpcServer("127.0.0.1", 0)
    server.add([register], [SERVICE])
    await server.start()
    try:
        async with open_channel(server.address) as ch:
            call = ch.unary_unary(
                f"/{SERVICE}/Ask", request_serializer=_identity, response_deserializer=_identity
            )
            assert await call(b"q", timeout=10) == b"answer"
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await call(b"q", timeout=10)
    finally:
        await server.stop(0)
    err = info.value
    assert err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "1 ask requests per second" in (err.details() or "")
    delay = retry_after_s(err)
    assert delay is not None and 0 < delay <= 1.0
    assert quota_violations(err) == [("tenant:acme/requests_per_s/ask", "at most 1 ask requests per second")]
