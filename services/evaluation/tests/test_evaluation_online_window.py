"""Online evaluation's pure parts: the window a request names, a sampled answer as a RagSample, and the
nDCG@10 of sampled answers to the questions of the tenant's evaluation set."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from isthmus_core.contracts.events import (
    AnswerProduced,
    AnswerSample,
    ChunkProvenance,
    Citation,
    Provenance,
    SampleContext,
    SampleSentence,
)
from isthmus_core.errors import InvalidArgument
from isthmus_evaluation.metrics import evaluate_run
from isthmus_evaluation.online import (
    EvalSet,
    TimeWindow,
    eval_set_scores,
    normalise_question,
    rag_sample,
    ranked_documents,
    resolve_window,
)
from isthmus_evaluation.rag_metrics import (
    SampleCitation,
)
from isthmus_evaluation.rag_metrics import (
    SampleContext as RagContext,
)
from isthmus_evaluation.rag_metrics import (
    SampleSentence as RagSentence,
)

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


def test_windows() -> None:
    assert resolve_window(3600, None, None, NOW) == TimeWindow(NOW - timedelta(hours=1), NOW)
    assert resolve_window(0, None, None, NOW) == TimeWindow(None, NOW)  # everything kept
    start, end = NOW - timedelta(days=2), NOW - timedelta(days=1)
    assert resolve_window(0, start, end, NOW) == TimeWindow(start, end)
    assert resolve_window(0, start, None, NOW) == TimeWindow(start, NOW)
    assert resolve_window(0, None, end, NOW) == TimeWindow(None, end)


@pytest.mark.parametrize(
    ("seconds", "start", "end", "match"),
    [
        (60, NOW - timedelta(hours=1), None, "not both"),
        (60, None, NOW, "not both"),
        (-1, None, None, "negative"),
        (10**12, None, None, "at most"),
        (0, NOW, NOW - timedelta(seconds=1), "must be after start"),
        (0, NOW, NOW, "must be after start"),
        (0, NOW + timedelta(hours=1), None, "must be after start"),
    ],
)
def test_bad_windows_are_invalid(
    seconds: int, start: datetime | None, end: datetime | None, match: str
) -> None:
    with pytest.raises(InvalidArgument, match=match):
        resolve_window(seconds, start, end, NOW)


def test_a_sample_becomes_the_judges_sample() -> None:
    s = AnswerSample(
        question="q?",
        answer="A. B.",
        sentences=[
            SampleSentence(
                text="A.", citations=[Citation(chunk_id="c1", document_id="d1", start=10, end=12)]
            ),
            SampleSentence(text="B."),
        ],
        contexts=[SampleContext(chunk_id="c1", document_id="d1", start=10, text="A. more", score=0.7)],
    )
    r = rag_sample(s)
    assert (r.question, r.answer, r.qrels, r.reference) == ("q?", "A. B.", None, None)
    assert r.sentences == (RagSentence("A.", (SampleCitation("c1", 10, 12),)), RagSentence("B.", ()))
    assert r.contexts == (RagContext("c1", "d1", 10, "A. more"),)


def test_documents_rank_at_their_first_chunk() -> None:
    run = ranked_documents(["d2", "d1", "d2", "d3"])
    assert sorted(run, key=lambda d: -run[d]) == ["d2", "d1", "d3"]


SET = EvalSet.of(
    "club",
    {"q1": "How do gliders fly?", "q2": "When do hangars open?", "q3": "Unjudged question"},
    {"q1": {"d1": 2, "d3": 1}, "q2": {"d2": 1}},
)


def answer(question: str, retrieved: list[str], tenant: str = "acme", sampled: bool = True) -> AnswerProduced:
    return AnswerProduced(
        tenant_id=tenant,
        idempotency_key="k",
        question_id="a",
        latency_ms=1.0,
        provenance=Provenance(
            retrieved=[ChunkProvenance(chunk_id=f"{d}#{i}", document_id=d) for i, d in enumerate(retrieved)]
        ),
        sample=AnswerSample(question=question, answer="x") if sampled else None,
    )


def test_an_eval_set_question_is_scored_ndcg_from_what_was_retrieved() -> None:
    sets = {"acme": SET}
    expected = evaluate_run({"q1": {"d1": 2, "d3": 1}}, {"q1": {"d3": 3.0, "d9": 2.0, "d1": 1.0}}).ndcg_at_10
    got = eval_set_scores(answer("  how do GLIDERS   fly? ", ["d3", "d9", "d3", "d1"]), sets)
    assert got == {"ndcg_at_10": pytest.approx(expected)} and 0 < expected < 1
    assert eval_set_scores(answer("How do gliders fly?", ["d1", "d3"]), sets) == {
        "ndcg_at_10": pytest.approx(1.0)
    }
    assert eval_set_scores(answer("When do hangars open?", []), sets) == {"ndcg_at_10": 0.0}


def test_other_questions_tenants_and_unsampled_answers_get_no_ndcg() -> None:
    sets = {"acme": SET}
    assert eval_set_scores(answer("How do gliders land?", ["d1"]), sets) == {}
    assert eval_set_scores(answer("Unjudged question", ["d1"]), sets) == {}  # not in the qrels
    assert eval_set_scores(answer("How do gliders fly?", ["d1"], tenant="globex"), sets) == {}
    assert eval_set_scores(answer("How do gliders fly?", ["d1"], sampled=False), sets) == {}


def test_normalised_questions() -> None:
    assert normalise_question("  How\tDo  GLIDERS fly?\n") == "how do gliders fly?"
