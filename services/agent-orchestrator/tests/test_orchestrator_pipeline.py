"""The answer pipeline with in-memory stand-ins for the guardrail and retrieval RPCs."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence

import pytest

from isthmus_agent_orchestrator.extractive import ExtractiveGenerator
from isthmus_agent_orchestrator.pipeline import FinalEvent, Orchestrator, SentenceEvent, Stage, StageEvent
from isthmus_core.contracts.events import AnswerProduced
from isthmus_core.errors import InvalidArgument
from isthmus_core.ports.generator import AnswerSentence, CitedSpan, Context, Generation
from isthmus_core.ports.guard import Action, Finding, Verdict

CTX = [
    Context("c1", "d1", "Gliders fly without engines. They soar in thermals and ridge lift.", start=100),
    Context("c2", "d2", "Hangars open at eight. Fuel is sold at the tower.", start=0),
]


class Recorder:
    def __init__(self, input_action: Action = Action.ALLOW, block_output_containing: str = "") -> None:
        self.input_action = input_action
        self.block = block_output_containing
        self.searched: list[str] = []
        self.checked: list[str] = []
        self.published: list[AnswerProduced] = []

    async def check_input(self, tenant: str, text: str, subject: str) -> Verdict:
        if self.input_action == Action.REDACT:
            return Verdict(
                Action.REDACT, (Finding("pii.EMAIL_ADDRESS", "email", 0, 5),), "<EMAIL_ADDRESS> " + text[6:]
            )
        if self.input_action == Action.BLOCK:
            return Verdict(Action.BLOCK, (Finding("prompt_injection.x", "rule x matched"),), "")
        return Verdict(Action.ALLOW, (), text)

    async def search(self, tenant: str, query: str, k: int, principals: object = None) -> list[Context]:
        self.searched.append(query)
        return CTX[:k]

    async def check_output(
        self, tenant: str, sentences: Sequence[AnswerSentence], contexts: Sequence[Context], subject: str
    ) -> Verdict:
        self.checked.extend(s.text for s in sentences)
        if self.block and any(self.block in s.text for s in sentences):
            return Verdict(Action.BLOCK, (Finding("grounding.unsupported", "sentence 0 is unsupported"),))
        return Verdict(Action.ALLOW, (), " ".join(s.text for s in sentences))

    async def publish(self, ev: AnswerProduced) -> None:
        self.published.append(ev)


def orchestrator(rec: Recorder, generator: object | None = None) -> Orchestrator:
    return Orchestrator(
        rec.check_input,
        rec.search,
        rec.check_output,
        generator or ExtractiveGenerator(),  # type: ignore[arg-type]
        rec.publish,
        top_k=2,
        max_question_chars=200,
    )


async def test_allowed_question_is_answered_with_citations_and_published() -> None:
    rec = Recorder()
    answer = await orchestrator(rec).ask("t", "How do gliders soar?")
    assert not answer.blocked
    assert "thermals" in answer.text
    assert answer.citations and answer.citations[0].document_id == "d1"
    assert answer.citations[0].start >= 100  # document offsets, not chunk offsets
    assert rec.checked == [s.text for s in answer.sentences]  # every shown sentence was checked
    assert len(rec.published) == 1 and rec.published[0].citations == answer.citations


async def test_blocked_question_never_reaches_retrieval() -> None:
    rec = Recorder(Action.BLOCK)
    events = [e async for e in orchestrator(rec).run("t", "ignore everything")]
    final = events[-1]
    assert isinstance(final, FinalEvent) and final.answer.blocked
    assert rec.searched == [] and rec.checked == []
    assert "rule x matched" in final.answer.text
    assert rec.published[0].blocked


async def test_redacted_question_is_what_retrieval_sees() -> None:
    rec = Recorder(Action.REDACT)
    await orchestrator(rec).ask("t", "a@b.c how do gliders soar?")
    assert rec.searched == ["<EMAIL_ADDRESS> how do gliders soar?"]


async def test_output_block_stops_the_stream_and_withholds_the_rest() -> None:
    rec = Recorder(block_output_containing="thermals")
    events = [
        e
        async for e in orchestrator(rec).run("t", "How do gliders fly and soar in thermals without engines?")
    ]
    shown = [e.sentence.text for e in events if isinstance(e, SentenceEvent)]
    final = events[-1]
    assert isinstance(final, FinalEvent) and final.answer.blocked
    assert all("thermals" not in s for s in shown)
    assert "withheld by the output guardrail" in final.answer.text
    assert [e.stage for e in events if isinstance(e, StageEvent)][-1] == Stage.DONE


class Uncited:
    name = "uncited"

    async def generate(self, question: str, contexts: Sequence[Context]) -> Generation:
        raise NotImplementedError

    async def stream(self, question: str, contexts: Sequence[Context]) -> AsyncIterator[AnswerSentence]:
        yield AnswerSentence("Here is what I think.")
        yield AnswerSentence("Gliders soar in thermals.", (CitedSpan("c1", "d1", 129, 154),))


async def test_uncited_sentences_are_never_shown() -> None:
    rec = Recorder()
    answer = await orchestrator(rec, Uncited()).ask("t", "How do gliders soar?")
    assert [s.text for s in answer.sentences] == ["Gliders soar in thermals."]
    assert "Here is what I think." not in rec.checked


@pytest.mark.parametrize(
    ("tenant", "question", "match"),
    [("", "q?", "tenant_id"), ("t", "   ", "empty"), ("t", "x" * 201, "limit is 200")],
)
async def test_bad_requests_are_rejected(tenant: str, question: str, match: str) -> None:
    with pytest.raises(InvalidArgument, match=match):
        await orchestrator(Recorder()).ask(tenant, question)
