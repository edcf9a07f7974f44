"""The BM25 analyser: lower-casing, stopwords, Snowball stemming."""

from __future__ import annotations

import threading

import pytest

from isthmus_retrieval.analyzer import Analyzer


@pytest.fixture(scope="module")
def analyzer() -> Analyzer:
    return Analyzer()


def test_stems_word_forms_to_the_same_term(analyzer: Analyzer) -> None:
    running, runs, run = analyzer.terms(["running", "runs", "run"])
    assert running == runs == run
    assert len(run) == 1


def test_lowercases_and_drops_stopwords(analyzer: Analyzer) -> None:
    terms = analyzer.query_terms("The Engines OF the Ship")
    assert terms == analyzer.query_terms("engines ship")
    assert len(terms) == 2
    assert "the" not in terms and "of" not in terms


def test_stopword_only_and_empty_texts_give_no_terms(analyzer: Analyzer) -> None:
    assert analyzer.terms(["the of and", "", "a"]) == [[], [], []]
    assert analyzer.terms([]) == []


def test_keeps_order_and_repeats(analyzer: Analyzer) -> None:
    terms = analyzer.query_terms("kelp forests shelter kelp")
    assert len(terms) == 4
    assert terms[0] == terms[3] != terms[1]


def test_query_terms_match_document_terms(analyzer: Analyzer) -> None:
    docs = analyzer.terms(["Boundary-layer transition on swept wings", "other text"])
    assert analyzer.query_terms("swept wing boundary layers") == [docs[0][i] for i in (3, 4, 0, 1)]


def test_is_safe_to_share_between_threads(analyzer: Analyzer) -> None:
    texts = [f"aircraft wings number {i} generating lift and drag" for i in range(200)]
    expected = analyzer.terms(texts)
    results: list[list[list[str]]] = []

    def work() -> None:
        results.append(analyzer.terms(texts))

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [expected] * 4
