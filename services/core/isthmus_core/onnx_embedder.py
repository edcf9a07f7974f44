"""ONNX Runtime embedder (no torch): a BERT-style encoder, CLS pooling, L2 normalisation.

The default model is the bundled bge-small-en-v1.5 int8 (``bundled_model_dir("bge_small_en")``). A model
directory holds ``model.onnx`` and ``tokenizer.json`` (Hugging Face ``tokenizers`` format).

How texts are run. By default every text is its own ONNX run (``rows_per_run=1``), and the runs of one
``embed`` call go through ``parallel_runs`` threads (one per CPU), each run single-threaded. Why:

* the bundled model is *dynamically* quantised: each ``DynamicQuantizeLinear`` node takes one scale over
  its whole input tensor, i.e. over every row of the batch. A text's vector therefore depends on the
  other texts in its batch (max abs difference ~0.015, cosine ~0.998) unless it runs alone. Row-wise runs
  make a text's vector a function of the text only, whoever it was micro-batched with;
* on CPU it is also faster: no padding, no (batch x heads x tokens²) attention tensors. On Cranfield
  passages (~220 tokens) row-wise runs on 2 threads embed ~3x more texts/s than padded batches of 32.

``rows_per_run > 1`` restores padded batches (padded to the longest text of each run), which suits
float models and very short texts.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import onnxruntime as ort
from tokenizers import Encoding, Tokenizer

from isthmus_core.errors import ConfigurationError, IsthmusError
from isthmus_core.models import BGE_SMALL_EN, bundled_model_dir
from isthmus_core.ports.embedder import Embeddings, TextKind
from isthmus_core.ports.hashing_embedder import check_embed_args

DEFAULT_QUERY_PREFIX = "Represent this sentence for searching relevant passages: "
MODEL_FILE = "model.onnx"
TOKENIZER_FILE = "tokenizer.json"
#: the encoder output pooled by taking its first ([CLS]) token
HIDDEN_STATE_OUTPUT = "last_hidden_state"
_ONNX_INTEGER_TYPES: dict[str, type[np.integer[Any]]] = {
    "tensor(int64)": np.int64,
    "tensor(int32)": np.int32,
}
_NORM_EPSILON = 1e-12


def file_digest(path: Path) -> str:
    """Hex sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def l2_normalise(vectors: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    normalised: npt.NDArray[np.float32] = (vectors / np.maximum(norms, _NORM_EPSILON)).astype(
        np.float32, copy=False
    )
    return normalised


def load_tokenizer(path: Path, max_tokens: int) -> Tokenizer:
    """A tokenizer that truncates at ``max_tokens`` and pads to the longest text of each batch."""
    try:
        tokenizer = Tokenizer.from_file(str(path))
    except Exception as exc:  # tokenizers raises plain Exception on bad JSON
        raise ConfigurationError(f"tokenizer file {path} could not be loaded: {exc}", path=str(path)) from exc
    pad_token = (tokenizer.padding or {}).get("pad_token", "[PAD]")
    pad_id = tokenizer.token_to_id(pad_token)
    if pad_id is None:
        raise ConfigurationError(f"tokenizer file {path} has no padding token {pad_token!r}", path=str(path))
    tokenizer.enable_truncation(max_length=max_tokens)
    tokenizer.enable_padding(pad_id=pad_id, pad_token=pad_token)  # no fixed length: pad to the longest
    return tokenizer


def encoding_arrays(
    encodings: Sequence[Encoding], input_types: dict[str, type[np.integer[Any]]]
) -> dict[str, npt.NDArray[np.integer[Any]]]:
    """The model inputs (``input_ids``, ``attention_mask``, ``token_type_ids``) of a padded batch."""
    fields = {
        "input_ids": lambda e: e.ids,
        "attention_mask": lambda e: e.attention_mask,
        "token_type_ids": lambda e: e.type_ids,
    }
    return {
        name: np.array([fields[name](e) for e in encodings], dtype=dtype)
        for name, dtype in input_types.items()
    }


class OnnxEmbedder:
    """Embedder port on ONNX Runtime. Thread-safe: ``embed`` may be called from several threads."""

    def __init__(
        self,
        model_dir: Path | None = None,
        *,
        query_prefix: str = DEFAULT_QUERY_PREFIX,
        max_tokens: int = 512,
        intra_op_threads: int | None = None,
        parallel_runs: int | None = None,
        rows_per_run: int = 1,
    ) -> None:
        """Load the model and tokenizer; raise ConfigurationError naming the path if anything is wrong.

        ``intra_op_threads``: threads ONNX Runtime uses inside one run (default 1).
        ``parallel_runs``: runs executed at once by one ``embed`` call (default: CPUs // intra_op_threads).
        ``rows_per_run``: texts per run; 1 keeps every vector independent of its batch (see module doc).
        """
        model_dir = Path(model_dir) if model_dir is not None else bundled_model_dir(BGE_SMALL_EN)
        if max_tokens < 2:
            raise ConfigurationError(
                f"max_tokens must be at least 2 (room for [CLS] and [SEP]), got {max_tokens}"
            )
        for name, value in (
            ("intra_op_threads", intra_op_threads),
            ("parallel_runs", parallel_runs),
            ("rows_per_run", rows_per_run),
        ):
            if value is not None and value < 1:
                raise ConfigurationError(f"{name} must be at least 1, got {value}")
        if not model_dir.is_dir():
            raise ConfigurationError(
                f"embedding model directory {model_dir} does not exist (or is not a directory)",
                path=str(model_dir),
            )
        model_path = model_dir / MODEL_FILE
        tokenizer_path = model_dir / TOKENIZER_FILE
        for required in (model_path, tokenizer_path):
            if not required.is_file():
                raise ConfigurationError(
                    f"embedding model directory {model_dir} has no {required.name} (expected {required})",
                    path=str(required),
                )
        _check_max_tokens(model_dir, max_tokens)

        intra = intra_op_threads or 1
        self._model_dir = model_dir
        self._query_prefix = query_prefix
        self._max_tokens = max_tokens
        self._rows_per_run = rows_per_run
        self._parallel_runs = parallel_runs or max(1, available_cpus() // intra)
        self._tokenizer = load_tokenizer(tokenizer_path, max_tokens)
        self._session = _load_session(model_path, intra)
        self._input_types = _input_types(self._session, model_path)
        self._output_name, self._output_rank = _pooled_output(self._session, model_path)
        self._model_id = f"{model_dir.name}@{file_digest(model_path)[:12]}"
        self._dimension = self._read_dimension(model_path)
        self._pool: ThreadPoolExecutor | None = None  # created on first parallel use

    @property
    def model_id(self) -> str:
        return self._model_id

    @property
    def dimension(self) -> int:
        return self._dimension

    @property
    def model_dir(self) -> Path:
        return self._model_dir

    @property
    def max_tokens(self) -> int:
        return self._max_tokens

    @property
    def parallel_runs(self) -> int:
        return self._parallel_runs

    def embed(self, texts: Sequence[str], kind: TextKind = "passage") -> Embeddings:
        check_embed_args(texts, kind)
        if kind == "query" and self._query_prefix:
            texts = [self._query_prefix + t for t in texts]
        if not texts:
            return Embeddings(np.empty((0, self._dimension), dtype=np.float32), self._model_id)
        step = self._rows_per_run
        runs = [texts[i : i + step] for i in range(0, len(texts), step)]
        if len(runs) == 1 or self._parallel_runs == 1:
            parts = [self._embed_batch(run) for run in runs]
        else:
            parts = list(self._executor().map(self._embed_batch, runs))
        vectors = parts[0] if len(parts) == 1 else np.concatenate(parts)
        return Embeddings(vectors=vectors, model_id=self._model_id)

    def close(self) -> None:
        """Stop the run threads (idempotent). ``embed`` still works afterwards, serially."""
        pool, self._pool = self._pool, None
        self._parallel_runs = 1
        if pool is not None:
            pool.shutdown(wait=True)

    def _executor(self) -> ThreadPoolExecutor:
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self._parallel_runs, thread_name_prefix="isthmus-onnx")
        return self._pool

    def _embed_batch(self, texts: Sequence[str]) -> npt.NDArray[np.float32]:
        encodings = self._tokenizer.encode_batch(list(texts))
        inputs = encoding_arrays(encodings, self._input_types)
        try:
            (output,) = self._session.run([self._output_name], inputs)
        except Exception as exc:  # onnxruntime raises its own (non-exported) exception types
            raise IsthmusError(f"ONNX Runtime failed on model {self._model_id}: {exc}") from exc
        pooled = output[:, 0, :] if self._output_rank == 3 else output
        return l2_normalise(np.asarray(pooled, dtype=np.float32))

    def _read_dimension(self, model_path: Path) -> int:
        shape = next(o.shape for o in self._session.get_outputs() if o.name == self._output_name)
        if shape and isinstance(shape[-1], int) and shape[-1] > 0:
            return int(shape[-1])
        try:  # symbolic dimension: find out with a probe run
            return int(self._embed_batch(["probe"]).shape[1])
        except IsthmusError as exc:
            raise ConfigurationError(
                f"ONNX model {model_path} fails on a probe input: {exc}", path=str(model_path)
            ) from exc


def available_cpus() -> int:
    """CPUs this process may run on (honours affinity masks, e.g. container cpusets)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _load_session(model_path: Path, intra_op_threads: int) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = intra_op_threads
    try:
        return ort.InferenceSession(str(model_path), sess_options=options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # InvalidProtobuf, Fail, ... are not importable by a stable path
        raise ConfigurationError(
            f"{model_path} is not a loadable ONNX model: {exc}", path=str(model_path)
        ) from exc


def _input_types(session: ort.InferenceSession, model_path: Path) -> dict[str, type[np.integer[Any]]]:
    known = ("input_ids", "attention_mask", "token_type_ids")
    types: dict[str, type[np.integer[Any]]] = {}
    for node in session.get_inputs():
        if node.name not in known:
            raise ConfigurationError(
                f"ONNX model {model_path} declares input {node.name!r}; "
                f"supported inputs are {', '.join(known)}",
                path=str(model_path),
            )
        if node.type not in _ONNX_INTEGER_TYPES:
            raise ConfigurationError(
                f"ONNX model {model_path} input {node.name!r} has type {node.type}; expected int64 or int32",
                path=str(model_path),
            )
        types[node.name] = _ONNX_INTEGER_TYPES[node.type]
    if "input_ids" not in types:
        raise ConfigurationError(f"ONNX model {model_path} has no 'input_ids' input", path=str(model_path))
    return types


def _pooled_output(session: ort.InferenceSession, model_path: Path) -> tuple[str, int]:
    """The output to pool: ``last_hidden_state`` (CLS-pooled) if present, else the first output."""
    outputs = session.get_outputs()
    if not outputs:
        raise ConfigurationError(f"ONNX model {model_path} has no outputs", path=str(model_path))
    chosen = next((o for o in outputs if o.name == HIDDEN_STATE_OUTPUT), outputs[0])
    rank = len(chosen.shape) if chosen.shape is not None else 0
    if rank not in (2, 3):
        raise ConfigurationError(
            f"ONNX model {model_path} output {chosen.name!r} has rank {rank}; expected "
            "(batch, tokens, hidden) or (batch, hidden)",
            path=str(model_path),
        )
    return chosen.name, rank


def _check_max_tokens(model_dir: Path, max_tokens: int) -> None:
    """Reject a max_tokens beyond the model's position embeddings (read from config.json if present)."""
    config_path = model_dir / "config.json"
    if not config_path.is_file():
        return
    try:
        limit = json.loads(config_path.read_text(encoding="utf-8")).get("max_position_embeddings")
    except (OSError, ValueError, AttributeError):
        return
    if isinstance(limit, int) and max_tokens > limit:
        raise ConfigurationError(
            f"max_tokens={max_tokens} exceeds the model's limit of {limit} positions ({config_path})",
            path=str(config_path),
        )
