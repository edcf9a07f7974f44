"""The judges benchmark's parts that need no model nor server: the labelled pairs, the statistics, the
verdict parser, the RAGAS failure reasons and the report. The whole harness needs the grounding model, a
llama.cpp server and ragas: run ``make bench-judges``."""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

import pytest

from isthmus_bench.judges import (
    JudgeRun,
    Pair,
    PortScorer,
    Scored,
    agreement,
    auc,
    balanced_accuracy,
    build_pairs,
    cohen_kappa,
    judge_summary,
    parse_args,
    pearson,
    rag_sample,
    ragas_failure,
    ranks,
    render,
    run_judge,
    spearman,
)
from isthmus_core.ports.judge import JudgeFailed
from isthmus_core.testing.fake_judge import FakeJudge


def _dataset(
    n_support: int = 10, n_contra: int = 6, n_nei: int = 6
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    claims: list[dict[str, Any]] = []
    corpus: dict[str, Any] = {}
    for i in range(n_support + n_contra + n_nei):
        label = (
            "SUPPORT" if i < n_support else "CONTRADICT" if i < n_support + n_contra else "NOT_ENOUGH_INFO"
        )
        doc = f"d{i}"
        corpus[doc] = {"_id": doc, "title": f"Title {i}", "text": f"Abstract {i}."}
        evidence = (
            {} if label == "NOT_ENOUGH_INFO" else {doc: {"label": label, "sentences": [f"Abstract {i}."]}}
        )
        claims.append({"_id": str(i), "claim": f"claim {i}", "label": label, "evidence": evidence})
    return claims, corpus


def test_pairs_are_balanced_labelled_and_deterministic() -> None:
    claims, corpus = _dataset()
    pairs = build_pairs(claims, corpus, 12, seed=17)
    assert len(pairs) == 12
    assert Counter(p.kind for p in pairs) == {"support": 6, "contradict": 3, "unrelated": 3}
    assert sum(p.gold for p in pairs) == 6
    by_claim = {c["_id"]: c for c in claims}
    for p in pairs:
        claim = by_claim[p.claim_id]
        assert p.answer == claim["claim"]
        assert p.context == f"Title {p.doc_id[1:]}.\n\nAbstract {p.doc_id[1:]}."
        if p.kind == "support":
            assert (claim["label"], p.gold, p.doc_id in claim["evidence"]) == ("SUPPORT", 1, True)
        elif p.kind == "contradict":
            assert (claim["label"], p.gold, p.doc_id in claim["evidence"]) == ("CONTRADICT", 0, True)
        else:
            # an unrelated abstract: cited by another claim, never by this one
            assert p.gold == 0 and p.doc_id not in claim["evidence"]
            assert any(p.doc_id in c["evidence"] for c in claims)
    # each claim once
    assert len({p.claim_id for p in pairs}) == 12
    assert build_pairs(list(reversed(claims)), corpus, 12, seed=17) == pairs
    assert build_pairs(claims, corpus, 12, seed=18) != pairs


def test_unrelated_pairs_fill_in_when_contradicted_claims_run_out() -> None:
    claims, corpus = _dataset(n_support=10, n_contra=2, n_nei=8)
    pairs = build_pairs(claims, corpus, 16, seed=1)
    assert Counter(p.kind for p in pairs) == {"support": 8, "contradict": 2, "unrelated": 6}
    with pytest.raises(ValueError, match="SUPPORT claims"):
        build_pairs(claims, corpus, 24, seed=1)
    with pytest.raises(ValueError):
        build_pairs(claims, corpus, 1, seed=1)


def test_accuracy_statistics_against_hand_computed_values() -> None:
    gold = [1, 1, 1, 0]
    scores = [0.9, 0.6, 0.2, 0.7]  # verdicts 1 1 0 1
    # recall of class 1 = 2/3, of class 0 = 0/1
    assert balanced_accuracy(gold, scores) == pytest.approx(1 / 3)
    # faithful above the unfaithful one: 0.9 > 0.7 only of (0.9, 0.6, 0.2)
    assert auc(gold, scores) == pytest.approx(1 / 3)
    assert auc([1, 0], [0.5, 0.5]) == 0.5
    assert auc([1, 1], [0.1, 0.2]) is None
    assert balanced_accuracy([1, 1], [0.9, 0.1]) is None


def test_agreement_statistics_against_hand_computed_values() -> None:
    # 2x2 table: both 1: 2, both 0: 1, a1 b0: 1 -> po = 3/4, pe = (3/4)(2/4) + (1/4)(2/4) = 1/2
    assert cohen_kappa([1, 1, 0, 1], [1, 1, 0, 0]) == pytest.approx(0.5)
    assert cohen_kappa([1, 0], [0, 1]) == pytest.approx(-1.0)
    assert cohen_kappa([1, 1], [1, 1]) == 1.0
    assert cohen_kappa([], []) is None
    assert pearson([1, 2, 3], [2, 4, 7]) == pytest.approx(0.9933992677987828)
    assert pearson([1, 1, 1], [1, 2, 3]) is None
    assert ranks([10, 20, 20, 5]) == [2.0, 3.5, 3.5, 1.0]
    # monotone but not linear: Spearman 1, Pearson below
    assert spearman([1, 2, 3, 4], [1, 4, 9, 100]) == pytest.approx(1.0)


def _pairs() -> list[Pair]:
    return [
        Pair(f"p{i}", kind, str(i), f"d{i}", "a", "c", gold)
        for i, (kind, gold) in enumerate(
            [("support", 1), ("support", 1), ("contradict", 0), ("unrelated", 0)]
        )
    ]


def test_summary_counts_failures_apart_and_agreement_is_over_pairs_both_judged() -> None:
    pairs = _pairs()
    a = JudgeRun("a", scores={"p0": 0.9, "p1": 0.8, "p2": 0.1, "p3": 0.0}, seconds=dict.fromkeys(["p0"], 1.0))
    b = JudgeRun("b", scores={"p0": 1.0, "p2": 1.0}, failures={"p1": "invalid_json:syntax", "p3": "timeout"})
    summary = judge_summary(b, pairs)
    assert (summary["judged"], summary["failures"], summary["failure_rate"]) == (2, 2, 0.5)
    assert summary["failure_reasons"] == {"invalid_json:syntax": 1, "timeout": 1}
    assert summary["accuracy"] == 0.5  # p0 right, p2 wrong: failures are not counted as wrong nor right
    assert summary["accuracy_per_kind"] == {"support": 1.0, "contradict": 0.0}
    g = agreement(a, b, pairs)
    assert g["both_judged"] == 2
    assert g["verdict_agreement"] == 0.5
    table = render([judge_summary(a, pairs), summary], [g])
    assert "| b | 2 / 4 | 0.500 | 0.500 |" in table
    assert "invalid_json:syntax 1, timeout 1" in table
    assert "| a vs b | 2 | 0.500 |" in table


def test_run_judge_records_a_failure_with_its_code_and_goes_on() -> None:
    class Flaky:
        name = "flaky"
        model = "m"

        async def score(self, pair: Pair) -> Scored:
            if pair.kind == "contradict":
                raise JudgeFailed("unparseable", "no verdict")
            return Scored(1.0, 0.75)

    run = asyncio.run(run_judge(Flaky(), _pairs(), progress=False))
    assert run.failures == {"p2": "unparseable"}
    assert run.scores == {"p0": 1.0, "p1": 1.0, "p3": 1.0}
    assert run.continuous == {"p0": 0.75, "p1": 0.75, "p3": 0.75}
    assert set(run.seconds) == {"p0", "p1", "p2", "p3"}


def test_our_faithfulness_goes_through_score_sample_and_the_judge_port() -> None:
    context = "Aspirin lowers the risk of stroke in adults."
    faithful = Pair("s", "support", "1", "d1", "Aspirin lowers the risk of stroke.", context, 1)
    unrelated = Pair("u", "unrelated", "2", "d2", "Zinc cures the common cold quickly.", context, 0)
    judge = FakeJudge()
    scorer = PortScorer("offline", judge)
    yes, no = asyncio.run(scorer.score(faithful)), asyncio.run(scorer.score(unrelated))
    # faithfulness is score_sample's (the claim entailed or not); the continuous score is P(entailment)
    assert (yes.faithfulness, no.faithfulness) == (1.0, 0.0)
    assert yes.continuous > 0.5 > no.continuous
    # one entail call per pair, over the whole cited context; relevance is never asked
    assert [c[0] for c in judge.calls] == ["entail", "entail"]
    assert scorer.model == "fake:lexical"
    sample = rag_sample(faithful)
    assert sample.sentences[0].citations[0].end == len(context)
    assert sample.contexts[0].text == context


def test_a_judge_failure_of_ours_keeps_its_code() -> None:
    pair = Pair("s", "support", "1", "d1", "Aspirin lowers the risk of stroke.", "Aspirin works.", 1)
    with pytest.raises(JudgeFailed) as info:
        asyncio.run(PortScorer("llm", FakeJudge(failure="unparseable")).score(pair))
    assert info.value.failure == "unparseable"


def test_ragas_failures_get_short_reasons() -> None:
    class InstructorRetryException(Exception):
        pass

    missing = InstructorRetryException(
        "1 validation error for StatementGeneratorOutput\nstatements\n  Field required"
    )
    assert ragas_failure(missing) == "invalid_json:missing_field"
    assert ragas_failure(InstructorRetryException("Invalid JSON: EOF while parsing")) == "invalid_json:syntax"
    assert ragas_failure(TimeoutError()) == "timeout"

    class IncompleteOutputException(Exception):
        pass

    assert ragas_failure(IncompleteOutputException("The output is incomplete")) == "max_tokens"
    assert ragas_failure(RuntimeError("boom")) == "error:RuntimeError"


def test_arguments() -> None:
    args = parse_args(["--judges", "ragas,offline", "--samples", "10"])
    assert args.judges == ["ragas", "offline"]
    with pytest.raises(SystemExit):
        parse_args(["--judges", "deepeval"])
    with pytest.raises(SystemExit):
        parse_args(["--samples", "1"])
