"""Chunking strategies side by side (issue 18): ``token`` (baseline) against ``sentence``, ``markdown``,
``semantic`` and ``parent-child``, on the real ingestion and retrieval of an all-in-one platform in this
process, one run.

Run (``make bench-chunking``)::

    .venv/bin/python -m isthmus_bench.chunking [--datasets cranfield,cisi,scifact]
        [--strategies token,sentence,markdown,semantic,parent-child] [--modes hybrid] [--scan]
        [--split-docs 300] [--datasets-dir ../shared/datasets] [--json]

Per strategy, a platform is started (``isthmus run --target all``'s modules: throwaway data dir,
in-process bus, embedded store, bundled models) with ``[ingestion] chunking = <strategy>`` and every other
setting at its default. Per dataset (BEIR layout), exactly as ``isthmus eval`` does it
(:class:`isthmus_evaluation.runner.EvalRunner` over :class:`isthmus_evaluation.clients.GrpcEvalPlatform`):
a fresh tenant, every document uploaded over gRPC (8 at a time) and waited for until indexed, then every
judged query searched (``--modes``, top 100 chunk hits folded to documents by their best hit) and scored
(nDCG@10, recall@100). The figures per strategy and dataset:

* **nDCG@10** (and its difference to ``token``), **recall@100**;
* **chunks** the documents were cut into (``ListDocuments``: the sum of ``chunk_count``; every document's
  ``chunking`` is checked to be the strategy asked for);
* **ingest chunks/s**: chunks ÷ the seconds from the first upload until every document was indexed (the
  whole pipeline: parse, chunk, embed, index);
* **split chunks/s**: the strategy's splitter alone on the first ``--split-docs`` documents, one thread,
  in this process (the ``semantic`` splitter embeds every sentence: that is its cost).

The guardrail's ingest scan of every chunk is off (``scan_chunks = false``) unless ``--scan``: it costs the
same per chunk whatever the strategy (see the guardrails benchmark) and would only slow the run.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import grpc

from isthmus_evaluation.datasets import BeirDataset

ROOT = Path(__file__).resolve().parents[2]
DATASETS = ROOT.parent / "shared" / "datasets"
DEFAULT_DATASETS = ("cranfield", "cisi", "scifact")
STRATEGIES = ("token", "sentence", "markdown", "semantic", "parent-child")
BASELINE = "token"


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


@dataclass
class Row:
    """One strategy on one dataset."""

    strategy: str
    dataset: str
    documents: int
    queries: int
    chunks: int
    ingest_s: float
    #: search mode -> nDCG@10 / recall@100
    ndcg_at_10: dict[str, float] = field(default_factory=dict)
    recall_at_100: dict[str, float] = field(default_factory=dict)
    split_chunks_per_s: float = 0.0
    #: the strategies the documents say they were chunked with (must be {strategy})
    recorded: list[str] = field(default_factory=list)

    @property
    def ingest_chunks_per_s(self) -> float:
        return self.chunks / self.ingest_s if self.ingest_s > 0 else 0.0

    @property
    def chunks_per_doc(self) -> float:
        return self.chunks / self.documents if self.documents else 0.0


# -- the platform --------------------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def platform(ingestion: dict[str, Any]) -> AsyncIterator[grpc.aio.Channel]:
    """Every module of ``isthmus run --target all`` in this process, ``ingestion`` overriding the
    ingestion settings; a channel to its gRPC port."""
    from isthmus_cli.modules import MODULES
    from isthmus_core.runtime.runtime import Runtime

    with tempfile.TemporaryDirectory(prefix="isthmus-bench-chunking-") as tmp:
        overrides: dict[str, dict[str, Any]] = {
            "common": {
                "data_dir": tmp,
                "grpc_port": 0,
                "metrics_port": 0,
                "bus": "inprocess",
                "log_level": "warning",
            },
            "ingestion": ingestion,
            "console": {"enabled": False},
        }
        rt = Runtime.from_settings("all", MODULES, None, overrides)
        await rt.start()
        try:
            async with grpc.aio.insecure_channel(rt.address) as channel:
                yield channel
        finally:
            await rt.stop()


async def documents_of(channel: grpc.aio.Channel, tenant: str) -> tuple[int, list[str]]:
    """(chunks of the tenant's documents, the strategies they were chunked with)."""
    from isthmus.ingestion.v1 import ingestion_pb2, ingestion_pb2_grpc

    stub = ingestion_pb2_grpc.IngestionServiceStub(channel)
    resp = await stub.ListDocuments(ingestion_pb2.ListDocumentsRequest(tenant_id=tenant), timeout=120)
    return sum(d.chunk_count for d in resp.documents), sorted({d.chunking for d in resp.documents})


async def measure_dataset(
    channel: grpc.aio.Channel, strategy: str, ds: BeirDataset, modes: Sequence[str]
) -> Row:
    from isthmus_evaluation.clients import GrpcEvalPlatform
    from isthmus_evaluation.report import EvalReport
    from isthmus_evaluation.runner import EvalRunner

    eval_platform = GrpcEvalPlatform(channel, channel)
    runner = EvalRunner(eval_platform)
    report: EvalReport | None = None
    last = 0.0
    async for item in runner.run(ds, modes=modes, keep_tenant=True):
        if isinstance(item, EvalReport):
            report = item
        elif time.monotonic() - last > 15 or item.done == item.total:
            last = time.monotonic()
            log(f"  {strategy} / {ds.name}: {item.phase} {item.done}/{item.total}")
    assert report is not None
    try:
        chunks, recorded = await documents_of(channel, report.tenant_id)
    finally:
        await eval_platform.delete_tenant(report.tenant_id)
    return Row(
        strategy=strategy,
        dataset=ds.name,
        documents=report.documents,
        queries=report.queries,
        chunks=chunks,
        ingest_s=report.ingest_seconds,
        ndcg_at_10={m.mode: m.ndcg_at_10 for m in report.modes},
        recall_at_100={m.mode: m.recall_at_100 for m in report.modes},
        recorded=recorded,
    )


def split_rate(strategy: str, ds: BeirDataset, n_docs: int) -> float:
    """Chunks per second of ``strategy``'s splitter alone (default settings) on the first ``n_docs``
    documents of ``ds``, one thread."""
    from functools import partial

    from isthmus_core.models import BGE_SMALL_EN, bundled_model_dir
    from isthmus_core.onnx_embedder import OnnxEmbedder
    from isthmus_evaluation.datasets import doc_text
    from isthmus_ingestion.chunking import Chunker
    from isthmus_ingestion.chunking.strategies import build_selection
    from isthmus_ingestion.settings import IngestionSettings

    s = IngestionSettings.model_validate({"chunking": strategy})
    tokenizer = bundled_model_dir(BGE_SMALL_EN) / "tokenizer.json"
    embedders: list[OnnxEmbedder] = []

    def embedder() -> OnnxEmbedder:
        embedders.append(OnnxEmbedder(intra_op_threads=1, parallel_runs=1))
        return embedders[-1]

    selection = build_selection(
        s.chunking,
        {},
        partial(Chunker, tokenizer),
        max_tokens=s.chunk_max_tokens,
        overlap_tokens=s.chunk_overlap_tokens,
        child_max_tokens=s.chunking_child_max_tokens,
        parent_max_tokens=s.chunking_parent_max_tokens,
        embedder=embedder,
        breakpoint_percentile=s.chunking_semantic_percentile,
    )
    _, splitter = selection.select("bench")
    texts = [t for t in (doc_text(d) for d in list(ds.corpus.values())[:n_docs]) if t.strip()]
    try:
        t0 = time.perf_counter()
        chunks = sum(len(splitter.split(t)) for t in texts)
        elapsed = time.perf_counter() - t0
    finally:
        for e in embedders:
            e.close()
    return chunks / elapsed if elapsed > 0 else 0.0


# -- the report ----------------------------------------------------------------------------------------


def render(rows: Sequence[Row], modes: Sequence[str]) -> str:
    """One table per dataset: a row per strategy, the difference to ``token`` beside each nDCG@10."""
    out: list[str] = []
    for dataset in dict.fromkeys(r.dataset for r in rows):
        mine = [r for r in rows if r.dataset == dataset]
        base = next((r for r in mine if r.strategy == BASELINE), None)
        first = mine[0]
        out.append(f"{dataset} ({first.documents} documents, {first.queries} queries)")
        head = "| strategy | chunks | chunks/doc | ingest s | ingest chunks/s | split chunks/s |"
        for m in modes:
            head += f" nDCG@10 {m} | Δ vs {BASELINE} | recall@100 {m} |"
        out.append(head)
        out.append("|" + "---|" * (6 + 3 * len(modes)))
        for r in mine:
            line = (
                f"| {r.strategy} | {r.chunks} | {r.chunks_per_doc:.2f} | {r.ingest_s:.0f} | "
                f"{r.ingest_chunks_per_s:.1f} | {r.split_chunks_per_s:.0f} |"
            )
            for m in modes:
                nd = r.ndcg_at_10.get(m, float("nan"))
                delta = "—"
                if base is not None and r is not base:
                    delta = f"{nd - base.ndcg_at_10.get(m, float('nan')):+.3f}"
                line += f" {nd:.3f} | {delta} | {r.recall_at_100.get(m, float('nan')):.3f} |"
            out.append(line)
        wrong = [r.strategy for r in mine if r.recorded != [r.strategy]]
        if wrong:
            out.append(f"WARNING: documents not recorded with the strategy asked for: {wrong}")
        out.append("")
    return "\n".join(out)


async def measure(args: argparse.Namespace) -> list[Row]:
    from isthmus_evaluation.datasets import load_beir

    loaded = {name: load_beir(args.datasets_dir / name) for name in args.datasets}
    rows: list[Row] = []
    for strategy in args.strategies:
        log(f"{strategy}: starting a platform")
        async with platform({"chunking": strategy, "scan_chunks": args.scan}) as channel:
            for name, ds in loaded.items():
                row = await measure_dataset(channel, strategy, ds, args.modes)
                log(
                    f"{strategy} / {name}: {row.chunks} chunks in {row.ingest_s:.0f} s, nDCG@10 "
                    + ", ".join(f"{m} {v:.3f}" for m, v in row.ndcg_at_10.items())
                )
                rows.append(row)
        for name, ds in loaded.items():  # the platform is stopped: the splitter alone has the CPU
            rate = split_rate(strategy, ds, args.split_docs) if args.split_docs > 0 else 0.0
            for row in rows:
                if row.strategy == strategy and row.dataset == name:
                    row.split_chunks_per_s = rate
    return rows


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m isthmus_bench.chunking", description=(__doc__ or "").split("\n\n")[0]
    )

    def names(s: str) -> list[str]:
        return [x for x in s.split(",") if x]

    parser.add_argument("--datasets", type=names, default=list(DEFAULT_DATASETS))
    parser.add_argument("--datasets-dir", type=Path, default=DATASETS)
    parser.add_argument("--strategies", type=names, default=list(STRATEGIES))
    parser.add_argument("--modes", type=names, default=["hybrid"], help="search modes scored")
    parser.add_argument(
        "--split-docs", type=int, default=300, help="documents the splitter alone is timed on"
    )
    parser.add_argument("--scan", action="store_true", help="keep the guardrail's ingest scan on")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    unknown = [s for s in args.strategies if s not in STRATEGIES]
    if unknown:
        parser.error(f"unknown strategies {unknown}; choose from {list(STRATEGIES)}")
    if BASELINE in args.strategies:  # the baseline first: every other row is compared with it
        args.strategies = [BASELINE, *(s for s in args.strategies if s != BASELINE)]
    from isthmus_evaluation.runner import MODES

    bad = [m for m in args.modes if m not in MODES]
    if bad:
        parser.error(f"unknown modes {bad}; choose from {list(MODES)}")
    return args


def main(argv: list[str] | None = None, *, emit: Callable[[str], None] = print) -> int:
    args = parse_args(argv)
    t0 = time.perf_counter()
    rows = asyncio.run(measure(args))
    if args.json:
        data = [{**asdict(r), "ingest_chunks_per_s": r.ingest_chunks_per_s} for r in rows]
        emit(json.dumps(data, indent=2))
    else:
        emit(render(rows, args.modes))
    log(f"wall time {time.perf_counter() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
