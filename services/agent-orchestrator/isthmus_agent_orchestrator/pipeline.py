"""The answer pipeline: input guardrail → retrieval → generation → output guardrail (every sentence).

Both ``Ask`` and ``AskStream`` consume :meth:`Orchestrator.run`; the unary call just keeps the final
event. The output guardrail sees every generated sentence before the caller does — no path bypasses it.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum

from isthmus_core.contracts.events import AnswerProduced, Citation
from isthmus_core.errors import InvalidArgument
from isthmus_core.ports.generator import AnswerSentence, Context, Generator
from isthmus_core.ports.guard import Action, Verdict

CheckInput = Callable[[str, str, str], Awaitable[Verdict]]  # tenant, text, subject id
#: tenant, query, top_k, principals (document ACLs; None = no ACL check)
Search = Callable[[str, str, int, Sequence[str] | None], Awaitable[list[Context]]]
CheckOutput = Callable[[str, Sequence[AnswerSentence], Sequence[Context], str], Awaitable[Verdict]]


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


class Orchestrator:
    def __init__(
        self,
        check_input: CheckInput,
        search: Search,
        check_output: CheckOutput,
        generator: Generator,
        publish_answer: Callable[[AnswerProduced], Awaitable[None]],
        *,
        top_k: int = 5,
        max_question_chars: int = 2000,
    ) -> None:
        self._check_input = check_input
        self._search = search
        self._check_output = check_output
        self._generator = generator
        self._publish = publish_answer
        self._top_k = top_k
        self._max_chars = max_question_chars

    async def run(
        self, tenant_id: str, question: str, top_k: int = 0, principals: Sequence[str] | None = None
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
        t0 = time.perf_counter()
        answer = Answer(question_id=uuid.uuid4().hex, generator=self._generator.name)
        contexts: list[Context] = []

        yield StageEvent(Stage.INPUT_GUARD)
        verdict = await self._check_input(tenant_id, question, answer.question_id)
        answer.input_verdict = verdict
        if verdict.action == Action.BLOCK:
            answer.blocked = True
            answer.message = f"Your question was blocked by the input guardrail: {_reasons(verdict)}"
        else:
            query = verdict.text if verdict.action == Action.REDACT and verdict.text else question
            yield StageEvent(Stage.RETRIEVAL)
            contexts = await self._search(tenant_id, query, k, principals)
            yield StageEvent(Stage.RETRIEVAL, f"{len(contexts)} contexts")
            yield StageEvent(Stage.GENERATION)
            async for sentence in self._generator.stream(query, contexts):
                if not sentence.citations:
                    continue  # uncited text (an abstention, a preamble) is never shown as an answer
                out = await self._check_output(tenant_id, [sentence], contexts, answer.question_id)
                if out.action == Action.BLOCK:
                    answer.blocked = True
                    answer.output_verdict = out
                    answer.message = f"The answer was withheld by the output guardrail: {_reasons(out)}"
                    break
                answer.sentences.append(sentence)
                yield SentenceEvent(sentence)
            yield StageEvent(Stage.OUTPUT_GUARD)
            if answer.output_verdict is None:
                answer.output_verdict = Verdict(Action.ALLOW, (), answer.text)
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
        self, tenant_id: str, question: str, top_k: int = 0, principals: Sequence[str] | None = None
    ) -> Answer:
        final: Answer | None = None
        async for ev in self.run(tenant_id, question, top_k, principals):
            if isinstance(ev, FinalEvent):
                final = ev.answer
        assert final is not None
        return final
