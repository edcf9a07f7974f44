"""The tenant's LLM token budget in the answer pipeline: checked before anything runs (a spent budget
reaches neither the guardrail nor retrieval), charged after the generation with the prompt's and every
streamed sentence's tokens (also when the output guardrail withholds the answer), not charged when no
generation ran."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence

import pytest

from isthmus_agent_orchestrator.budget import TokenMeter, estimate_tokens
from isthmus_agent_orchestrator.pipeline import Orchestrator
from isthmus_core.auth.access_file import AccessFile, Quota, StaticAccess
from isthmus_core.auth.quotas import TenantQuotas
from isthmus_core.contracts.events import AnswerProduced
from isthmus_core.errors import QuotaExceeded
from isthmus_core.ports.generator import AnswerSentence, CitedSpan, Context, Generation
from isthmus_core.ports.guard import Action, Finding, Verdict

CTX = [
    Context("c1", "d1", "Gliders fly without engines. They soar in thermals and ridge lift.", start=0),
    Context("c2", "d2", "Hangars open at eight. Fuel is sold at the tower.", start=0),
]
SOAR = AnswerSentence("They soar in thermals.", (CitedSpan("c1", "d1", 29, 51),))
FUEL = AnswerSentence("Fuel is sold at the tower.", (CitedSpan("c2", "d2", 23, 49),))
QUESTION = "How do gliders stay up?"


class Session:
    def __init__(self, blocked: str) -> None:
        self.blocked = blocked

    async def check(self, sentence: AnswerSentence) -> Verdict:
        if self.blocked and self.blocked in sentence.text:
            return Verdict(Action.BLOCK, (Finding("policy.denied_term", "denied"),))
        return Verdict(Action.ALLOW, (), sentence.text)

    async def aclose(self) -> None:
        return None


class Guard:
    def __init__(self, block_input: bool = False, block_output: str = "") -> None:
        self.block_input = block_input
        self.block_output = block_output
        self.inputs: list[str] = []

    async def check_input(self, tenant_id: str, text: str, subject_id: str, origin: str = "user") -> Verdict:
        self.inputs.append(text)
        if self.block_input:
            return Verdict(Action.BLOCK, (Finding("prompt_injection.rule", "rule"),))
        return Verdict(Action.ALLOW, (), text)

    async def open_output_check(
        self, tenant_id: str, subject_id: str, contexts: Sequence[Context]
    ) -> Session:
        return Session(self.block_output)


class Searcher:
    def __init__(self) -> None:
        self.calls = 0

    async def search(
        self, tenant_id: str, query: str, top_k: int, principals: Sequence[str]
    ) -> list[Context]:
        self.calls += 1
        return CTX[:top_k]


class Scripted:
    name = "scripted"

    def __init__(self, *sentences: AnswerSentence) -> None:
        self.sentences = sentences

    async def generate(self, question: str, contexts: Sequence[Context]) -> Generation:
        raise NotImplementedError

    async def stream(self, question: str, contexts: Sequence[Context]) -> AsyncIterator[AnswerSentence]:
        for s in self.sentences:
            yield s


async def _drop(ev: AnswerProduced) -> None:
    return None


def quotas(budget: int) -> TenantQuotas:
    return TenantQuotas(StaticAccess(AccessFile().with_quota("acme", Quota(llm_tokens_per_day=budget))))


def orchestrator(
    q: TenantQuotas, guard: Guard, searcher: Searcher, *sentences: AnswerSentence
) -> Orchestrator:
    return Orchestrator(guard, searcher, Scripted(*sentences), _drop, top_k=2, quotas=q)


def test_estimate_is_four_characters_a_token_rounded_up() -> None:
    assert [estimate_tokens(t) for t in ("", "abc", "abcd", "abcde")] == [0, 1, 1, 2]
    meter = TokenMeter(QUESTION, CTX)
    meter.add(SOAR)
    assert meter.tokens == sum(estimate_tokens(t) for t in (QUESTION, CTX[0].text, CTX[1].text, SOAR.text))


async def test_an_answer_charges_its_prompt_and_completion() -> None:
    q = quotas(10_000)
    answer = await orchestrator(q, Guard(), Searcher(), SOAR, FUEL).ask("acme", QUESTION)
    assert not answer.blocked and len(answer.sentences) == 2
    meter = TokenMeter(QUESTION, CTX)
    meter.add(SOAR)
    meter.add(FUEL)
    assert q.tokens_used("acme") == meter.tokens > 0


async def test_a_withheld_answer_is_charged_for_what_was_generated() -> None:
    q = quotas(10_000)
    answer = await orchestrator(q, Guard(block_output="soar"), Searcher(), SOAR, FUEL).ask("acme", QUESTION)
    assert answer.blocked
    meter = TokenMeter(QUESTION, CTX)
    meter.add(SOAR)  # generated, then withheld; FUEL was never asked for
    assert q.tokens_used("acme") == meter.tokens


async def test_no_generation_no_charge() -> None:
    q = quotas(10_000)
    answer = await orchestrator(q, Guard(block_input=True), Searcher(), SOAR).ask("acme", QUESTION)
    assert answer.blocked and q.tokens_used("acme") == 0


async def test_a_spent_budget_is_refused_before_anything_runs() -> None:
    q = quotas(10)
    guard, searcher = Guard(), Searcher()
    orch = orchestrator(q, guard, searcher, SOAR)
    await orch.ask("acme", QUESTION)  # within the budget when it started; it ends past it
    assert q.tokens_used("acme") > 10
    calls = searcher.calls
    with pytest.raises(QuotaExceeded) as info:
        await orch.ask("acme", QUESTION)
    assert info.value.violations[0][0] == "tenant:acme/llm_tokens_per_day"
    assert info.value.retry_after_s is not None and info.value.retry_after_s > 0
    assert searcher.calls == calls and len(guard.inputs) == 1  # the refused call reached nothing
    await orch.ask("other", QUESTION)  # another tenant's budget is its own
