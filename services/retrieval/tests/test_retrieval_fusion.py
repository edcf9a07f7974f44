"""Fusion (pure): reciprocal-rank and relative-score fusion."""

from __future__ import annotations

import math

import pytest

from isthmus_core.errors import InvalidArgument
from isthmus_retrieval.fusion import RRF_K, min_max_normalise, reciprocal_rank_fusion, relative_score_fusion


def ids(fused: list[tuple[str, float]]) -> list[str]:
    return [i for i, _ in fused]


# -- reciprocal rank fusion -------------------------------------------------------------------------


def test_rrf_single_list_keeps_order_and_scores_by_rank() -> None:
    fused = reciprocal_rank_fusion([["a", "b", "c"]])
    assert ids(fused) == ["a", "b", "c"]
    for rank, (_, score) in enumerate(fused, start=1):
        assert score == pytest.approx(1 / (RRF_K + rank))


def test_rrf_sums_contributions_across_lists() -> None:
    fused = dict(reciprocal_rank_fusion([["a", "b", "c"], ["c", "b", "d"]], k=10))
    assert fused["b"] == pytest.approx(1 / 12 + 1 / 12)
    assert fused["c"] == pytest.approx(1 / 13 + 1 / 11)
    assert fused["a"] == pytest.approx(1 / 11)
    assert fused["d"] == pytest.approx(1 / 13)


def test_rrf_item_in_both_lists_beats_items_in_one() -> None:
    fused = reciprocal_rank_fusion([["x", "both", "y"], ["z", "both", "w"]])
    assert ids(fused)[0] == "both"
    assert set(ids(fused)) == {"x", "y", "z", "w", "both"}


def test_rrf_weights_scale_each_list() -> None:
    lists = [["a", "b"], ["b", "a"]]
    assert ids(reciprocal_rank_fusion(lists, weights=[0.9, 0.1]))[0] == "a"
    assert ids(reciprocal_rank_fusion(lists, weights=[0.1, 0.9]))[0] == "b"
    fused = dict(reciprocal_rank_fusion(lists, k=0, weights=[0.25, 0.75]))
    assert fused["a"] == pytest.approx(0.25 / 1 + 0.75 / 2)


def test_rrf_zero_weight_follows_the_other_list() -> None:
    dense, bm25 = ["d1", "d2", "d3"], ["b1", "d3", "b2"]
    fused = reciprocal_rank_fusion([dense, bm25], weights=[1.0, 0.0])
    assert ids(fused)[:3] == dense


def test_rrf_equal_weights_order_as_plain_rrf() -> None:
    lists = [["a", "b", "c", "d"], ["d", "c", "e", "a"]]
    plain = reciprocal_rank_fusion(lists)
    half = reciprocal_rank_fusion(lists, weights=[0.5, 0.5])
    assert ids(half) == ids(plain)
    for (_, p), (_, h) in zip(plain, half, strict=True):
        assert h == pytest.approx(p / 2)


def test_rrf_ties_break_by_first_appearance() -> None:
    # a and x both sit at rank 1 of one list: same score; a appears first
    assert ids(reciprocal_rank_fusion([["a"], ["x"]])) == ["a", "x"]
    assert ids(reciprocal_rank_fusion([["x"], ["a"]])) == ["x", "a"]


def test_rrf_counts_a_repeated_item_once_per_list() -> None:
    fused = dict(reciprocal_rank_fusion([["a", "a", "b"]], k=0))
    assert fused["a"] == pytest.approx(1.0)
    assert fused["b"] == pytest.approx(1 / 3)


def test_rrf_accepts_any_hashable_ids() -> None:
    assert [i for i, _ in reciprocal_rank_fusion([[3, 1], [1, 2]])] == [1, 3, 2]


def test_rrf_empty_input() -> None:
    assert reciprocal_rank_fusion([]) == []
    assert reciprocal_rank_fusion([[], []]) == []


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"weights": [1.0]}, "2 result lists"),
        ({"weights": [1.0, -0.5]}, "non-negative"),
        ({"weights": [1.0, math.nan]}, "finite"),
        ({"k": -1}, "k must be"),
    ],
)
def test_rrf_rejects_bad_arguments(kwargs: dict[str, object], match: str) -> None:
    with pytest.raises(InvalidArgument, match=match):
        reciprocal_rank_fusion([["a"], ["b"]], **kwargs)  # type: ignore[arg-type]


# -- relative score fusion --------------------------------------------------------------------------


def test_min_max_normalise_matches_weaviates_example() -> None:
    # Weaviate's documented example: [1, 8, 6, 11] → [0, 0.7, 0.5, 1]
    normalised = [s for _, s in min_max_normalise([("a", 1), ("b", 8), ("c", 6), ("d", 11)])]
    assert normalised == pytest.approx([0.0, 0.7, 0.5, 1.0])


def test_min_max_normalise_equal_scores_all_get_one() -> None:
    assert [s for _, s in min_max_normalise([("a", 3.0), ("b", 3.0)])] == [1.0, 1.0]
    assert min_max_normalise([]) == []


def test_relative_score_weighted_sum_of_normalised_scores() -> None:
    dense = [("a", 0.9), ("b", 0.5), ("c", 0.1)]
    bm25 = [("c", 12.0), ("a", 7.0), ("d", 2.0)]
    fused = dict(relative_score_fusion([dense, bm25], [0.7, 0.3]))
    assert fused["a"] == pytest.approx(0.7 * 1.0 + 0.3 * (7 - 2) / (12 - 2))
    assert fused["b"] == pytest.approx(0.7 * (0.5 - 0.1) / (0.9 - 0.1))
    assert fused["c"] == pytest.approx(0.7 * 0.0 + 0.3 * 1.0)
    assert fused["d"] == pytest.approx(0.0)
    ordered = relative_score_fusion([dense, bm25], [0.7, 0.3])
    assert [s for _, s in ordered] == sorted((s for _, s in ordered), reverse=True)


def test_relative_score_keeps_score_gaps_that_rrf_loses() -> None:
    # "a" wins the dense side by a mile, "b" wins BM25 by a hair: relative score prefers "a"
    dense = [("a", 0.95), ("b", 0.10), ("c", 0.05)]
    bm25 = [("b", 10.0), ("a", 9.9), ("c", 1.0)]
    assert ids(relative_score_fusion([dense, bm25], [0.5, 0.5]))[0] == "a"
    rrf = dict(reciprocal_rank_fusion([[i for i, _ in dense], [i for i, _ in bm25]]))
    assert rrf["a"] == pytest.approx(rrf["b"])  # RRF sees only ranks: a tie


def test_relative_score_alpha_extremes() -> None:
    dense = [("d", 0.9), ("x", 0.2)]
    bm25 = [("b", 5.0), ("x", 1.0)]
    assert ids(relative_score_fusion([dense, bm25], [1.0, 0.0]))[0] == "d"
    assert ids(relative_score_fusion([dense, bm25], [0.0, 1.0]))[0] == "b"


def test_relative_score_repeated_item_uses_its_best_score() -> None:
    fused = dict(relative_score_fusion([[("a", 1.0), ("b", 3.0), ("a", 5.0)]], [1.0]))
    assert fused == {"a": pytest.approx(1.0), "b": pytest.approx(0.0)}


def test_relative_score_rejects_bad_input() -> None:
    with pytest.raises(InvalidArgument, match="weights"):
        relative_score_fusion([[("a", 1.0)], [("b", 1.0)]], [1.0])
    with pytest.raises(InvalidArgument, match="non-finite"):
        relative_score_fusion([[("a", math.inf)]], [1.0])
    assert relative_score_fusion([[], []], [0.5, 0.5]) == []
