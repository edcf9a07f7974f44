"""ONNX Runtime cross-encoder reranker (no torch): relevance of (query, passage) pairs.

The default model is the bundled ms-marco-MiniLM-L-12-v2 int8 (``bundled_model_dir("reranker_en")``):
a BERT-style pair classifier whose single output logit is the relevance (higher = more relevant). A model
directory holds ``model.onnx`` and ``tokenizer.json``.

Like the embedder, every pair is its own ONNX run (the model is dynamically quantised, so a padded batch
would make a pair's score depend on its batch companions) and the runs of one call go through one thread
per CPU. Pairs are truncated longest-first to ``max_tokens``.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import numpy.typing as npt

from isthmus_core.errors import ConfigurationError, InvalidArgument, IsthmusError
from isthmus_core.models import RERANKER_EN, bundled_model_dir
from isthmus_core.onnx_embedder import (
    MODEL_FILE,
    TOKENIZER_FILE,
    _input_types,
    _load_session,
    available_cpus,
    encoding_arrays,
    file_digest,
    load_tokenizer,
)


class OnnxCrossEncoder:
    """Scores (query, passage) pairs. Thread-safe; ``close`` stops its run threads."""

    def __init__(
        self,
        model_dir: Path | None = None,
        *,
        max_tokens: int = 512,
        parallel_runs: int | None = None,
    ) -> None:
        model_dir = Path(model_dir) if model_dir is not None else bundled_model_dir(RERANKER_EN)
        if max_tokens < 4:
            raise ConfigurationError(f"reranker max_tokens must be at least 4, got {max_tokens}")
        model_path, tokenizer_path = model_dir / MODEL_FILE, model_dir / TOKENIZER_FILE
        for required in (model_path, tokenizer_path):
            if not required.is_file():
                raise ConfigurationError(
                    f"reranker model directory {model_dir} has no {required.name} (expected {required})",
                    path=str(required),
                )
        self._tokenizer = load_tokenizer(tokenizer_path, max_tokens)
        self._session = _load_session(model_path, 1)
        self._input_types = _input_types(self._session, model_path)
        outputs = self._session.get_outputs()
        if not outputs:
            raise ConfigurationError(f"ONNX model {model_path} has no outputs", path=str(model_path))
        self._output = outputs[0].name
        self._model_id = f"{model_dir.name}@{file_digest(model_path)[:12]}"
        self._max_tokens = max_tokens
        self._parallel_runs = parallel_runs or available_cpus()
        self._pool: ThreadPoolExecutor | None = None

    @property
    def model_id(self) -> str:
        return self._model_id

    @property
    def max_tokens(self) -> int:
        return self._max_tokens

    def score(self, query: str, passages: Sequence[str]) -> npt.NDArray[np.float32]:
        """One relevance logit per passage, in order."""
        if not query.strip():
            raise InvalidArgument("rerank needs a non-empty query")
        if not passages:
            return np.empty(0, dtype=np.float32)
        if self._parallel_runs == 1 or len(passages) == 1:
            return np.array([self._score_one(query, p) for p in passages], dtype=np.float32)
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self._parallel_runs, thread_name_prefix="isthmus-rerank")
        return np.array(list(self._pool.map(lambda p: self._score_one(query, p), passages)), dtype=np.float32)

    def close(self) -> None:
        pool, self._pool = self._pool, None
        self._parallel_runs = 1
        if pool is not None:
            pool.shutdown(wait=True)

    def _score_one(self, query: str, passage: str) -> float:
        encoding = self._tokenizer.encode(query, passage)
        inputs = encoding_arrays([encoding], self._input_types)
        try:
            (logits,) = self._session.run([self._output], inputs)
        except Exception as exc:  # onnxruntime raises its own (non-exported) exception types
            raise IsthmusError(f"ONNX Runtime failed on reranker {self._model_id}: {exc}") from exc
        return float(np.asarray(logits).reshape(-1)[0])
