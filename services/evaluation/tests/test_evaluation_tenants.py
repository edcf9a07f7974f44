"""Tenants at evaluation's edge: GetOnlineMetrics answers NOT_FOUND for an unknown tenant (an empty tenant
id still means all tenants), a deleted tenant's online rows are dropped (a tenant created again since
keeps its new ones), and the throwaway tenant of
an evaluation run is a valid tenant id whatever the dataset's directory is called."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from isthmus.evaluation.v1 import evaluation_pb2 as pb
from isthmus_core.contracts.events import AnswerProduced, GuardrailVerdict
from isthmus_core.contracts.ids import TenantId, is_tenant_id
from isthmus_core.errors import InvalidArgument, NotFound
from isthmus_core.ports.tenants import InMemoryTenantDirectory
from isthmus_evaluation.api import EvaluationServicer
from isthmus_evaluation.online_store import OnlineStore, Window
from isthmus_evaluation.runner import eval_tenant_id

ACME, OTHER = TenantId("acme"), TenantId("other")


def _answer(tenant: str, latency: float = 100.0, answer_id: str = "q") -> AnswerProduced:
    return AnswerProduced(
        tenant_id=tenant, idempotency_key="k", question_id=answer_id, latency_ms=latency, citations=[]
    )


def _block(tenant: str) -> GuardrailVerdict:
    return GuardrailVerdict(tenant_id=tenant, idempotency_key="k", stage="input", action="block")


@pytest.fixture
def fed(tmp_path: Path) -> OnlineStore:
    m = OnlineStore(tmp_path / "online.sqlite")
    for tenant in (ACME, OTHER):
        m.add_answer(_answer(tenant))
        m.add_verdict(_block(tenant))
    return m


ALL = Window()


def test_dropping_a_tenant_forgets_its_figures_only(fed: OnlineStore) -> None:
    deleted_at = datetime.now(UTC)
    assert fed.drop_tenant(ACME, deleted_at) == 2  # its answer and its verdict
    assert fed.drop_tenant(ACME, deleted_at) == 0
    gone = fed.summary(ACME, ALL)
    assert (gone.answers, gone.guardrail_verdicts, gone.latency_p50_ms) == (0, 0, None)
    kept = fed.summary(OTHER, ALL)
    assert (kept.answers, kept.guardrail_blocks) == (1, 1)
    assert fed.summary(None, ALL).answers == 1


def test_a_tenant_recreated_after_a_drop_starts_from_zero(fed: OnlineStore) -> None:
    deleted_at = datetime.now(UTC)
    fed.drop_tenant(ACME, deleted_at)
    fed.add_answer(
        _answer(ACME, latency=7.0).model_copy(update={"occurred_at": deleted_at + timedelta(seconds=1)})
    )
    snap = fed.summary(ACME, ALL)
    assert (snap.answers, snap.guardrail_blocks, snap.latency_p50_ms) == (1, 0, 7.0)


@pytest.fixture
def servicer(fed: OnlineStore) -> EvaluationServicer:
    runner: Any = None  # RunEval is not exercised here
    return EvaluationServicer(runner, fed, InMemoryTenantDirectory([ACME, OTHER]))


async def test_online_metrics_of_an_unknown_tenant_are_not_found(servicer: EvaluationServicer) -> None:
    with pytest.raises(NotFound, match="'nobody' does not exist"):
        await servicer.GetOnlineMetrics(pb.GetOnlineMetricsRequest(tenant_id="nobody"), None)


@pytest.mark.parametrize("bad", ["../../escaped", "Acme", "a b"])
async def test_online_metrics_refuse_an_invalid_tenant_id(servicer: EvaluationServicer, bad: str) -> None:
    with pytest.raises(InvalidArgument, match="tenant_id"):
        await servicer.GetOnlineMetrics(pb.GetOnlineMetricsRequest(tenant_id=bad), None)


async def test_online_metrics_of_a_tenant_and_of_all(servicer: EvaluationServicer) -> None:
    one = await servicer.GetOnlineMetrics(pb.GetOnlineMetricsRequest(tenant_id=ACME), None)
    assert (one.answers, one.guardrail_blocks) == (1, 1)
    every = await servicer.GetOnlineMetrics(pb.GetOnlineMetricsRequest(), None)  # "" = all tenants
    assert (every.answers, every.guardrail_blocks) == (2, 2)


@pytest.mark.parametrize("name", ["scifact", "SciFact_v2.1", "my data (copy)", "ü", "x" * 200, "..."])
def test_eval_tenants_are_valid_tenant_ids_named_after_the_dataset(name: str) -> None:
    tenant = eval_tenant_id(name)
    assert is_tenant_id(tenant) and tenant.startswith("eval-")
    assert eval_tenant_id(name) != tenant  # fresh each run
    if name == "SciFact_v2.1":
        assert tenant.startswith("eval-scifact-v2-1-")
