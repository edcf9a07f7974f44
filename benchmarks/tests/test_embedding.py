from __future__ import annotations

from pathlib import Path

import pytest

from isthmus_bench.embedding import format_table, load_texts, run


def test_generated_texts_when_the_corpus_is_absent(tmp_path: Path) -> None:
    texts, source = load_texts(5, corpus=tmp_path / "missing.jsonl")
    assert source == "generated sentences"
    assert len(texts) == 5 and all(t.strip() for t in texts)
    assert texts == load_texts(5, corpus=tmp_path / "missing.jsonl")[0]  # reproducible


def test_corpus_texts_join_title_and_text(tmp_path: Path) -> None:
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text(
        '{"_id": "1", "title": "Wings", "text": "Lift grows."}\n{"_id": "2", "title": "", "text": "Drag."}\n'
        '{"_id": "3", "title": "Unused", "text": "Beyond n."}\n'
    )
    texts, source = load_texts(2, corpus=corpus)
    assert texts == ["Wings\nLift grows.", "Drag."]
    assert source == str(corpus)


@pytest.mark.slow
def test_run_measures_every_path_on_the_same_vectors() -> None:
    result = run(n_texts=12, batch_size=4, callers=3)
    assert result["n_texts"] == 12
    for key in ("isthmus_texts_per_s", "raw_texts_per_s", "raw_row_wise_texts_per_s", "ratio"):
        assert result[key] > 0
    # the Isthmus path and the raw row-wise path compute the very same vectors
    assert result["max_abs_diff_vs_row_wise"] < 1e-5
    table = format_table(result, "test")
    assert "isthmus" in table and "texts/s" in table
