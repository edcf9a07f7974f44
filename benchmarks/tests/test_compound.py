"""Compound questions of the agents benchmark: deterministic pairing, the template, the union of
judgments, recall/nDCG@20 over deduplicated document ids (checked against trec_eval through pytrec_eval)
and the paired bootstrap interval."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest
import pytrec_eval

from isthmus_bench.compound import (
    CompoundQuestion,
    compound_questions,
    dedup,
    join,
    mean,
    ndcg_at,
    paired_delta,
    recall_at,
    recall_ceiling,
    score,
    union_qrels,
)


def _collection(n: int) -> tuple[dict[str, str], dict[str, dict[str, int]]]:
    queries = {f"q{i}": f"question number {i} about topic {i % 7} ." for i in range(n)}
    qrels = {f"q{i}": {f"d{i}": 1 + i % 3, f"d{(i + 1) % n}": 1} for i in range(n)}
    return queries, qrels


# -- the template --------------------------------------------------------------------------------------


def test_join_drops_the_first_questions_trailing_punctuation_and_keeps_the_second_as_is() -> None:
    first = (
        "what similarity laws must be obeyed when constructing aeroelastic models of heated high speed "
        "aircraft ."
    )
    second = (
        "what are the structural and aeroelastic problems associated with flight of high speed aircraft ."
    )
    assert join(first, second) == (
        "what similarity laws must be obeyed when constructing aeroelastic models of heated high speed "
        "aircraft? Also, what are the structural and aeroelastic problems associated with flight of high "
        "speed aircraft ."
    )
    assert join("Is it hot?!  ", "Is it wet?") == "Is it hot? Also, Is it wet?"
    assert join("no punctuation", "second") == "no punctuation? Also, second"


def test_join_collapses_whitespace_inside_the_questions() -> None:
    assert join("what is\n  a  wing .\n", "\tand a\nflap") == "what is a wing? Also, and a flap"


# -- judgments -----------------------------------------------------------------------------------------


def test_union_qrels_keeps_relevant_documents_with_their_highest_grade() -> None:
    assert union_qrels({"a": 1, "b": 3, "c": 0}, {"b": 2, "d": 4, "e": -1}) == {"a": 1, "b": 3, "d": 4}


# -- pairing -------------------------------------------------------------------------------------------


def test_pairing_is_deterministic_per_seed_and_differs_between_seeds() -> None:
    queries, qrels = _collection(30)
    a = compound_questions(queries, qrels, 10, seed=7)
    b = compound_questions(queries, qrels, 10, seed=7)
    c = compound_questions(queries, qrels, 10, seed=8)
    assert a == b
    assert [q.query_ids for q in a] != [q.query_ids for q in c]


def test_a_compound_question_keeps_both_originals_and_the_union_of_their_judgments() -> None:
    queries, qrels = _collection(30)
    for q in compound_questions(queries, qrels, 15, seed=1):
        first, second = q.query_ids
        assert first != second
        assert q.question_id == f"{first}+{second}"
        assert q.parts == (queries[first], queries[second])
        assert q.text == join(queries[first], queries[second])
        assert q.qrels == union_qrels(qrels[first], qrels[second])


def test_more_pairs_than_one_shuffle_gives_are_new_pairs_never_repeated() -> None:
    queries, qrels = _collection(10)  # one shuffle gives 5 pairs; 45 exist
    got = compound_questions(queries, qrels, 40, seed=3)
    assert len(got) == 40
    assert len({frozenset(q.query_ids) for q in got}) == 40


def test_all_distinct_pairs_when_more_are_asked_for_than_exist() -> None:
    queries, qrels = _collection(5)
    got = compound_questions(queries, qrels, 100, seed=0)
    assert {frozenset(q.query_ids) for q in got} == {
        frozenset((a, b)) for a in queries for b in queries if a < b
    }


def test_unjudged_or_only_irrelevant_queries_are_never_paired() -> None:
    queries, qrels = _collection(12)
    queries["unjudged"] = "a question nobody judged"
    queries["irrelevant"] = "a question judged only irrelevant"
    qrels["irrelevant"] = {"d1": 0}
    used = {qid for q in compound_questions(queries, qrels, 60, seed=2) for qid in q.query_ids}
    assert "unjudged" not in used and "irrelevant" not in used


def test_pairs_longer_than_max_chars_are_passed_over() -> None:
    queries, qrels = _collection(12)
    queries["q0"] = "long " * 100
    got = compound_questions(queries, qrels, 30, seed=4, max_chars=200)
    assert got and all(len(q.text) <= 200 for q in got)
    assert all("q0" not in q.query_ids for q in got)


def test_pairing_needs_two_judged_queries_and_a_positive_count() -> None:
    queries, qrels = _collection(1)
    with pytest.raises(ValueError, match="two judged queries"):
        compound_questions(queries, qrels, 1)
    queries, qrels = _collection(4)
    with pytest.raises(ValueError, match="at least 1"):
        compound_questions(queries, qrels, 0)


# -- scoring -------------------------------------------------------------------------------------------


def test_dedup_keeps_each_document_at_its_first_rank() -> None:
    assert dedup(["a", "b", "a", "c", "b", "d"]) == ["a", "b", "c", "d"]


def test_scores_by_hand() -> None:
    qrels = {"a": 2, "b": 1, "x": 0}
    ranked = ["z", "a", "a", "x", "b"]  # deduplicated: z a x b
    assert recall_at(ranked, qrels) == 1.0
    assert recall_at(ranked, qrels, k=2) == 0.5
    dcg = 2 / math.log2(3) + 1 / math.log2(5)
    ideal = 2 / math.log2(2) + 1 / math.log2(3)
    assert ndcg_at(ranked, qrels) == pytest.approx(dcg / ideal)
    assert score([], qrels).recall == 0.0 and score([], qrels).ndcg == 0.0


def test_repeated_documents_do_not_push_relevant_ones_past_the_cut() -> None:
    qrels = {"r": 1}
    ranked = ["a"] * 25 + ["r"]  # 26 chunk contexts, 2 documents
    assert recall_at(ranked, qrels) == 1.0
    assert ndcg_at(ranked, qrels) == pytest.approx(1 / math.log2(3))


def test_recall_and_ndcg_at_20_match_trec_eval() -> None:
    rng = random.Random(11)
    docs = [f"d{i}" for i in range(60)]
    qrels: dict[str, dict[str, int]] = {}
    runs: dict[str, list[str]] = {}
    for q in range(40):
        judged = rng.sample(docs, rng.randint(1, 12))
        qrels[f"q{q}"] = {d: rng.randint(1, 4) for d in judged}
        runs[f"q{q}"] = rng.sample(docs, rng.randint(0, 35))
    # trec_eval ranks by descending score: the rank order as strictly decreasing scores
    trec_run = {q: {d: float(100 - r) for r, d in enumerate(ranked)} for q, ranked in runs.items()}
    evaluator = pytrec_eval.RelevanceEvaluator(qrels, {"ndcg_cut.20", "recall.20"})
    reference = evaluator.evaluate({q: r for q, r in trec_run.items() if r})
    for q, ranked in runs.items():
        expected = reference.get(q, {"ndcg_cut_20": 0.0, "recall_20": 0.0})
        got = score(ranked, qrels[q])
        assert got.ndcg == pytest.approx(expected["ndcg_cut_20"], abs=1e-9), q
        assert got.recall == pytest.approx(expected["recall_20"], abs=1e-9), q


def test_a_question_without_relevant_documents_cannot_be_scored() -> None:
    with pytest.raises(ValueError):
        recall_at(["a"], {"a": 0})
    with pytest.raises(ValueError):
        ndcg_at(["a"], {})


# -- comparison ----------------------------------------------------------------------------------------


def test_paired_delta_is_the_mean_difference_with_a_seeded_interval_around_it() -> None:
    rng = np.random.default_rng(5)
    baseline = rng.uniform(0, 1, 200).tolist()
    candidate = [b + 0.1 + float(e) for b, e in zip(baseline, rng.normal(0, 0.05, 200), strict=True)]
    d = paired_delta(candidate, baseline, seed=1)
    assert d.n == 200
    assert d.mean == pytest.approx(mean(candidate) - mean(baseline))
    assert d.low < d.mean < d.high
    assert 0.08 < d.low and d.high < 0.12
    assert paired_delta(candidate, baseline, seed=1) == d


def test_paired_delta_of_identical_scores_is_exactly_zero() -> None:
    d = paired_delta([0.2, 0.5, 0.9], [0.2, 0.5, 0.9])
    assert (d.mean, d.low, d.high) == (0.0, 0.0, 0.0)


def test_paired_delta_needs_pairs() -> None:
    with pytest.raises(ValueError, match="length"):
        paired_delta([1.0], [1.0, 2.0])
    with pytest.raises(ValueError, match="no paired"):
        paired_delta([], [])


def test_compound_question_is_a_value() -> None:
    q = CompoundQuestion("a+b", "A? Also, B", ("a", "b"), ("A", "B"), {"d": 1})
    assert q == CompoundQuestion("a+b", "A? Also, B", ("a", "b"), ("A", "B"), {"d": 1})


def test_the_recall_ceiling_counts_what_k_slots_can_hold() -> None:
    def q(n_relevant: int) -> CompoundQuestion:
        rel = {f"d{i}": 1 for i in range(n_relevant)}
        return CompoundQuestion("a+b", "A? Also, B", ("a", "b"), ("A", "B"), rel)

    assert recall_ceiling([q(10), q(40)], k=20) == pytest.approx((1.0 + 0.5) / 2)
    assert recall_ceiling([q(3)], k=20) == 1.0
