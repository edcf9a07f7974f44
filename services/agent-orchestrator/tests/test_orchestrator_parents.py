"""Parent-child chunks: the orchestrator answers from the parent section a retrieved child names (its
text and offsets), each parent once; citations point into the parent."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from isthmus.common.v1 import common_pb2
from isthmus.retrieval.v1 import retrieval_pb2
from isthmus_agent_orchestrator.agents.testing import RuleGuard
from isthmus_agent_orchestrator.api import answer_pb
from isthmus_agent_orchestrator.clients import contexts_of_hits
from isthmus_agent_orchestrator.extractive import ExtractiveGenerator
from isthmus_agent_orchestrator.parents import answer_context
from isthmus_agent_orchestrator.pipeline import Orchestrator
from isthmus_core.contracts.events import AnswerProduced
from isthmus_core.ports.generator import PARENT_END_KEY, PARENT_START_KEY, PARENT_TEXT_KEY, Context

DOCUMENT = (
    "Club rules.\n\n"
    "Launching. The winch pulls the cable at ninety kilometres per hour. "
    "Pilots release the cable at the top of the climb. "
    "A weak link protects the glider from overload.\n\n"
    "Landing. Land into the wind on the grass strip."
)
PARENT = DOCUMENT[DOCUMENT.index("Launching") : DOCUMENT.index("overload.") + len("overload.")]
PSTART = DOCUMENT.index(PARENT)


def _hit(chunk_id: str, phrase: str, score: float, parent: bool = True) -> retrieval_pb2.Hit:
    start = DOCUMENT.index(phrase)
    meta = (
        {PARENT_TEXT_KEY: PARENT, PARENT_START_KEY: str(PSTART), PARENT_END_KEY: str(PSTART + len(PARENT))}
        if parent
        else {}
    )
    return retrieval_pb2.Hit(
        context=common_pb2.Context(
            chunk_id=chunk_id, document_id="rules", text=phrase, start=start, score=score
        ),
        end=start + len(phrase),
        metadata=meta,
    )


HITS = [
    _hit("c2", "Pilots release the cable at the top of the climb.", 0.9),
    _hit("c3", "A weak link protects the glider from overload.", 0.8),  # same parent: kept once
    _hit("c5", "Land into the wind on the grass strip.", 0.5, parent=False),
]


def test_hits_of_one_parent_become_one_context_holding_the_parents_text() -> None:
    contexts = contexts_of_hits(HITS, "bge")
    assert [(c.chunk_id, c.text, c.start, c.end) for c in contexts] == [
        ("c2", PARENT, PSTART, PSTART + len(PARENT)),  # the best child's rank, the parent's text
        ("c5", "Land into the wind on the grass strip.", DOCUMENT.index("Land into"), len(DOCUMENT)),
    ]
    assert contexts[0].score == pytest.approx(0.9) and contexts[0].embedding_model == "bge"


def test_metadata_that_does_not_describe_a_parent_of_the_chunk_is_ignored() -> None:
    child = Context("c", "d", "the cable", start=40, end=49)
    for bad in (
        {PARENT_TEXT_KEY: "x" * 10, PARENT_START_KEY: "0", PARENT_END_KEY: "ten"},
        {PARENT_TEXT_KEY: "x" * 10, PARENT_START_KEY: "0", PARENT_END_KEY: "12"},  # length disagrees
        {PARENT_TEXT_KEY: "x" * 10, PARENT_START_KEY: "0", PARENT_END_KEY: "10"},  # child outside it
        {PARENT_START_KEY: "0", PARENT_END_KEY: "100"},
    ):
        assert answer_context(child, bad) == child


class Searcher:
    def __init__(self) -> None:
        self.published: list[AnswerProduced] = []

    async def search(
        self, tenant_id: str, query: str, top_k: int, principals: Sequence[str]
    ) -> list[Context]:
        return contexts_of_hits(HITS[:top_k])

    async def publish(self, ev: AnswerProduced) -> None:
        self.published.append(ev)


async def test_the_answer_is_built_from_the_parent_text_and_cites_inside_the_parent() -> None:
    guard, searcher = RuleGuard(), Searcher()
    orchestrator = Orchestrator(guard, searcher, ExtractiveGenerator(), searcher.publish, top_k=3)
    # the answer lies in the parent but in no retrieved child: only the parent's text holds it
    answer = await orchestrator.ask("t", "How fast does the winch pull the cable?")
    assert "ninety kilometres per hour" in answer.text
    cited = [c for c in answer.citations if c.chunk_id == "c2"]
    assert cited and all(PSTART <= c.start < c.end <= PSTART + len(PARENT) for c in cited)
    assert any("ninety" in DOCUMENT[c.start : c.end] for c in cited)
    # the guardrail checked the answer against the parent's text, sent once
    assert [c.text for c in guard.sessions[0].contexts].count(PARENT) == 1
    [event] = searcher.published
    first = event.provenance.retrieved[0]
    assert (first.chunk_id, first.start, first.end) == ("c2", PSTART, PSTART + len(PARENT))
    # the contexts an Ask with include_contexts returns are those: the parent's text at its offsets
    first_ctx = answer_pb(answer, include_contexts=True).contexts[0]
    assert (first_ctx.chunk_id, first_ctx.start, first_ctx.end, first_ctx.text) == (
        "c2",
        PSTART,
        PSTART + len(PARENT),
        PARENT,
    )
    assert DOCUMENT[first_ctx.start : first_ctx.end] == first_ctx.text
