"""Throughput of the Isthmus embedding path against raw ONNX Runtime on the same model and texts.

``python -m isthmus_bench.embedding [--model-dir DIR] [--n-texts 512] [--batch-size 32]``

Paths measured (each tokenises, runs, CLS-pools and L2-normalises every text):

* **isthmus**: ``callers`` concurrent asyncio callers send chunks of texts to a :class:`MicroBatcher`
  (``max_batch=batch_size``) in front of an :class:`OnnxEmbedder` with its default settings;
* **raw, batched**: a plain ``onnxruntime.InferenceSession`` (default options) fed padded batches of
  ``batch_size`` texts, one after another;
* **raw, row-wise**: a plain session running one text per run on one thread per CPU — the execution
  strategy :class:`OnnxEmbedder` uses — which isolates the Isthmus path's own overhead.

Texts: the first ``n_texts`` Cranfield documents (title + text) when the shared datasets folder
(``../shared/datasets`` next to the repository) is present, else generated sentences.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import numpy.typing as npt
import onnxruntime as ort
from tokenizers import Tokenizer

from isthmus_core.models import BGE_SMALL_EN, bundled_model_dir
from isthmus_core.onnx_embedder import OnnxEmbedder, available_cpus
from isthmus_embedding.batcher import MicroBatcher

CRANFIELD_CORPUS = (
    Path(__file__).resolve().parents[2].parent / "shared" / "datasets" / "cranfield" / "corpus.jsonl"
)
WARMUP_TEXTS = 8

_WORDS = (
    "the a wing flow boundary layer pressure lift drag shock wave surface supersonic subsonic heat "
    "transfer model experiment theory results measured velocity angle attack turbulent laminar "
    "compressible viscous body nose cone plate edge leading trailing distribution number mach reynolds"
).split()


def load_texts(n_texts: int, corpus: Path = CRANFIELD_CORPUS) -> tuple[list[str], str]:
    """The first ``n_texts`` passages of the corpus if it exists, else generated ones; and their source."""
    if corpus.is_file():
        texts: list[str] = []
        with corpus.open(encoding="utf-8") as f:
            for line in f:
                if len(texts) == n_texts:
                    break
                doc = json.loads(line)
                texts.append(f"{doc.get('title', '')}\n{doc.get('text', '')}".strip())
        if len(texts) == n_texts:
            return texts, str(corpus)
    rng = random.Random(0)
    generated = [
        " ".join(
            " ".join(rng.choice(_WORDS) for _ in range(rng.randint(8, 25))) + "."
            for _ in range(rng.randint(3, 10))
        )
        for _ in range(n_texts)
    ]
    return generated, "generated sentences"


class RawOnnx:
    """The baseline, written against onnxruntime and tokenizers directly (no Isthmus code)."""

    def __init__(self, model_dir: Path, intra_op_threads: int | None) -> None:
        options = ort.SessionOptions()
        if intra_op_threads is not None:
            options.intra_op_num_threads = intra_op_threads
        self.session = ort.InferenceSession(
            str(model_dir / "model.onnx"), sess_options=options, providers=["CPUExecutionProvider"]
        )
        self.tokenizer = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
        self.tokenizer.enable_truncation(max_length=512)
        self.tokenizer.enable_padding(pad_id=self.tokenizer.token_to_id("[PAD]") or 0, pad_token="[PAD]")
        self.input_names = [i.name for i in self.session.get_inputs()]

    def embed(self, texts: Sequence[str]) -> npt.NDArray[np.float32]:
        encodings = self.tokenizer.encode_batch(list(texts))
        columns = {
            "input_ids": [e.ids for e in encodings],
            "attention_mask": [e.attention_mask for e in encodings],
            "token_type_ids": [e.type_ids for e in encodings],
        }
        feeds = {name: np.array(columns[name], dtype=np.int64) for name in self.input_names}
        hidden = self.session.run(None, feeds)[0]
        cls = np.asarray(hidden[:, 0, :], dtype=np.float32)
        normalised: npt.NDArray[np.float32] = cls / np.linalg.norm(cls, axis=1, keepdims=True)
        return normalised


def _timed(fn: Callable[[], npt.NDArray[np.float32]]) -> tuple[float, npt.NDArray[np.float32]]:
    start = time.perf_counter()
    vectors = fn()
    return time.perf_counter() - start, vectors


def _raw_batched(raw: RawOnnx, texts: list[str], batch_size: int) -> npt.NDArray[np.float32]:
    return np.concatenate([raw.embed(texts[i : i + batch_size]) for i in range(0, len(texts), batch_size)])


def _raw_row_wise(raw: RawOnnx, texts: list[str], pool: ThreadPoolExecutor) -> npt.NDArray[np.float32]:
    return np.concatenate(list(pool.map(lambda t: raw.embed([t]), texts)))


async def _isthmus(
    batcher: MicroBatcher, texts: list[str], chunk: int, callers: int
) -> npt.NDArray[np.float32]:
    chunks = [(i, texts[i : i + chunk]) for i in range(0, len(texts), chunk)]
    results: dict[int, npt.NDArray[np.float32]] = {}

    async def caller() -> None:
        while chunks:
            start, part = chunks.pop(0)
            results[start] = (await batcher.embed(part, "passage")).vectors

    await asyncio.gather(*(caller() for _ in range(callers)))
    return np.concatenate([results[k] for k in sorted(results)])


def _run_isthmus(
    embedder: OnnxEmbedder, texts: list[str], batch_size: int, callers: int
) -> tuple[float, npt.NDArray[np.float32]]:
    async def go() -> tuple[float, npt.NDArray[np.float32]]:
        batcher = MicroBatcher(embedder, max_batch=batch_size, max_wait_ms=5.0)
        await batcher.start()
        try:
            await _isthmus(batcher, texts[:WARMUP_TEXTS], max(1, batch_size // 4), callers)
            start = time.perf_counter()
            vectors = await _isthmus(batcher, texts, max(1, batch_size // 4), callers)
            return time.perf_counter() - start, vectors
        finally:
            await batcher.stop()

    return asyncio.run(go())


def run(
    model_dir: Path | None = None,
    n_texts: int = 512,
    batch_size: int = 32,
    *,
    callers: int = 8,
    repeats: int = 1,
) -> dict[str, float]:
    """Texts per second of each path (best of ``repeats``) and the Isthmus/raw ratios."""
    model_dir = model_dir or bundled_model_dir(BGE_SMALL_EN)
    texts, _ = load_texts(n_texts)
    cpus = available_cpus()

    embedder = OnnxEmbedder(model_dir)
    raw_batched = RawOnnx(model_dir, intra_op_threads=None)
    raw_rows = RawOnnx(model_dir, intra_op_threads=1)
    pool = ThreadPoolExecutor(cpus)
    try:
        raw_batched.embed(texts[:WARMUP_TEXTS])
        _raw_row_wise(raw_rows, texts[:WARMUP_TEXTS], pool)
        best = {"isthmus": float("inf"), "raw_batched": float("inf"), "raw_row_wise": float("inf")}
        vectors: dict[str, npt.NDArray[np.float32]] = {}
        paths: tuple[tuple[str, Callable[[], tuple[float, npt.NDArray[np.float32]]]], ...] = (
            ("raw_batched", lambda: _timed(lambda: _raw_batched(raw_batched, texts, batch_size))),
            ("raw_row_wise", lambda: _timed(lambda: _raw_row_wise(raw_rows, texts, pool))),
            ("isthmus", lambda: _run_isthmus(embedder, texts, batch_size, callers)),
        )
        for _ in range(repeats):  # interleaved, so a noisy neighbour hurts every path alike
            for name, fn in paths:
                seconds, vectors[name] = fn()
                best[name] = min(best[name], seconds)
    finally:
        pool.shutdown()
        embedder.close()

    rate = {name: len(texts) / seconds for name, seconds in best.items()}
    return {
        "n_texts": float(len(texts)),
        "batch_size": float(batch_size),
        "callers": float(callers),
        "cpus": float(cpus),
        "isthmus_texts_per_s": rate["isthmus"],
        "raw_texts_per_s": rate["raw_batched"],
        "ratio": rate["isthmus"] / rate["raw_batched"],
        "raw_row_wise_texts_per_s": rate["raw_row_wise"],
        "ratio_vs_row_wise": rate["isthmus"] / rate["raw_row_wise"],
        # same strategy, same numbers: the row-wise baseline must agree with Isthmus exactly
        "max_abs_diff_vs_row_wise": float(np.max(np.abs(vectors["isthmus"] - vectors["raw_row_wise"]))),
        "max_abs_diff_vs_batched": float(np.max(np.abs(vectors["isthmus"] - vectors["raw_batched"]))),
    }


def format_table(result: dict[str, float], source: str) -> str:
    n, bs = int(result["n_texts"]), int(result["batch_size"])
    rows = [
        (
            f"isthmus (MicroBatcher + OnnxEmbedder, {int(result['callers'])} callers)",
            result["isthmus_texts_per_s"],
            "",
        ),
        (f"raw onnxruntime, padded batches of {bs}", result["raw_texts_per_s"], f"{result['ratio']:.2f}x"),
        (
            f"raw onnxruntime, row-wise on {int(result['cpus'])} threads",
            result["raw_row_wise_texts_per_s"],
            f"{result['ratio_vs_row_wise']:.2f}x",
        ),
    ]
    width = max(len(r[0]) for r in rows)
    lines = [
        f"{n} texts from {source}, batch size {bs}",
        f"{'path':<{width}}  {'texts/s':>9}  {'isthmus ÷ this':>14}",
    ]
    lines += [f"{name:<{width}}  {tps:>9.1f}  {ratio:>14}" for name, tps, ratio in rows]
    lines.append(
        f"max |Δ| isthmus vs row-wise: {result['max_abs_diff_vs_row_wise']:.2e}; "
        f"vs padded batches: {result['max_abs_diff_vs_batched']:.2e} (int8 per-batch activation scales)"
    )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model-dir", type=Path, default=None)
    parser.add_argument("--n-texts", type=int, default=512)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--callers", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=1)
    args = parser.parse_args(argv)
    result = run(args.model_dir, args.n_texts, args.batch_size, callers=args.callers, repeats=args.repeats)
    print(format_table(result, load_texts(args.n_texts)[1]))


if __name__ == "__main__":
    main()
