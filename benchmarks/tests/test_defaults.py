"""The defaults benchmark's pure parts: its offline fusion must order exactly as the retrieval service's,
the leave-one-dataset-out choice must never look at the held-out dataset, and the PRF helpers. The whole
harness needs the datasets and the bundled embedder: run ``python -m isthmus_bench.defaults``."""

from __future__ import annotations

import numpy as np
import pytest

from isthmus_bench.defaults import fuse, keyword_form, lodo, rm3_weights, rocchio, tuned_by_folds
from isthmus_retrieval.fusion import reciprocal_rank_fusion, relative_score_fusion


def _lists(seed: int) -> tuple[list[str], np.ndarray, list[str], np.ndarray]:
    rng = np.random.default_rng(seed)
    pool = [f"c{i}" for i in range(60)]
    sparse = list(rng.choice(pool, 30, replace=False))
    dense = list(rng.choice(pool, 30, replace=False))
    return (
        sparse,
        np.sort(rng.uniform(0, 20, 30))[::-1],
        dense,
        np.sort(rng.uniform(0.3, 0.9, 30))[::-1],
    )


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("alpha", [0.3, 0.5, 0.7])
def test_offline_fusion_orders_as_the_service_does(seed: int, alpha: float) -> None:
    s_ids, s_sc, d_ids, d_sc = _lists(seed)
    lists = [(s_ids, s_sc), (d_ids, d_sc)]
    weights = [1 - alpha, alpha]
    mine = fuse("rs", lists, weights, ["bm25", "dense"])
    theirs = relative_score_fusion(
        [list(zip(s_ids, s_sc.tolist(), strict=True)), list(zip(d_ids, d_sc.tolist(), strict=True))], weights
    )
    assert [i for i, _ in mine] == [i for i, _ in theirs]
    assert np.allclose([s for _, s in mine], [s for _, s in theirs])
    mine = fuse("rrf", lists, weights, ["bm25", "dense"], k=60)
    theirs = reciprocal_rank_fusion([s_ids, d_ids], k=60, weights=weights)
    assert [i for i, _ in mine] == [i for i, _ in theirs]


def test_score_fusions_give_a_missing_item_the_lists_lowest_value() -> None:
    lists = [(["a", "b"], np.array([10.0, 2.0])), (["b", "c"], np.array([0.9, 0.1]))]
    fused = dict(fuse("tmm", lists, [0.5, 0.5], ["bm25", "dense"]))
    # tmm: bm25 / 10 (a 1.0, b 0.2, c gets bm25's lowest 0.2); dense (s + 1) / 1.9 (c gets 1.1 / 1.9)
    assert fused["a"] == pytest.approx(0.5 * 1.0 + 0.5 * 1.1 / 1.9)
    assert fused["c"] == pytest.approx(0.5 * 0.2 + 0.5 * 1.1 / 1.9)


def test_lodo_chooses_on_the_other_datasets_only() -> None:
    scores = {
        "x": {"A": 0.9, "B": 0.1},  # A wins here only
        "y": {"A": 0.2, "B": 0.5},
        "z": {"A": 0.3, "B": 0.4},
    }
    chosen = lodo(scores, ["A", "B"])
    assert {d: c for d, (c, _) in chosen.items()} == {"x": "B", "y": "A", "z": "A"}
    # x held out: B is better on y and z; the means are over the other datasets only
    assert [m for _, m in chosen.values()] == pytest.approx([0.45, 0.6, 0.55])


def test_rm3_mixes_query_and_feedback_terms() -> None:
    feedback = [(["wing", "flutter", "flutter"], 1.0), (["flutter", "panel"], 1.0)]
    # P(w|R): flutter 1/3 + 1/4, panel 1/4, wing 1/6
    w = rm3_weights(["wing"], feedback, n_terms=3, lam=0.5)
    assert w == pytest.approx({"wing": 0.5 + 0.5 / 6, "flutter": 0.5 * 7 / 12, "panel": 0.5 / 4})
    w = rm3_weights(["wing"], feedback, n_terms=1, lam=0.7)  # only the best feedback term is kept
    assert w == pytest.approx({"wing": 0.7, "flutter": 0.3})
    assert rm3_weights(["wing"], [], n_terms=5, lam=0.5) == {"wing": 1.0}


def test_rocchio_moves_the_query_towards_the_feedback_and_stays_unit_length() -> None:
    q = np.array([1.0, 0.0], dtype=np.float32)
    out = rocchio(q, np.array([[0.0, 1.0]], dtype=np.float32), 1.0)
    assert np.allclose(out, [2**-0.5, 2**-0.5])
    assert np.allclose(rocchio(q, np.zeros((0, 2), dtype=np.float32), 1.0), q)


def test_keyword_form_drops_stop_words_but_never_everything() -> None:
    assert keyword_form("What is the flutter of a wing?", ["what", "is", "the", "of", "a"]) == "flutter wing"
    assert keyword_form("what is", ["what", "is"]) == "what is"


def test_per_tenant_tuning_scores_each_fold_with_a_choice_made_on_the_other_folds() -> None:
    default = np.full(10, 0.5)
    better = np.full(10, 0.6)
    # "lucky" leads on the other folds of every fold, so it is chosen for each; its one bad query is
    # scored held out, where it was not chosen on
    lucky = np.full(10, 0.9)
    lucky[3] = 0.0
    held, chosen = tuned_by_folds({"d": default, "b": better, "l": lucky}, ["d", "b", "l"], "d", folds=10)
    assert chosen == ["l"] * 10
    assert held[3] == 0.0 and held.mean() == pytest.approx(0.81)
    # the gate: a choice that beats the default by no more than the margin is not taken
    held, chosen = tuned_by_folds({"d": default, "b": better}, ["d", "b"], "d", folds=5, margin=0.2)
    assert chosen == ["d"] * 5 and np.array_equal(held, default)
