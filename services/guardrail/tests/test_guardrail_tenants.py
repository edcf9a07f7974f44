"""Tenants at the guardrail's edge: ids are parsed before they name a policy file (which must stay inside
the policies directory), unknown tenants get NOT_FOUND from every RPC (never a default ALLOW), and a
deleted tenant's policy file can be removed."""

from __future__ import annotations

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
from isthmus_core.ports.tenants import InMemoryTenantDirectory
from isthmus_guardrail.api import GuardrailServicer
from isthmus_guardrail.guard import Guard
from isthmus_guardrail.policies import PolicyStore

KNOWN = TenantId("acme")
BAD_IDS = ["../../escaped", "../escaped", "a/b", "..", ".hidden", "Acme", "a b", "x" * 64, "-lead"]


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return tmp_path / "data" / "guardrail" / "policies"


@pytest.fixture
def servicer(root: Path) -> tuple[GuardrailServicer, list[GuardrailVerdict]]:
    published: list[GuardrailVerdict] = []

    async def publish(v: GuardrailVerdict) -> None:
        published.append(v)

    return (
        GuardrailServicer(Guard(None), PolicyStore(root), publish, 1000, InMemoryTenantDirectory([KNOWN])),
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
    ]


def _files(under: Path) -> list[Path]:
    return sorted(p for p in under.rglob("*") if p.is_file())


@pytest.mark.parametrize("bad", BAD_IDS)
def test_policy_store_refuses_ids_that_are_not_tenant_ids(root: Path, tmp_path: Path, bad: str) -> None:
    store = PolicyStore(root)
    for call in (lambda: store.put(TenantId(bad), Policy()), lambda: store.get(TenantId(bad))):
        with pytest.raises(InvalidArgument, match="tenant"):
            call()
    assert _files(tmp_path) == []


def test_policy_store_refuses_a_file_resolving_outside_its_directory(root: Path, tmp_path: Path) -> None:
    store = PolicyStore(root)
    outside = tmp_path / "outside.json"
    outside.write_text("{}")
    (root / "acme.json").symlink_to(outside)  # a valid name whose file lives elsewhere
    with pytest.raises(InvalidArgument, match="policy file"):
        store.put(KNOWN, Policy(injection_threshold=0.1))
    assert outside.read_text() == "{}"


def test_policy_store_put_get_delete(root: Path) -> None:
    store = PolicyStore(root)
    assert store.get(KNOWN) == Policy()
    custom = Policy(injection_threshold=0.2, pii_entities=("EMAIL_ADDRESS",))
    store.put(KNOWN, custom)
    assert store.get(KNOWN) == custom
    assert [p.name for p in root.iterdir()] == ["acme.json"]
    assert store.delete(KNOWN) is True
    assert store.delete(KNOWN) is False
    assert list(root.iterdir()) == []
    assert store.get(KNOWN) == Policy()


def test_a_policy_is_read_once_and_kept_up_to_date_by_the_store(root: Path) -> None:
    custom = Policy(injection_threshold=0.3)
    PolicyStore(root).put(KNOWN, custom)
    store = PolicyStore(root)  # another process's store, started later: reads the file once
    assert store.get(KNOWN) == custom
    (root / "acme.json").write_text("not json")  # later reads are answered from memory
    assert store.get(KNOWN) == custom
    newer = Policy(injection_threshold=0.4)
    assert store.put(KNOWN, newer) == newer and store.get(KNOWN) == newer
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
    assert _files(tmp_path) == []


async def test_every_rpc_answers_not_found_for_an_unknown_tenant(
    servicer: tuple[GuardrailServicer, list[GuardrailVerdict]], root: Path
) -> None:
    svc, published = servicer
    for method, request in _requests("nobody"):
        with pytest.raises(NotFound, match="'nobody' does not exist"):
            await getattr(svc, method)(request, None)
    assert published == []  # no check ran, no verdict was emitted
    assert _files(root) == []  # PutPolicy wrote nothing


async def test_a_known_tenant_is_served(servicer: tuple[GuardrailServicer, list[GuardrailVerdict]]) -> None:
    svc, published = servicer
    for method, request in _requests(KNOWN):
        await getattr(svc, method)(request, None)
    assert {v.tenant_id for v in published} == {KNOWN}
    assert (await svc.GetPolicy(pb.GetPolicyRequest(tenant_id=KNOWN), None)).injection_threshold == 0.5


def test_a_policy_written_after_the_deletion_survives_the_event(root: Path) -> None:
    """A tenant deleted, created again and given a policy before the (late or replayed) deletion event
    is handled keeps its new policy; an older one goes."""
    store = PolicyStore(root)
    store.put(KNOWN, Policy(injection_threshold=0.2))
    path = store.path(KNOWN)
    written = datetime.fromtimestamp(path.stat().st_mtime, UTC)
    assert store.delete(KNOWN, written_before=written - timedelta(seconds=1)) is False
    assert store.get(KNOWN).injection_threshold == 0.2
    assert store.delete(KNOWN, written_before=written + timedelta(seconds=1)) is True
    assert not path.exists()
