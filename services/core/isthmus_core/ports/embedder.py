"""Embedder port: texts in, L2-normalised float32 vectors out, tagged with the model id/version.

Conformance: :mod:`isthmus_core.testing.embedder_conformance`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

TextKind = Literal["query", "passage"]


@dataclass(frozen=True, slots=True)
class Embeddings:
    vectors: npt.NDArray[np.float32]  # shape (n, dimension), rows L2-normalised
    model_id: str  # e.g. "bge-small-en-v1.5-int8@<sha256 prefix of model.onnx>"


@runtime_checkable
class Embedder(Protocol):
    @property
    def model_id(self) -> str: ...

    @property
    def dimension(self) -> int: ...

    def embed(self, texts: Sequence[str], kind: TextKind = "passage") -> Embeddings:
        """Synchronous, CPU-bound; callers run it in a thread (see the embedding service's batcher)."""
