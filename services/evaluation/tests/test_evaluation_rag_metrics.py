"""Answer metrics with a deterministic lexical judge: every expected value is worked out by hand below."""

from __future__ import annotations

import re
from collections.abc import Sequence

import pytest

from isthmus_core.ports.judge import Entailment, Judge, JudgeFailed
from isthmus_evaluation.rag_metrics import (
    ANSWER_RELEVANCE,
    CONTEXT_PRECISION,
    CONTEXT_RECALL,
    FAITHFULNESS,
    MALFORMED,
    RAG_METRICS,
    STOP_WORDS,
    RagSample,
    SampleCitation,
    SampleContext,
    SampleScores,
    SampleSentence,
    aggregate,
    average_precision,
    score_sample,
)

TENANT = "t-rag"
_WORD = re.compile(r"[^\W_]+")


def _content(text: str) -> set[str]:
    return {w.lower() for w in _WORD.findall(text)} - STOP_WORDS


class LexicalJudge:
    """Entails when every content word of the hypothesis is in the premise; relevance = the share of the
    query's content words found in the passage. Records its calls."""

    name = "fake:lexical"

    def __init__(self, fail_on: str = "", failure: str = "timeout", short: bool = False) -> None:
        self.entail_calls: list[list[tuple[str, str]]] = []
        self.relevance_calls: list[tuple[str, list[str]]] = []
        self._fail_on = fail_on
        self._failure = failure
        self._short = short

    async def entail(self, tenant_id: str, pairs: Sequence[tuple[str, str]]) -> list[Entailment]:
        assert tenant_id == TENANT
        self.entail_calls.append(list(pairs))
        if self._fail_on == "entail":
            raise JudgeFailed(self._failure, "the entailment model did not answer")
        out = [
            Entailment(1.0, 0.0, 0.0) if _content(h) <= _content(p) else Entailment(0.1, 0.8, 0.1)
            for p, h in pairs
        ]
        return out[:-1] if self._short else out

    async def relevance(self, tenant_id: str, query: str, passages: Sequence[str]) -> list[float]:
        assert tenant_id == TENANT
        self.relevance_calls.append((query, list(passages)))
        if self._fail_on == "relevance":
            raise JudgeFailed(self._failure, "the cross-encoder did not answer")
        q = _content(query)
        return [len(q & _content(p)) / len(q) for p in passages]


# c1 at offset 100 of d1: "Marmots hibernate in burrows." is [100, 129), "Pelicans eat fish." is [130, 148)
C1 = SampleContext("c1", "d1", 100, "Marmots hibernate in burrows. Pelicans eat fish.")
C2 = SampleContext("c2", "d2", 0, "Glaciers carve valleys.")
C3 = SampleContext("c3", "d3", 50, "Marmots sleep through winter.")
QUESTION = "Where do marmots hibernate?"  # content words: marmots, hibernate
SENTENCES = (
    # cites exactly its own words in c1: entailed
    SampleSentence("Marmots hibernate in burrows.", (SampleCitation("c1", 100, 129),)),
    # cites "Pelicans eat fish." only: "marmots" is not in that span (only elsewhere in c1): NOT entailed
    SampleSentence("Pelicans eat marmots.", (SampleCitation("c1", 130, 148),)),
    # cites nothing: judged against all contexts joined, which hold glaciers/carve/valleys: entailed
    SampleSentence("Glaciers carve valleys."),
    # only stop words: not a claim
    SampleSentence("Yes it is."),
)
ANSWER = " ".join(s.text for s in SENTENCES)


def _sample(**kw: object) -> RagSample:
    base: dict[str, object] = {
        "question": QUESTION,
        "answer": ANSWER,
        "sentences": SENTENCES,
        "contexts": (C1, C2, C3),
    }
    base.update(kw)
    return RagSample(**base)  # type: ignore[arg-type]


async def test_judge_scores_every_metric_with_two_calls() -> None:
    judge = LexicalJudge()
    assert isinstance(judge, Judge)
    out = await score_sample(_sample(), judge, TENANT)
    assert out.failure is None
    # faithfulness: 3 claims (the stop-word sentence is none), 2 entailed -> 2/3
    assert out.scores[FAITHFULNESS] == pytest.approx(2 / 3)
    # answer relevance: the answer holds both "marmots" and "hibernate" -> 2/2 = 1.0
    assert out.scores[ANSWER_RELEVANCE] == pytest.approx(1.0)
    # contexts' relevance: c1 holds both words (1.0), c2 none (0.0), c3 "marmots" only (0.5 >= RELEVANT_AT)
    # ranked relevant = [yes, no, yes]: AP = (1/1 + 2/3) / 2 = 5/6
    assert out.scores[CONTEXT_PRECISION] == pytest.approx(5 / 6)
    # neither reference nor qrels: no recall
    assert CONTEXT_RECALL not in out.scores
    # one entail call for the three claims, one relevance call for the answer and the three contexts
    assert len(judge.entail_calls) == 1
    premises = [p for p, _ in judge.entail_calls[0]]
    assert premises[0] == "Marmots hibernate in burrows."
    assert premises[1] == "Pelicans eat fish."
    assert "Glaciers carve valleys." in premises[2] and "Marmots sleep" in premises[2]
    assert judge.relevance_calls == [(QUESTION, [ANSWER, C1.text, C2.text, C3.text])]


async def test_context_order_matters_for_precision() -> None:
    # the same contexts, the irrelevant one first: [no, yes, yes] -> AP = (1/2 + 2/3) / 2 = 7/12
    out = await score_sample(_sample(contexts=(C2, C1, C3)), LexicalJudge(), TENANT)
    assert out.scores[CONTEXT_PRECISION] == pytest.approx(7 / 12)
    # relevant last: [no, no, yes] -> 1/3 ; none relevant -> 0.0 ; no context -> not applicable
    assert average_precision([False, False, True]) == pytest.approx(1 / 3)
    assert average_precision([False, False]) == 0.0
    assert average_precision([]) is None


async def test_reference_recall_is_the_share_of_reference_claims_entailed_by_all_contexts() -> None:
    # "Marmots hibernate in burrows." is in c1: entailed; "Marmots eat honey." has "honey" nowhere: not;
    # "It is." is no claim. Recall = 1/2
    ref = "Marmots hibernate in burrows. Marmots eat honey. It is."
    judge = LexicalJudge()
    out = await score_sample(_sample(reference=ref), judge, TENANT)
    assert out.scores[CONTEXT_RECALL] == pytest.approx(0.5)
    assert out.scores[FAITHFULNESS] == pytest.approx(2 / 3)  # unchanged by the reference
    assert len(judge.entail_calls) == 1 and len(judge.entail_calls[0]) == 3 + 2


async def test_qrels_decide_relevance_and_recall_without_asking_the_judge_about_contexts() -> None:
    # qrels: d1 relevant, d3 judged 0 (not relevant), d4 relevant but not retrieved
    judge = LexicalJudge()
    out = await score_sample(_sample(qrels={"d1": 1, "d3": 0, "d4": 2}), judge, TENANT)
    # [d1 yes, d2 no, d3 no] -> AP = (1/1) / 1 = 1.0, although the judge would call c3 relevant
    assert out.scores[CONTEXT_PRECISION] == pytest.approx(1.0)
    # relevant documents {d1, d4}, present {d1}: 1/2
    assert out.scores[CONTEXT_RECALL] == pytest.approx(0.5)
    # the relevance call holds the answer only
    assert judge.relevance_calls == [(QUESTION, [ANSWER])]
    # qrels with the relevant document last: [no, no, yes] -> 1/3
    out = await score_sample(_sample(qrels={"d3": 1}), LexicalJudge(), TENANT)
    assert out.scores[CONTEXT_PRECISION] == pytest.approx(1 / 3)
    assert out.scores[CONTEXT_RECALL] == pytest.approx(1.0)


async def test_blocked_answer_claims_nothing() -> None:
    judge = LexicalJudge()
    out = await score_sample(_sample(answer="", sentences=(), contexts=()), judge, TENANT)
    assert out == SampleScores(scores={})
    assert judge.entail_calls == [] and judge.relevance_calls == []
    # an abstention (a message without sentences) is judged for relevance only: "I could not find an
    # answer..." shares no word with the question -> 0.0; contexts still scored (5/6 as above)
    abstention = _sample(answer="I could not find an answer in the indexed documents.", sentences=())
    out = await score_sample(abstention, LexicalJudge(), TENANT)
    assert FAITHFULNESS not in out.scores
    assert out.scores[ANSWER_RELEVANCE] == 0.0
    assert out.scores[CONTEXT_PRECISION] == pytest.approx(5 / 6)


async def test_citation_of_no_context_supports_nothing() -> None:
    # the only claim cites a chunk that is not among the contexts: not entailed, and the judge not asked
    s = SampleSentence("Marmots hibernate in burrows.", (SampleCitation("elsewhere", 0, 29),))
    judge = LexicalJudge()
    out = await score_sample(_sample(sentences=(s,)), judge, TENANT)
    assert out.scores[FAITHFULNESS] == 0.0
    assert judge.entail_calls == []


@pytest.mark.parametrize("where", ["entail", "relevance"])
async def test_judge_failure_fails_the_sample_not_zero(where: str) -> None:
    out = await score_sample(_sample(), LexicalJudge(fail_on=where, failure="timeout"), TENANT)
    assert out.failure == "timeout"
    assert out.scores == {}
    assert "did not answer" in out.detail


async def test_a_judge_breaking_its_contract_is_a_malformed_failure() -> None:
    out = await score_sample(_sample(), LexicalJudge(short=True), TENANT)
    assert out.failure == MALFORMED and out.scores == {}


def test_aggregate_means_over_scored_samples_and_counts_failures_per_reason() -> None:
    scores = [
        SampleScores({FAITHFULNESS: 2 / 3, ANSWER_RELEVANCE: 1.0, CONTEXT_PRECISION: 5 / 6}),
        SampleScores(failure="timeout", detail="x"),
        SampleScores({FAITHFULNESS: 1.0, CONTEXT_PRECISION: 1.0, CONTEXT_RECALL: 0.5}),
        SampleScores(failure="timeout", detail="y"),
        SampleScores(failure="unparseable", detail="z"),
        SampleScores({}),  # a blocked answer: scored on nothing, not a failure
    ]
    agg = aggregate(scores)
    assert agg.samples == 6
    assert agg.failure_reasons == {"timeout": 2, "unparseable": 1}
    assert list(agg.metrics) == list(RAG_METRICS)
    # faithfulness over the two samples that have it: (2/3 + 1) / 2 = 5/6 — the failures are not zeros
    # (counting them as 0 would give 5/3 / 5 = 1/3)
    f = agg.metrics[FAITHFULNESS]
    assert f.mean == pytest.approx(5 / 6) and (f.n, f.failures) == (2, 3)
    assert agg.metrics[ANSWER_RELEVANCE].mean == pytest.approx(1.0) and agg.metrics[ANSWER_RELEVANCE].n == 1
    # (5/6 + 1) / 2 = 11/12
    assert agg.metrics[CONTEXT_PRECISION].mean == pytest.approx(11 / 12)
    assert agg.metrics[CONTEXT_RECALL].mean == pytest.approx(0.5) and agg.metrics[CONTEXT_RECALL].n == 1


def test_aggregate_of_only_failures_has_no_metric() -> None:
    agg = aggregate([SampleScores(failure="unavailable")])
    assert agg.samples == 1 and dict(agg.metrics) == {} and agg.failure_reasons == {"unavailable": 1}
