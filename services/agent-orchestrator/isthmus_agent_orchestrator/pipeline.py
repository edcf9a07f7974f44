"""The answer pipeline: input guardrail → retrieval → generation → output guardrail (every sentence).

Both ``Ask`` and ``AskStream`` consume :meth:`Orchestrator.run`; the unary call just keeps the final
event. The output guardrail sees every generated sentence before the caller does — no path bypasses it —
and its verdict decides what the caller gets: ALLOW shows the sentence, REDACT shows the guardrail's
redacted text (citations kept), BLOCK withholds the rest of the answer. The answer's output verdict is
the guardrail's own, combined over the sentences (strongest action, every finding).

Pure: the guardrail and retrieval are reached through the :class:`GuardClient` and :class:`Searcher`
Protocols (gRPC implementations in :mod:`isthmus_agent_orchestrator.clients`).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Protocol, assert_never

from isthmus_agent_orchestrator.budget import TokenMeter
from isthmus_core.auth.stack import NoQuotas, QuotaGate
from isthmus_core.contracts.events import AnswerProduced, Citation
from isthmus_core.errors import InvalidArgument
from isthmus_core.ports.generator import AnswerSentence, Context, Generator
from isthmus_core.ports.guard import Action, Verdict
from isthmus_core.ports.guard_client import GuardClient, OutputCheck, combine_output_verdicts


class Searcher(Protocol):
    async def search(
        self, tenant_id: str, query: str, top_k: int, principals: Sequence[str]
    ) -> list[Context]:
        """Best first. ``principals``: the caller's, for document ACLs; empty = only documents without
        an ACL (there is no "see everything" scope)."""


class Stage(StrEnum):
    INPUT_GUARD = "input_guard"
    RETRIEVAL = "retrieval"
    GENERATION = "generation"
    OUTPUT_GUARD = "output_guard"
    DONE = "done"


@dataclass(frozen=True, slots=True)
class StageEvent:
    stage: Stage
    detail: str = ""


@dataclass(frozen=True, slots=True)
class SentenceEvent:
    sentence: AnswerSentence


@dataclass
class Answer:
    question_id: str
    sentences: list[AnswerSentence] = field(default_factory=list)
    input_verdict: Verdict | None = None
    output_verdict: Verdict | None = None
    blocked: bool = False
    message: str = ""  # the text shown instead of an answer when blocked or abstained
    generator: str = ""
    latency_ms: float = 0.0
    #: milliseconds spent in each stage (generation and output checks interleave: each is its own share)
    stage_ms: dict[Stage, float] = field(default_factory=dict)

    @property
    def text(self) -> str:
        return self.message or " ".join(s.text for s in self.sentences)

    @property
    def citations(self) -> list[Citation]:
        seen: dict[tuple[str, int, int], Citation] = {}
        for s in self.sentences:
            for c in s.citations:
                seen.setdefault(
                    (c.chunk_id, c.start, c.end),
                    Citation(
                        chunk_id=c.chunk_id,
                        document_id=c.document_id,
                        start=c.start,
                        end=c.end,
                        source_name=c.source_name,
                        title=c.title,
                        uri=c.uri,
                    ),
                )
        return list(seen.values())


@dataclass(frozen=True, slots=True)
class FinalEvent:
    answer: Answer


AskEvent = StageEvent | SentenceEvent | FinalEvent


def _reasons(v: Verdict) -> str:
    return "; ".join(f.message for f in v.findings) or "policy"


def _shown(sentence: AnswerSentence, verdict: Verdict) -> AnswerSentence | None:
    """What the caller gets of a checked sentence; ``None``: withhold the rest of the answer."""
    match verdict.action:
        case Action.ALLOW:
            return sentence
        case Action.REDACT:
            # the guardrail's text replaces the sentence; an empty one shows nothing of it
            return AnswerSentence(verdict.text, sentence.citations)
        case Action.BLOCK:
            return None
        case _:
            assert_never(verdict.action)


class Orchestrator:
    def __init__(
        self,
        guard: GuardClient,
        searcher: Searcher,
        generator: Generator,
        publish_answer: Callable[[AnswerProduced], Awaitable[None]],
        *,
        top_k: int = 5,
        max_question_chars: int = 2000,
        quotas: QuotaGate | None = None,
    ) -> None:
        self._guard = guard
        self._searcher = searcher
        self._generator = generator
        self._publish = publish_answer
        self._top_k = top_k
        self._max_chars = max_question_chars
        self._quotas = quotas or NoQuotas()  # the tenant's LLM token budget (budget.py)

    async def run(
        self, tenant_id: str, question: str, top_k: int = 0, principals: Sequence[str] = ()
    ) -> AsyncIterator[AskEvent]:
        if not tenant_id:
            raise InvalidArgument("tenant_id is required")
        if not question.strip():
            raise InvalidArgument("question is empty")
        if len(question) > self._max_chars:
            raise InvalidArgument(f"question is {len(question)} characters; the limit is {self._max_chars}")
        k = top_k or self._top_k
        if not 1 <= k <= 50:
            raise InvalidArgument(f"top_k must be between 1 and 50, got {k}")
        self._quotas.check_tokens(tenant_id)
        t0 = time.perf_counter()
        answer = Answer(question_id=uuid.uuid4().hex, generator=self._generator.name)
        contexts: list[Context] = []

        def spent(stage: Stage, since: float) -> float:
            now = time.perf_counter()
            answer.stage_ms[stage] = answer.stage_ms.get(stage, 0.0) + (now - since) * 1000
            return now

        yield StageEvent(Stage.INPUT_GUARD)
        t = time.perf_counter()
        verdict = await self._guard.check_input(tenant_id, question, answer.question_id)
        spent(Stage.INPUT_GUARD, t)
        answer.input_verdict = verdict
        query = question
        match verdict.action:
            case Action.ALLOW:
                pass
            case Action.REDACT:
                query = verdict.text  # empty: nothing of the question may go on (checked below)
            case Action.BLOCK:
                query = ""
            case _:
                assert_never(verdict.action)
        if not query:
            answer.blocked = True
            answer.message = f"Your question was blocked by the input guardrail: {_reasons(verdict)}"
        if not answer.blocked:
            yield StageEvent(Stage.RETRIEVAL)
            t = time.perf_counter()
            contexts = await self._searcher.search(tenant_id, query, k, tuple(principals))
            spent(Stage.RETRIEVAL, t)
            yield StageEvent(Stage.RETRIEVAL, f"{len(contexts)} contexts")
            yield StageEvent(Stage.GENERATION)
            checked: list[tuple[AnswerSentence, Verdict]] = []
            session: OutputCheck | None = None
            t = time.perf_counter()
            meter = TokenMeter(query, contexts)
            try:
                async for sentence in self._generator.stream(query, contexts):
                    meter.add(sentence)
                    t = spent(Stage.GENERATION, t)
                    if not sentence.citations:
                        continue  # uncited text (an abstention, a preamble) is never shown as an answer
                    if session is None:  # opened lazily: no call when nothing is to be checked
                        session = await self._guard.open_output_check(tenant_id, answer.question_id, contexts)
                    out = await session.check(sentence)
                    t = spent(Stage.OUTPUT_GUARD, t)
                    checked.append((sentence, out))
                    shown = _shown(sentence, out)
                    if shown is None:
                        answer.blocked = True
                        answer.message = f"The answer was withheld by the output guardrail: {_reasons(out)}"
                        break
                    if shown.text:
                        answer.sentences.append(shown)
                        yield SentenceEvent(shown)
                    t = time.perf_counter()  # the caller's time reading the sentence is no stage's
                spent(Stage.GENERATION, t)
            finally:
                self._quotas.charge_tokens(tenant_id, meter.tokens)
                if session is not None:
                    t = time.perf_counter()
                    await session.aclose()
                    spent(Stage.OUTPUT_GUARD, t)
            yield StageEvent(Stage.OUTPUT_GUARD)
            answer.output_verdict = combine_output_verdicts(
                checked, " ".join(s.text for s in answer.sentences)
            )
            if not answer.sentences and not answer.message:
                answer.message = "I could not find an answer in the indexed documents."
        answer.latency_ms = (time.perf_counter() - t0) * 1000
        await self._publish(
            AnswerProduced(
                tenant_id=tenant_id,
                idempotency_key=f"{tenant_id}/{answer.question_id}",
                question_id=answer.question_id,
                latency_ms=answer.latency_ms,
                citations=answer.citations,
                blocked=answer.blocked,
                generator=answer.generator,
                retrieved=len(contexts),
            )
        )
        yield StageEvent(Stage.DONE)
        yield FinalEvent(answer)

    async def ask(
        self, tenant_id: str, question: str, top_k: int = 0, principals: Sequence[str] = ()
    ) -> Answer:
        final: Answer | None = None
        async for ev in self.run(tenant_id, question, top_k, principals):
            if isinstance(ev, FinalEvent):
                final = ev.answer
        assert final is not None
        return final
