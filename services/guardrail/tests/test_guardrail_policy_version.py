"""Every verdict names the version of the tenant policy it applied (answers' provenance)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from isthmus.common.v1 import common_pb2
from isthmus.guardrail.v1 import guardrail_pb2 as pb
from isthmus_core.contracts.events import GuardrailVerdict
from isthmus_core.contracts.ids import TenantId
from isthmus_core.ports.guard import Policy
from isthmus_core.ports.tenants import InMemoryTenantDirectory
from isthmus_guardrail.api import GuardrailServicer
from isthmus_guardrail.guard import Guard
from isthmus_guardrail.policies import PolicyStore


def test_a_policy_version_is_a_hash_of_its_content() -> None:
    assert Policy().digest == Policy().digest and len(Policy().digest) == 16
    assert Policy(grounding_threshold=0.7).digest != Policy().digest
    assert Policy(pii_entities=("PERSON",)).digest != Policy().digest


async def test_verdicts_name_the_policy_version_they_applied(tmp_path: Path) -> None:
    async def publish(v: GuardrailVerdict) -> None:
        pass

    policies = PolicyStore(tmp_path / "policies")
    servicer = GuardrailServicer(
        Guard(None), policies, publish, 1000, InMemoryTenantDirectory([TenantId("acme")])
    )
    ctx: Any = None
    ask = pb.CheckInputRequest(tenant_id="acme", text="How many vacation days?")
    before = await servicer.CheckInput(ask, ctx)
    assert before.policy_version == Policy().digest
    await servicer.PutPolicy(
        pb.Policy(
            tenant_id="acme",
            injection_threshold=0.5,
            pii_threshold=0.5,
            redact_pii=True,
            block_injection=True,
            grounding_threshold=0.9,
            block_ungrounded=True,
        ),
        ctx,
    )
    after = await servicer.CheckInput(ask, ctx)
    stored = policies.get(TenantId("acme"))
    assert after.policy_version == stored.digest and stored.grounding_threshold > 0.8
    assert after.policy_version != before.policy_version
    output = await servicer.CheckOutput(
        pb.CheckOutputRequest(
            tenant_id="acme",
            sentences=[common_pb2.AnswerSentence(text="Ten days.")],
            contexts=[common_pb2.Context(chunk_id="c", document_id="d", text="Ten days.")],
        ),
        ctx,
    )
    assert output.policy_version == stored.digest
