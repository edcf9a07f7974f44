"""A fast, deterministic fake :class:`~isthmus_core.ports.embedder.Embedder` for unit tests.

Feature hashing of lowercase word tokens (signed, so collisions cancel rather than pile up), then L2
normalisation. Texts sharing words are close; texts sharing none are near-orthogonal. It passes the
same conformance suite as the real embedder (:mod:`isthmus_core.testing.embedder_conformance`), so
services can unit-test against it without loading a model.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from functools import lru_cache

import numpy as np

from isthmus_core.errors import ConfigurationError, InvalidArgument
from isthmus_core.ports.embedder import Embeddings, TextKind

_WORD = re.compile(r"\w+")
#: the token a text without any word hashes to, so that every row can be normalised
_EMPTY_TOKEN = "\x00empty"
_KINDS: frozenset[str] = frozenset({"query", "passage"})


@lru_cache(maxsize=65536)
def _bucket(token: str, dimension: int) -> tuple[int, float]:
    """Stable (process-independent) bucket and sign of a token."""
    digest = hashlib.blake2b(token.encode("utf-8"), digest_size=8).digest()
    value = int.from_bytes(digest, "little")
    return (value >> 1) % dimension, (1.0 if value & 1 else -1.0)


class HashingEmbedder:
    """Deterministic feature-hashing embedder. ``kind`` is accepted (and checked) but does not matter."""

    def __init__(self, dimension: int = 64) -> None:
        if dimension < 2:
            raise ConfigurationError(f"HashingEmbedder dimension must be at least 2, got {dimension}")
        self._dimension = dimension

    @property
    def model_id(self) -> str:
        return f"hashing-{self._dimension}"

    @property
    def dimension(self) -> int:
        return self._dimension

    def embed(self, texts: Sequence[str], kind: TextKind = "passage") -> Embeddings:
        check_embed_args(texts, kind)
        vectors = np.zeros((len(texts), self._dimension), dtype=np.float32)
        for row, text in enumerate(texts):
            tokens = _WORD.findall(text.lower()) or [_EMPTY_TOKEN]
            for token in tokens:
                index, sign = _bucket(token, self._dimension)
                vectors[row, index] += sign
            norm = float(np.linalg.norm(vectors[row]))
            if norm == 0.0:  # every token cancelled out: fall back to the empty-text vector
                index, sign = _bucket(_EMPTY_TOKEN, self._dimension)
                vectors[row, index] = sign
            else:
                vectors[row] /= norm
        return Embeddings(vectors=vectors, model_id=self.model_id)


def check_embed_args(texts: Sequence[str], kind: str) -> None:
    """The argument checks every embedder makes: a sequence of strings and a known kind."""
    if kind not in _KINDS:
        raise InvalidArgument(f"unknown text kind {kind!r}: use 'query' or 'passage'")
    if isinstance(texts, str | bytes):
        raise InvalidArgument("texts must be a sequence of strings, not a single string")
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            raise InvalidArgument(f"text {i} is a {type(text).__name__}, not a string")
