"""Tenants at the guardrail's edge: ids are parsed before they reach the policy store, unknown tenants
get NOT_FOUND from every RPC (never a default ALLOW), and a deleted tenant's policy versions can be
removed."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from isthmus.common.v1 import common_pb2
from isthmus.guardrail.v1 import guardrail_pb2 as pb
from isthmus_core.contracts.events import GuardrailVerdict
from isthmus_core.contracts.ids import TenantId
from isthmus_core.errors import InvalidArgument, NotFound
from isthmus_core.ports.guard import Policy
from isthmus_core.ports.judge import Entailment
from isthmus_core.ports.tenants import InMemoryTenantDirectory
from isthmus_guardrail.api import GuardrailServicer
from isthmus_guardrail.guard import Guard
from isthmus_guardrail.policies import PolicyStore

KNOWN = TenantId("acme")
BAD_IDS = ["../../escaped", "../escaped", "a/b", "..", ".hidden", "Acme", "a b", "x" * 64, "-lead"]


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return tmp_path / "data" / "guardrail"


class _Judging:
    """The evaluation judges without their models (tenants are checked before any judging)."""

    entailment_model = relevance_model = "stub@0"

    def entail(self, pairs: Sequence[tuple[str, str]]) -> list[Entailment]:
        return [Entailment(1.0, 0.0, 0.0) for _ in pairs]

    def relevance(self, query: str, passages: Sequence[str]) -> list[float]:
        return [0.5 for _ in passages]


@pytest.fixture
def servicer(root: Path) -> tuple[GuardrailServicer, list[GuardrailVerdict]]:
    published: list[GuardrailVerdict] = []

    async def publish(v: GuardrailVerdict) -> None:
        published.append(v)

    return (
        GuardrailServicer(
            Guard(None), PolicyStore(root), publish, 1000, InMemoryTenantDirectory([KNOWN]), _Judging()
        ),
        published,
    )


def _requests(tenant: str) -> list[tuple[str, Any]]:
    return [
        ("CheckInput", pb.CheckInputRequest(tenant_id=tenant, text="How many vacation days?")),
        (
            "CheckOutput",
            pb.CheckOutputRequest(
                tenant_id=tenant,
                sentences=[common_pb2.AnswerSentence(text="Ten days.")],
                contexts=[common_pb2.Context(chunk_id="c", document_id="d", text="Ten days.")],
            ),
        ),
        ("GetPolicy", pb.GetPolicyRequest(tenant_id=tenant)),
        ("PutPolicy", pb.Policy(tenant_id=tenant, injection_threshold=0.5, pii_threshold=0.5)),
        ("ListPolicyVersions", pb.ListPolicyVersionsRequest(tenant_id=tenant)),
        ("RollbackPolicy", pb.RollbackPolicyRequest(tenant_id=tenant, version=1)),
        ("ApplyPolicyRef", pb.ApplyPolicyRefRequest(tenant_id=tenant, name="strict")),
        (
            "Entail",
            pb.EntailRequest(tenant_id=tenant, pairs=[pb.EntailPair(premise="Ten days.", hypothesis="10")]),
        ),
        ("ScoreRelevance", pb.ScoreRelevanceRequest(tenant_id=tenant, query="days", passages=["Ten days."])),
    ]


def _versions(root: Path) -> list[tuple[str, int]]:
    """Every stored (tenant, version number), straight from the file."""
    with sqlite3.connect(root / "policies.sqlite") as conn:
        return sorted(conn.execute("SELECT tenant_id, number FROM policy_versions").fetchall())


def _files(under: Path) -> list[Path]:
    return sorted(p for p in under.rglob("*") if p.is_file())


@pytest.mark.parametrize("bad", BAD_IDS)
def test_policy_store_refuses_ids_that_are_not_tenant_ids(root: Path, tmp_path: Path, bad: str) -> None:
    store = PolicyStore(root)
    calls = [
        lambda: store.put(TenantId(bad), Policy(injection_threshold=0.1)),
        lambda: store.get(TenantId(bad)),
        lambda: store.history(TenantId(bad)),
        lambda: store.rollback(TenantId(bad), 1),
        lambda: store.delete(TenantId(bad)),
    ]
    for call in calls:
        with pytest.raises(InvalidArgument, match="tenant"):
            call()
    assert {p.name for p in _files(tmp_path)} <= {
        "policies.sqlite",
        "policies.sqlite-wal",
        "policies.sqlite-shm",
    }
    assert _versions(root) == []


def test_policy_store_put_get_delete(root: Path) -> None:
    store = PolicyStore(root)
    assert store.get(KNOWN) == Policy()
    custom = Policy(injection_threshold=0.2, pii_entities=("EMAIL_ADDRESS",))
    store.put(KNOWN, custom)
    assert store.get(KNOWN) == custom
    assert _versions(root) == [("acme", 1)]
    assert store.delete(KNOWN) is True
    assert store.delete(KNOWN) is False
    assert _versions(root) == []
    assert store.get(KNOWN) == Policy()


def test_a_policy_is_read_once_and_kept_up_to_date_by_the_store(root: Path) -> None:
    custom = Policy(injection_threshold=0.3)
    PolicyStore(root).put(KNOWN, custom)
    store = PolicyStore(root)  # another process's store, started later: reads the file once
    assert store.get(KNOWN) == custom
    with sqlite3.connect(root / "policies.sqlite") as conn:  # later reads are answered from memory
        conn.execute("UPDATE policy_versions SET content = 'not json'")
    assert store.get(KNOWN) == custom
    newer = Policy(injection_threshold=0.4)
    assert store.put(KNOWN, newer).policy == newer and store.get(KNOWN) == newer
    store.delete(KNOWN)
    assert store.get(KNOWN) == Policy()


@pytest.mark.parametrize("bad", ["", "../../escaped", "Acme"])
async def test_every_rpc_refuses_an_invalid_tenant_id(
    servicer: tuple[GuardrailServicer, list[GuardrailVerdict]], root: Path, tmp_path: Path, bad: str
) -> None:
    svc, published = servicer
    for method, request in _requests(bad):
        with pytest.raises(InvalidArgument, match="tenant_id"):
            await getattr(svc, method)(request, None)
    assert published == []
    assert _versions(root) == []
    assert not [p for p in _files(tmp_path) if "escaped" in str(p)]


async def test_every_rpc_answers_not_found_for_an_unknown_tenant(
    servicer: tuple[GuardrailServicer, list[GuardrailVerdict]], root: Path
) -> None:
    svc, published = servicer
    for method, request in _requests("nobody"):
        with pytest.raises(NotFound, match="'nobody' does not exist"):
            await getattr(svc, method)(request, None)
    assert published == []  # no check ran, no verdict was emitted
    assert _versions(root) == []  # PutPolicy and ApplyPolicyRef wrote nothing


async def test_a_known_tenant_is_served(servicer: tuple[GuardrailServicer, list[GuardrailVerdict]]) -> None:
    svc, published = servicer
    for method, request in _requests(KNOWN):
        await getattr(svc, method)(request, None)
    assert {v.tenant_id for v in published} == {KNOWN}
    current = await svc.GetPolicy(pb.GetPolicyRequest(tenant_id=KNOWN), None)
    assert (current.label, current.source) == ("v2", "preset:strict")  # ApplyPolicyRef came last
    first = await svc.GetPolicy(pb.GetPolicyRequest(tenant_id=KNOWN, version=1), None)
    assert first.injection_threshold == 0.5 and not first.current


def test_a_policy_written_after_the_deletion_survives_the_event(root: Path) -> None:
    """A tenant deleted, created again and given a policy before the (late or replayed) deletion event
    is handled keeps its new policy; an older one goes."""
    written = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)
    store = PolicyStore(root, clock=lambda: written)
    store.put(KNOWN, Policy(injection_threshold=0.2))
    assert store.delete(KNOWN, written_before=written - timedelta(seconds=1)) is False
    assert store.get(KNOWN).injection_threshold == 0.2
    assert store.delete(KNOWN, written_before=written + timedelta(seconds=1)) is True
    assert _versions(root) == [] and store.get(KNOWN) == Policy()
