"""The BM25 text analyser: how chunk texts and queries become terms.

bm25s's tokeniser (lower-case, scikit-learn's ``\\b\\w\\w+\\b`` token pattern, English stopwords removed)
followed by the Snowball English stemmer from PyStemmer — the pipeline behind bm25s's published BEIR
figures. Index and query must go through the same analyser, so the store persists term lists made
here and records :attr:`Analyzer.name` alongside them.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence

import bm25s
import Stemmer


class Analyzer:
    """Turns texts into BM25 terms. Building one loads the stemmer (cheap); nothing happens at import.

    Safe to share between threads: PyStemmer's stemmer objects are not, so calls are serialised.
    """

    name = "bm25s-en-stop+snowball-en"

    def __init__(self) -> None:
        self._stemmer = Stemmer.Stemmer("english")
        self._lock = threading.Lock()

    def terms(self, texts: Sequence[str]) -> list[list[str]]:
        """One term list per text (possibly empty, e.g. for a text of stopwords only)."""
        if not texts:
            return []
        with self._lock:
            tokens = bm25s.tokenize(
                list(texts),
                lower=True,
                stopwords="en",
                stemmer=self._stemmer,
                return_ids=False,
                show_progress=False,
            )
        assert isinstance(tokens, list)
        return [list(t) for t in tokens]

    def query_terms(self, text: str) -> list[str]:
        return self.terms([text])[0]
