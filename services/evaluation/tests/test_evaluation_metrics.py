from __future__ import annotations

import math

import pytest

from isthmus_core.errors import InvalidArgument
from isthmus_core.testing.infra import shared_datasets
from isthmus_evaluation.datasets import load_beir
from isthmus_evaluation.metrics import RunMetrics, chunk_hits_to_doc_run, evaluate_run, percentile


def _ranked(doc_ids: list[str]) -> dict[str, float]:
    """A run ranking ``doc_ids`` in the given order (strictly decreasing scores)."""
    return {doc_id: float(len(doc_ids) - i) for i, doc_id in enumerate(doc_ids)}


def _dcg(gains: list[int]) -> float:
    return sum(g / math.log2(rank + 2) for rank, g in enumerate(gains))


QRELS = {"q1": {"a": 3, "b": 2, "c": 1}, "q2": {"x": 1}}


def test_perfect_run_scores_one() -> None:
    run = {"q1": _ranked(["a", "b", "c", "n1"]), "q2": _ranked(["x", "n2"])}
    m = evaluate_run(QRELS, run)
    assert isinstance(m, RunMetrics)
    assert m.ndcg_at_10 == pytest.approx(1.0)
    assert m.recall_at_100 == pytest.approx(1.0)
    assert m.mrr_at_10 == pytest.approx(1.0)
    assert m.n_queries == 2
    assert set(m.per_query) == {"q1", "q2"}


def test_reversed_run_scores_lower() -> None:
    perfect = evaluate_run(QRELS, {"q1": _ranked(["a", "b", "c"])})
    reversed_ = evaluate_run(QRELS, {"q1": _ranked(["c", "b", "a"])})
    assert reversed_.per_query["q1"]["ndcg_at_10"] < perfect.per_query["q1"]["ndcg_at_10"]
    # all relevant documents are still retrieved, and the first hit is relevant
    assert reversed_.per_query["q1"]["recall_at_100"] == pytest.approx(1.0)
    assert reversed_.per_query["q1"]["mrr_at_10"] == pytest.approx(1.0)


def test_hand_checked_example_uses_linear_gain() -> None:
    qrels = {"q": {"a": 3, "b": 2, "c": 1, "d": 0}}
    # ranks: n1, b, d, a, n2 ; c not retrieved
    m = evaluate_run(qrels, {"q": _ranked(["n1", "b", "d", "a", "n2"])})
    expected_ndcg = _dcg([0, 2, 0, 3, 0]) / _dcg([3, 2, 1])
    assert m.ndcg_at_10 == pytest.approx(expected_ndcg)
    assert m.recall_at_100 == pytest.approx(2 / 3)
    assert m.mrr_at_10 == pytest.approx(1 / 2)


def test_mrr_counts_only_the_top_ten() -> None:
    qrels = {"q": {"rel": 1}}
    ranking = [f"n{i}" for i in range(10)] + ["rel"]  # relevant at rank 11
    m = evaluate_run(qrels, {"q": _ranked(ranking)})
    assert m.mrr_at_10 == 0.0
    assert m.ndcg_at_10 == 0.0
    assert m.recall_at_100 == pytest.approx(1.0)


def test_mrr_cut_breaks_ties_as_ndcg_does() -> None:
    # eleven documents with the same score: trec_eval orders ties by descending id, so the cut at 10 and
    # nDCG@10 must agree on whether the relevant document is inside the top ten
    qrels = {"q": {"d00": 1}}
    ranking = {f"d{i:02d}": 1.0 for i in range(11)}
    m = evaluate_run(qrels, ranking_run := {"q": ranking})
    assert (m.mrr_at_10 > 0) == (m.ndcg_at_10 > 0)
    qrels_top = {"q": {"d10": 1}}
    top = evaluate_run(qrels_top, ranking_run)
    assert top.mrr_at_10 == pytest.approx(1.0) and top.ndcg_at_10 == pytest.approx(1.0)


def test_recall_at_100_ignores_rank_101() -> None:
    qrels = {"q": {"rel1": 1, "rel2": 1}}
    ranking = ["rel1"] + [f"n{i}" for i in range(99)] + ["rel2"]  # rel2 at rank 101
    m = evaluate_run(qrels, {"q": _ranked(ranking)})
    assert m.recall_at_100 == pytest.approx(0.5)


def test_map_at_100_by_hand() -> None:
    # q1: relevant a, b, c (graded; MAP is binary) ranked [a, n1, b, c]: AP = (1/1 + 2/3 + 3/4) / 3 = 29/36
    # q2: relevant x ranked [n2, x]: AP = 1/2 ; MAP = (29/36 + 18/36) / 2 = 47/72
    m = evaluate_run(QRELS, {"q1": _ranked(["a", "n1", "b", "c"]), "q2": _ranked(["n2", "x"])})
    assert m.per_query["q1"]["map_at_100"] == pytest.approx(29 / 36)
    assert m.per_query["q2"]["map_at_100"] == pytest.approx(1 / 2)
    assert m.map_at_100 == pytest.approx(47 / 72)


def test_map_at_100_ignores_rank_101() -> None:
    # rel1 at rank 1 (precision 1), rel2 at rank 101 (cut): AP = 1/2 (two relevant), not (1 + 2/101) / 2
    qrels = {"q": {"rel1": 1, "rel2": 1}}
    ranking = ["rel1"] + [f"n{i}" for i in range(99)] + ["rel2"]
    m = evaluate_run(qrels, {"q": _ranked(ranking)})
    assert m.map_at_100 == pytest.approx(0.5)


def test_missing_and_empty_queries_count_as_zero() -> None:
    qrels = {"q1": {"a": 1}, "q2": {"b": 1}, "q3": {"c": 1}}
    m = evaluate_run(qrels, {"q1": _ranked(["a"]), "q3": {}})
    assert m.n_queries == 3
    zero = {"ndcg_at_10": 0.0, "recall_at_100": 0.0, "mrr_at_10": 0.0, "map_at_100": 0.0}
    assert m.per_query["q2"] == zero
    assert m.per_query["q3"] == zero
    assert m.ndcg_at_10 == pytest.approx(1 / 3)
    assert m.mrr_at_10 == pytest.approx(1 / 3)


def test_empty_run_scores_zero() -> None:
    m = evaluate_run(QRELS, {})
    assert (m.ndcg_at_10, m.recall_at_100, m.mrr_at_10, m.n_queries) == (0.0, 0.0, 0.0, 2)


def test_unjudged_run_queries_are_ignored() -> None:
    with_extra = evaluate_run(QRELS, {"q1": _ranked(["a"]), "zz": _ranked(["a"])})
    without = evaluate_run(QRELS, {"q1": _ranked(["a"])})
    assert with_extra == without
    assert "zz" not in with_extra.per_query


def test_empty_qrels_rejected() -> None:
    with pytest.raises(InvalidArgument, match="empty qrels"):
        evaluate_run({}, {"q": {"a": 1.0}})


def test_non_finite_score_rejected() -> None:
    with pytest.raises(InvalidArgument, match=r"score of document 'a' for query 'q1' is nan"):
        evaluate_run(QRELS, {"q1": {"a": float("nan")}})


def test_non_integer_relevance_rejected() -> None:
    with pytest.raises(InvalidArgument, match=r"relevance of document 'a' for query 'q' must be an integer"):
        evaluate_run({"q": {"a": 0.5}}, {"q": {"a": 1.0}})  # type: ignore[dict-item]


def test_ideal_run_on_cranfield_scores_one_and_half_run_less() -> None:
    ds = load_beir(shared_datasets("cranfield"))
    ideal = {qid: {doc: float(rel) for doc, rel in judged.items()} for qid, judged in ds.qrels.items()}
    m = evaluate_run(ds.qrels, ideal)
    assert m.n_queries == len(ds.queries)
    assert m.ndcg_at_10 == pytest.approx(1.0)
    assert m.recall_at_100 == pytest.approx(1.0)
    half = dict(list(ideal.items())[: len(ideal) // 2])
    assert evaluate_run(ds.qrels, half).ndcg_at_10 == pytest.approx((len(ideal) // 2) / len(ideal))


# ------------------------------------------------------------------------------ chunk_hits_to_doc_run


def test_chunk_hits_aggregate_by_max() -> None:
    hits = [("d1", 0.9), ("d2", 0.8), ("d1", 0.7), ("d3", 0.6), ("d2", 0.5)]
    assert chunk_hits_to_doc_run(hits) == {"d1": 0.9, "d2": 0.8, "d3": 0.6}
    assert list(chunk_hits_to_doc_run(hits)) == ["d1", "d2", "d3"]


def test_chunk_hits_rank_order_even_when_unsorted() -> None:
    hits = [("d2", 0.1), ("d1", 0.2), ("d2", 0.9)]
    assert list(chunk_hits_to_doc_run(hits).items()) == [("d2", 0.9), ("d1", 0.2)]


def test_chunk_hits_ties_keep_first_appearance() -> None:
    assert list(chunk_hits_to_doc_run([("b", 1.0), ("a", 1.0), ("c", 1.0)])) == ["b", "a", "c"]


def test_chunk_hits_empty_and_nan() -> None:
    assert chunk_hits_to_doc_run([]) == {}
    with pytest.raises(InvalidArgument, match="NaN"):
        chunk_hits_to_doc_run([("d", float("nan"))])


# ------------------------------------------------------------------------------------------ percentile


def test_percentile_median_and_extremes() -> None:
    values = [5.0, 1.0, 4.0, 2.0, 3.0]
    ordered = sorted(values)
    assert percentile(values, 50) == ordered[len(ordered) // 2]
    assert percentile(values, 0) == min(values)
    assert percentile(values, 100) == max(values)


def test_percentile_interpolates_linearly() -> None:
    lo, hi = 10.0, 20.0
    assert percentile([lo, hi], 25) == pytest.approx(lo + 0.25 * (hi - lo))


def test_percentile_accepts_generators() -> None:
    assert percentile((float(i) for i in range(101)), 95) == pytest.approx(95.0)


@pytest.mark.parametrize(
    ("values", "q", "message"),
    [
        ([], 50, "no values"),
        ([1.0], -1, "within 0..100"),
        ([1.0], 101, "within 0..100"),
        ([1.0, float("inf")], 50, "non-finite"),
    ],
)
def test_percentile_errors(values: list[float], q: float, message: str) -> None:
    with pytest.raises(InvalidArgument, match=message):
        percentile(values, q)
