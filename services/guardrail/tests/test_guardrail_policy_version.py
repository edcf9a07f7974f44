"""Every verdict names the version of the tenant policy it applied (answers' provenance): ``default`` until
the tenant stores one, then that version's label; a rollback shows on the next verdict."""

from __future__ import annotations

from collections.abc import AsyncIterator
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

ASK = pb.CheckInputRequest(tenant_id="acme", text="How many vacation days?", subject_id="q1")
ANSWER = pb.CheckOutputRequest(
    tenant_id="acme",
    sentences=[common_pb2.AnswerSentence(text="Ten days.")],
    contexts=[common_pb2.Context(chunk_id="c", document_id="d", text="Ten days.")],
    subject_id="q1",
)


class Ctx:
    async def send_initial_metadata(self, metadata: Any) -> None:
        pass


def test_a_policy_digest_is_a_hash_of_its_content() -> None:
    assert Policy().digest == Policy().digest and len(Policy().digest) == 16
    assert Policy(grounding_threshold=0.7).digest != Policy().digest
    assert Policy(pii_entities=("PERSON",)).digest != Policy().digest


async def _labels(servicer: GuardrailServicer) -> list[str]:
    """The labels of a CheckInput, a CheckOutput and a CheckOutputStream verdict, in that order."""

    async def stream() -> AsyncIterator[pb.CheckOutputStreamRequest]:
        yield pb.CheckOutputStreamRequest(
            header=pb.CheckOutputHeader(tenant_id="acme", subject_id="q1", contexts=ANSWER.contexts)
        )
        yield pb.CheckOutputStreamRequest(sentence=ANSWER.sentences[0])

    ctx: Any = Ctx()
    streamed = [v async for v in servicer.CheckOutputStream(stream(), ctx)]
    return [
        (await servicer.CheckInput(ASK, ctx)).policy_version,
        (await servicer.CheckOutput(ANSWER, ctx)).policy_version,
        *(v.policy_version for v in streamed),
    ]


async def test_verdicts_and_their_events_carry_the_current_version_label(tmp_path: Path) -> None:
    published: list[GuardrailVerdict] = []

    async def publish(v: GuardrailVerdict) -> None:
        published.append(v)

    servicer = GuardrailServicer(
        Guard(None), PolicyStore(tmp_path), publish, 1000, InMemoryTenantDirectory([TenantId("acme")])
    )
    ctx: Any = None
    assert await _labels(servicer) == ["default"] * 3
    assert [e.policy_version for e in published] == ["default"] * 3

    stored = await servicer.PutPolicy(
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
    assert (stored.version, stored.label, stored.current) == (1, "v1", True)
    published.clear()
    assert await _labels(servicer) == ["v1"] * 3
    assert [e.policy_version for e in published] == ["v1"] * 3

    await servicer.ApplyPolicyRef(pb.ApplyPolicyRefRequest(tenant_id="acme", name="permissive"), ctx)
    assert await _labels(servicer) == ["v2"] * 3
    await servicer.RollbackPolicy(pb.RollbackPolicyRequest(tenant_id="acme", version=1), ctx)
    published.clear()
    assert await _labels(servicer) == ["v1"] * 3
    assert [e.policy_version for e in published] == ["v1"] * 3
