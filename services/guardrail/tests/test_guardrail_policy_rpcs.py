"""The policy RPCs at the guardrail's edge: proto <-> Policy (``optional`` fields unset take the defaults,
every new field set and read back), a bad policy refused with every error at once and nothing stored,
the caller recorded as the version's author, versions listed, read and rolled back."""

from __future__ import annotations

from pathlib import Path
from typing import Any, cast

import pytest

from isthmus.guardrail.v1 import guardrail_pb2 as pb
from isthmus_core.auth.context import Access, AllowAll, acting_as
from isthmus_core.auth.identity import Principal
from isthmus_core.contracts.events import GuardrailVerdict
from isthmus_core.contracts.ids import TenantId
from isthmus_core.errors import InvalidArgument, NotFound
from isthmus_core.ports.guard import BannedTopic, IngestScope, Policy, PolicyAction
from isthmus_core.ports.tenants import InMemoryTenantDirectory
from isthmus_guardrail.api import GuardrailServicer, policy_from_pb
from isthmus_guardrail.guard import Guard
from isthmus_guardrail.pii import PiiDetector
from isthmus_guardrail.policies import PolicyStore
from isthmus_guardrail.presets import PRESETS

TENANT = "acme"
CTX: Any = None
#: the plain (non-optional) fields as the built-in policy has them
PLAIN = {
    "block_injection": True,
    "injection_threshold": 0.5,
    "redact_pii": True,
    "pii_threshold": 0.5,
    "grounding_threshold": 0.6,
    "block_ungrounded": True,
}


class KnownEntities:
    """What :meth:`Guard.validate_policy` asks of a PII detector (no Presidio needed)."""

    supported_entities = frozenset({"EMAIL_ADDRESS", "PHONE_NUMBER", "PERSON", "CREDIT_CARD", "IBAN_CODE"})
    supported_entities |= frozenset(Policy().pii_entities)


@pytest.fixture
def servicer(tmp_path: Path) -> GuardrailServicer:
    async def publish(v: GuardrailVerdict) -> None:
        pass

    guard = Guard(cast(PiiDetector, KnownEntities()))
    return GuardrailServicer(
        guard, PolicyStore(tmp_path), publish, 1000, InMemoryTenantDirectory([TenantId(TENANT)])
    )


def test_unset_optional_fields_take_the_defaults() -> None:
    assert policy_from_pb(pb.Policy(tenant_id=TENANT, **PLAIN)) == Policy()


def test_every_field_is_translated_both_ways(servicer: GuardrailServicer) -> None:
    request = pb.Policy(
        tenant_id=TENANT,
        **PLAIN | {"block_injection": False, "injection_threshold": 0.35},
        pii_entities=["EMAIL_ADDRESS", "PERSON"],
        pii_action="mask",
        block_toxicity=False,
        toxicity_threshold=0.25,
        banned_topics=[
            pb.BannedTopic(name="weapons", description="building or buying weapons", threshold=0.7),
            pb.BannedTopic(name="medical", description="medical diagnoses"),
        ],
        output_pii_entities=[],
        set_output_pii_entities=True,  # nothing redacted in answers
        output_pii_action="flag",
        grounding_model=False,
        contradiction_threshold=0.45,
        entailment_threshold=0.2,
        scan_ingest=True,
        ingest_injection_action="flag",
        ingest_injection_threshold=0.9,
        ingest_pii_entities=["CREDIT_CARD"],
        ingest_pii_action="redact",
        ingest_scope="chunk",
    )
    policy = policy_from_pb(request)
    assert policy == Policy(
        block_injection=False,
        injection_threshold=0.35,  # float32 on the wire, the decimal it was written as here
        pii_entities=("EMAIL_ADDRESS", "PERSON"),
        pii_action=cast(PolicyAction, "mask"),
        block_toxicity=False,
        toxicity_threshold=0.25,
        banned_topics=(
            BannedTopic("weapons", "building or buying weapons", 0.7),
            BannedTopic("medical", "medical diagnoses", 0.6),
        ),
        output_pii_entities=(),
        output_pii_action=cast(PolicyAction, "flag"),
        grounding_model=False,
        contradiction_threshold=0.45,
        entailment_threshold=0.2,
        ingest_injection_action=cast(PolicyAction, "flag"),
        ingest_injection_threshold=0.9,
        ingest_pii_entities=("CREDIT_CARD",),
        ingest_pii_action=cast(PolicyAction, "redact"),
        ingest_scope=cast(IngestScope, "chunk"),
    )
    validated = Guard(None).validate_policy(policy)
    assert validated.pii_action is PolicyAction.MASK and validated.ingest_scope is IngestScope.CHUNK


async def test_a_policy_read_back_and_put_again_is_the_same_version(servicer: GuardrailServicer) -> None:
    for name in ("strict", "permissive"):
        applied = await servicer.ApplyPolicyRef(pb.ApplyPolicyRefRequest(tenant_id=TENANT, name=name), CTX)
        read = await servicer.GetPolicy(pb.GetPolicyRequest(tenant_id=TENANT), CTX)
        assert policy_from_pb(read) == PRESETS[name]
        again = await servicer.PutPolicy(read, CTX)
        assert (again.version, again.digest) == (applied.version, PRESETS[name].digest)
        assert (again.label, again.source, again.current) == (applied.label, f"preset:{name}", True)


async def test_a_bad_policy_is_refused_with_every_error_at_once(servicer: GuardrailServicer) -> None:
    bad = pb.Policy(
        tenant_id=TENANT,
        **PLAIN | {"pii_threshold": 1.5},
        pii_entities=["EMAIL_ADDRESS", "NOT_AN_ENTITY"],
        pii_action="shred",
        ingest_scope="tenant",
        ingest_pii_entities=["ALSO_UNKNOWN"],
        banned_topics=[
            pb.BannedTopic(name="a topic", description=" "),
            pb.BannedTopic(name="x", threshold=-1),
        ],
    )
    with pytest.raises(InvalidArgument) as refused:
        await servicer.PutPolicy(bad, CTX)
    message = str(refused.value)
    for expected in (
        "policy.pii_threshold must be within [0, 1], got 1.5",
        "policy.pii_action must be one of flag, redact, mask, block, got 'shred'",
        "policy.ingest_scope must be one of document, chunk, got 'tenant'",
        "policy.banned_topics[0].name must be 1-64 letters",
        "policy.banned_topics[0].description must not be empty",
        "policy.banned_topics[1].description must not be empty",
        "policy.banned_topics['x'].threshold must be within [0, 1], got -1.0",
        "policy.pii_entities: unknown PII entities ['NOT_AN_ENTITY']",
        "policy.ingest_pii_entities: unknown PII entities ['ALSO_UNKNOWN']",
    ):
        assert expected in message, (expected, message)
    listed = await servicer.ListPolicyVersions(pb.ListPolicyVersionsRequest(tenant_id=TENANT), CTX)
    assert (list(listed.versions), listed.current) == ([], 0)  # nothing stored


async def test_versions_are_listed_read_and_rolled_back(servicer: GuardrailServicer) -> None:
    alice = Access(Principal(subject="alice", via="token"), AllowAll())
    with acting_as(alice):
        v1 = await servicer.PutPolicy(
            pb.Policy(tenant_id=TENANT, **PLAIN | {"injection_threshold": 0.3}), CTX
        )
    v2 = await servicer.ApplyPolicyRef(pb.ApplyPolicyRefRequest(tenant_id=TENANT, name="strict"), CTX)
    assert (v1.label, v1.created_by, v1.source) == ("v1", "alice", "put")
    assert v1.created_at.seconds > 0 and v1.digest == policy_from_pb(v1).digest
    assert (v2.label, v2.created_by, v2.source) == ("v2", "", "preset:strict")  # no caller outside a call

    listed = await servicer.ListPolicyVersions(pb.ListPolicyVersionsRequest(tenant_id=TENANT), CTX)
    assert listed.current == 2
    assert [(v.label, v.current) for v in listed.versions] == [("v2", True), ("v1", False)]

    old = await servicer.GetPolicy(pb.GetPolicyRequest(tenant_id=TENANT, version=1), CTX)
    assert (old.label, old.current, old.injection_threshold) == ("v1", False, pytest.approx(0.3))
    back = await servicer.RollbackPolicy(pb.RollbackPolicyRequest(tenant_id=TENANT, version=1), CTX)
    assert (back.label, back.current, back.source, back.created_by) == ("v1", True, "put", "alice")
    assert (await servicer.GetPolicy(pb.GetPolicyRequest(tenant_id=TENANT), CTX)).label == "v1"
    with pytest.raises(NotFound, match="v5"):
        await servicer.RollbackPolicy(pb.RollbackPolicyRequest(tenant_id=TENANT, version=5), CTX)
    with pytest.raises(NotFound, match="v5"):
        await servicer.GetPolicy(pb.GetPolicyRequest(tenant_id=TENANT, version=5), CTX)
    with pytest.raises(InvalidArgument, match="version"):
        await servicer.RollbackPolicy(pb.RollbackPolicyRequest(tenant_id=TENANT, version=0), CTX)


async def test_the_builtin_default_reads_as_version_0(servicer: GuardrailServicer) -> None:
    default = await servicer.GetPolicy(pb.GetPolicyRequest(tenant_id=TENANT), CTX)
    assert (default.version, default.label, default.current, default.source) == (0, "default", True, "")
    assert not default.HasField("created_at") and default.digest == Policy().digest
    assert default.HasField("pii_action") and default.pii_action == "redact"  # every field is shown
    assert policy_from_pb(default) == Policy()
