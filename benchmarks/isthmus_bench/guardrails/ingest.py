"""Ingestion-time scanning (issue 16): what the guardrail's chunk scan costs at ingest, and how many genuine
documents it flags or quarantines.

Run::

    .venv/bin/python -m isthmus_bench.guardrails.ingest [--docs 1400] [--latency-chunks 400] [--json]

The platform under test is ``isthmus run --target all`` in its own process (throwaway data dir, bundled
models), started twice, side by side: ingestion's scan **on** (the default) and **off**
(``[ingestion] scan_chunks = false``). The guard is the guardrail module's own, built as ``make run``
builds it (the rules, PII, and whatever further checks the module composes, e.g. the learned injection
model): the bench never assembles a guard itself.

* **Ingest throughput, on vs off**: both platforms run side by side; the first ``--docs`` Cranfield
  documents, in ``--rounds`` slices, are uploaded over gRPC (8 at a time) to a fresh tenant of each, one
  platform after the other, the order alternating by round (a change in the machine's load weighs on
  both arms alike), each slice timed until every document is terminal (indexed; quarantined or failed
  counted apart): documents/s and chunks/s side by side, the added time per chunk, and the median of the
  rounds' on ÷ off time.
* **Scan cost per chunk** (scan-on platform): ``ScanChunks`` with one chunk per call, over gRPC as
  ingestion calls it (``--latency-chunks`` Cranfield chunks, after a warm-up): p50/p95 ms. Also the
  amortised cost of the document scans of the next item (each document in one call, as ingestion makes
  them, 64 chunks per call): scan time ÷ chunks.
* **False positives on documents**: every chunk of Cranfield and CISI (parsed and chunked as ingestion
  does: the bundled tokenizer, the default chunk settings) scanned under the default policy: the share of
  chunks and of documents that would be quarantined (BLOCK), indexed redacted (REDACT) or with a flag
  (FLAG), and the finding codes behind them. These are research abstracts: none should be quarantined.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import tempfile
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
from rich.console import Console
from rich.table import Table

from isthmus.guardrail.v1 import guardrail_pb2, guardrail_pb2_grpc
from isthmus.ingestion.v1 import ingestion_pb2, ingestion_pb2_grpc
from isthmus.retrieval.v1 import retrieval_pb2, retrieval_pb2_grpc
from isthmus_bench.scale import percentiles

ROOT = Path(__file__).resolve().parents[3]
DATASETS = ROOT.parent / "shared" / "datasets"
FP_DATASETS = ("cranfield", "cisi")
UPLOAD_CONCURRENCY = 8
WARMUP_CHUNKS = 20


@dataclass(frozen=True)
class Doc:
    doc_id: str
    text: str


def load_docs(dataset: str, limit: int | None = None) -> list[Doc]:
    """A dataset's documents with text (title and body, as an uploaded .txt), in file order."""
    docs: list[Doc] = []
    with (DATASETS / dataset / "corpus.jsonl").open() as fh:
        for line in fh:
            d = json.loads(line)
            text = f"{d.get('title', '')}\n\n{d.get('text', '')}".strip()
            if text:
                docs.append(Doc(f"{dataset}-{d['_id']}", text))
            if limit is not None and len(docs) >= limit:
                break
    return docs


def chunk_docs(docs: Sequence[Doc]) -> list[tuple[Doc, list[tuple[int, str]]]]:
    """Each document's chunks exactly as ingestion makes them (parse as .txt, default chunk settings)."""
    from isthmus_core.models import BGE_SMALL_EN, bundled_model_dir
    from isthmus_ingestion.chunking import Chunker
    from isthmus_ingestion.parsing import parse_document
    from isthmus_ingestion.settings import IngestionSettings

    defaults = IngestionSettings.model_fields
    chunker = Chunker(
        bundled_model_dir(BGE_SMALL_EN) / "tokenizer.json",
        max_tokens=defaults["chunk_max_tokens"].default,
        overlap_tokens=defaults["chunk_overlap_tokens"].default,
    )
    out = []
    for d in docs:
        parsed = parse_document(d.text.encode(), f"{d.doc_id}.txt", None)
        out.append((d, [(c.index, c.text) for c in chunker.split(parsed.text)]))
    return out


# -- the platform under test ---------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def platform(scan: bool, log_level: str) -> AsyncIterator[str]:
    """``isthmus run --target all`` in its own process, scanning on or off; yields its gRPC address."""
    from isthmus_core.testing.cluster import Cluster

    env = {"ISTHMUS_LOG_LEVEL": log_level, "ISTHMUS_INGESTION_SCAN_CHUNKS": "true" if scan else "false"}
    with tempfile.TemporaryDirectory(prefix=f"isthmus-bench-ingest-{'on' if scan else 'off'}-") as tmp:
        cluster = Cluster(Path(tmp), "", env, targets=("all",))
        try:
            cluster.start("all")
            await cluster.wait_healthy("all")
            yield cluster.endpoints["all"]
        finally:
            cluster.stop_all()


async def create_tenant(ch: grpc.aio.Channel, tenant: str) -> None:
    await retrieval_pb2_grpc.RetrievalServiceStub(ch).CreateTenant(
        retrieval_pb2.CreateTenantRequest(tenant_id=tenant), timeout=30
    )


# -- ingest throughput -----------------------------------------------------------------------------------


async def ingest_round(
    address: str, tenant: str, docs: Sequence[Doc], before: int, within_s: float = 1800
) -> tuple[float, int, Counter[str]]:
    """Upload ``docs`` to a tenant already holding ``before`` terminal documents and wait until every one
    is terminal: (seconds, chunks, statuses of the tenant's documents)."""
    from isthmus_core.testing.client import upload

    terminal = {
        ingestion_pb2.DOCUMENT_STATUS_INDEXED: "indexed",
        ingestion_pb2.DOCUMENT_STATUS_QUARANTINED: "quarantined",
        ingestion_pb2.DOCUMENT_STATUS_FAILED: "failed",
    }
    async with grpc.aio.insecure_channel(address) as ch:
        stub = ingestion_pb2_grpc.IngestionServiceStub(ch)
        sem = asyncio.Semaphore(UPLOAD_CONCURRENCY)
        chunks = 0

        async def one(d: Doc) -> None:
            nonlocal chunks
            async with sem:
                r = await upload(ch, tenant, f"{d.doc_id}.txt", d.text.encode(), document_id=d.doc_id)
            chunks += r.chunk_count

        t0 = time.perf_counter()
        await asyncio.gather(*(one(d) for d in docs))
        while True:
            listed = await stub.ListDocuments(
                ingestion_pb2.ListDocumentsRequest(tenant_id=tenant), timeout=60
            )
            states = Counter(terminal.get(d.status, "pending") for d in listed.documents)
            if states["pending"] == 0 and len(listed.documents) >= before + len(docs):
                return time.perf_counter() - t0, chunks, states
            if time.perf_counter() - t0 > within_s:
                raise RuntimeError(f"not terminal within {within_s:.0f}s: {dict(states)}")
            await asyncio.sleep(0.25)


async def throughput(
    addresses: dict[str, str], docs: Sequence[Doc], rounds: int, log: Callable[[str], None]
) -> dict[str, Any]:
    """The documents in ``rounds`` consecutive slices, each ingested by both platforms in turn (the order
    alternating round by round), so a change of the machine's load during the run (other processes)
    weighs on both arms alike. Per arm: total time, rates; per round: on ÷ off time."""
    size = max(1, -(-len(docs) // rounds))
    slices = [docs[i : i + size] for i in range(0, len(docs), size)]
    arms: dict[str, dict[str, Any]] = {a: {"ingest_s": 0.0, "chunks": 0, "statuses": {}} for a in addresses}
    ratios: list[float] = []
    done = 0
    for k, part in enumerate(slices):
        took: dict[str, float] = {}
        for arm in ("off", "on") if k % 2 == 0 else ("on", "off"):
            seconds, chunks, states = await ingest_round(addresses[arm], f"bench-scan-{arm}", part, done)
            took[arm] = seconds
            arms[arm]["ingest_s"] += seconds
            arms[arm]["chunks"] += chunks
            arms[arm]["statuses"] = dict(states)
        done += len(part)
        ratios.append(took["on"] / took["off"])
        log(
            f"round {k + 1}/{len(slices)}: {len(part)} documents, "
            f"off {took['off']:.1f} s, on {took['on']:.1f} s"
        )
    for r in arms.values():
        r["documents"] = len(docs)
        r["docs_per_s"] = len(docs) / r["ingest_s"]
        r["chunks_per_s"] = r["chunks"] / r["ingest_s"]
    on, off = arms["on"], arms["off"]
    return {
        **arms,
        "rounds": len(slices),
        "on_vs_off": on["chunks_per_s"] / off["chunks_per_s"],
        "added_ms_per_chunk": (on["ingest_s"] - off["ingest_s"]) * 1000 / max(on["chunks"], 1),
        "round_time_ratio_median": sorted(ratios)[len(ratios) // 2],
        "round_time_ratios": ratios,
    }


# -- scan cost per chunk, false positives ---------------------------------------------------------------


async def chunk_latency(
    address: str, tenant: str, chunks: Sequence[str], log: Callable[[str], None]
) -> dict[str, Any]:
    """``ScanChunks`` with one chunk per call, one call at a time: ms per call (after a warm-up)."""
    async with grpc.aio.insecure_channel(address) as ch:
        stub = guardrail_pb2_grpc.GuardrailServiceStub(ch)

        async def scan(text: str) -> float:
            req = guardrail_pb2.ScanChunksRequest(
                tenant_id=tenant,
                document_id="latency",
                chunks=[guardrail_pb2.ChunkToScan(index=0, text=text)],
            )
            t = time.perf_counter()
            await stub.ScanChunks(req, timeout=60)
            return (time.perf_counter() - t) * 1000

        for text in chunks[:WARMUP_CHUNKS]:
            await scan(text)
        samples = [await scan(text) for text in chunks]
    log(f"scan latency: {len(samples)} one-chunk calls")
    return {"chunks": len(samples), **percentiles(samples)}


async def false_positives(
    address: str, tenant: str, dataset: str, chunked: Sequence[tuple[Doc, list[tuple[int, str]]]]
) -> dict[str, Any]:
    """Every chunk of the dataset scanned under the tenant's (default) policy, a document per scan, as
    ingestion's client sends it; counts per action for chunks and for documents, the codes behind them."""
    from isthmus_core.clients.guardrail import GrpcChunkScanner
    from isthmus_core.ports.guard import Action

    chunk_actions: Counter[str] = Counter()
    doc_actions: Counter[str] = Counter()
    codes: Counter[str] = Counter()
    examples: list[str] = []
    scan_ms = 0.0
    async with grpc.aio.insecure_channel(address) as ch:
        scanner = GrpcChunkScanner(ch)
        for doc, chunks in chunked:
            t = time.perf_counter()
            result = await scanner.scan(tenant, doc.doc_id, chunks)
            scan_ms += (time.perf_counter() - t) * 1000
            acted = [v for v in result.verdicts if v.action is not Action.ALLOW]
            chunk_actions.update(v.action.value for v in result.verdicts)
            doc_actions[
                "quarantined"
                if result.quarantines_document or any(v.action is Action.BLOCK for v in result.verdicts)
                else "redacted"
                if any(v.action is Action.REDACT for v in acted)
                else "flagged"
                if acted
                else "clean"
            ] += 1
            for v in acted:
                codes.update({f.code for f in v.findings})
                if len(examples) < 5:
                    span = next((f for f in v.findings if f.start is not None), None)
                    text = dict(chunks)[v.index]
                    shown = text[span.start : span.end] if span and span.end is not None else text[:80]
                    examples.append(f"{doc.doc_id}#{v.index} {v.action.value}: {shown[:120]!r}")
    n_chunks = sum(chunk_actions.values())
    n_docs = len(chunked)
    return {
        "dataset": dataset,
        "documents": n_docs,
        "chunks": n_chunks,
        "chunk_actions": dict(chunk_actions),
        "document_outcomes": dict(doc_actions),
        "chunks_quarantined_share": chunk_actions["block"] / n_chunks if n_chunks else 0.0,
        "chunks_flagged_share": chunk_actions["flag"] / n_chunks if n_chunks else 0.0,
        "chunks_redacted_share": chunk_actions["redact"] / n_chunks if n_chunks else 0.0,
        "documents_quarantined_share": doc_actions["quarantined"] / n_docs if n_docs else 0.0,
        "documents_touched_share": (n_docs - doc_actions["clean"]) / n_docs if n_docs else 0.0,
        "amortised_ms_per_chunk": scan_ms / n_chunks if n_chunks else 0.0,
        "codes": dict(codes.most_common()),
        "examples": examples,
    }


# -- the run --------------------------------------------------------------------------------------------


async def run(args: argparse.Namespace, log: Callable[[str], None]) -> dict[str, Any]:
    cranfield = load_docs("cranfield", args.docs)
    report: dict[str, Any] = {"docs": len(cranfield)}
    log("starting two platforms: ingestion's scan off and on")
    async with platform(False, args.log_level) as off, platform(True, args.log_level) as on:
        for arm, address in (("off", off), ("on", on)):
            async with grpc.aio.insecure_channel(address) as ch:
                await create_tenant(ch, f"bench-scan-{arm}")
                if arm == "on":
                    await create_tenant(ch, "bench-fp")
        report["throughput"] = await throughput({"off": off, "on": on}, cranfield, args.rounds, log)
        chunked = {ds: chunk_docs(load_docs(ds, args.fp_docs)) for ds in FP_DATASETS}
        sample = [t for _, cs in chunked["cranfield"] for _, t in cs][: args.latency_chunks + WARMUP_CHUNKS]
        report["latency"] = await chunk_latency(on, "bench-fp", sample, log)
        report["false_positives"] = []
        for ds, docs in chunked.items():
            log(f"false positives: scanning {ds}")
            report["false_positives"].append(await false_positives(on, "bench-fp", ds, docs))
    return report


def tables(report: dict[str, Any]) -> list[Table]:
    t1 = Table(title=f"Ingest throughput, scanning on vs off ({report['docs']} Cranfield documents)")
    for col in ("scan", "documents/s", "chunks/s", "wall s", "statuses"):
        t1.add_column(col)
    for label in ("off", "on"):
        r = report["throughput"][label]
        t1.add_row(
            label,
            f"{r['docs_per_s']:.1f}",
            f"{r['chunks_per_s']:.1f}",
            f"{r['ingest_s']:.1f}",
            str(r["statuses"]),
        )
    tp = report["throughput"]
    t1.caption = (
        f"chunks/s on ÷ off = {tp['on_vs_off']:.2f}; added {tp['added_ms_per_chunk']:.2f} ms per chunk; "
        f"median round time on ÷ off = {tp['round_time_ratio_median']:.2f} "
        f"({tp['rounds']} rounds, alternating)"
    )

    lat = report["latency"]
    t2 = Table(title="Scan cost per chunk (ScanChunks over gRPC)")
    for col in ("measure", "p50 ms", "p95 ms", "mean ms"):
        t2.add_column(col)
    t2.add_row(
        f"one chunk per call ({lat['chunks']} Cranfield chunks)",
        f"{lat['p50']:.2f}",
        f"{lat['p95']:.2f}",
        f"{lat['mean']:.2f}",
    )
    for fp in report["false_positives"]:
        t2.add_row(
            f"amortised, a document per call ({fp['dataset']})", "", "", f"{fp['amortised_ms_per_chunk']:.2f}"
        )

    t3 = Table(title="Genuine documents under the default policy (false positives)")
    for col in (
        "dataset",
        "documents",
        "chunks",
        "quarantined chunks",
        "flagged",
        "redacted",
        "documents touched",
        "codes",
    ):
        t3.add_column(col)
    for fp in report["false_positives"]:
        t3.add_row(
            fp["dataset"],
            str(fp["documents"]),
            str(fp["chunks"]),
            f"{fp['chunks_quarantined_share']:.2%}",
            f"{fp['chunks_flagged_share']:.2%}",
            f"{fp['chunks_redacted_share']:.2%}",
            f"{fp['documents_touched_share']:.2%}",
            ", ".join(f"{c} {n}" for c, n in list(fp["codes"].items())[:6]) or "-",
        )
    return [t1, t2, t3]


def main(argv: Sequence[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="isthmus_bench.guardrails.ingest", description=__doc__.split("\n\n")[0])
    p.add_argument("--docs", type=int, default=1400, help="Cranfield documents ingested per platform")
    p.add_argument("--rounds", type=int, default=8, help="slices ingested alternately by the two platforms")
    p.add_argument("--latency-chunks", type=int, default=400, help="chunks timed one per ScanChunks call")
    p.add_argument("--fp-docs", type=int, default=None, help="documents per dataset scanned (default: all)")
    p.add_argument("--log-level", default="warning")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    args = p.parse_args(argv)
    console = Console(stderr=args.json)

    def log(msg: str) -> None:
        console.log(msg)

    report = asyncio.run(run(args, log))
    if args.json:
        print(json.dumps(report, indent=2))
        return
    for t in tables(report):
        console.print(t)
    for fp in report["false_positives"]:
        for e in fp["examples"]:
            console.print(f"  {fp['dataset']}: {e}")


if __name__ == "__main__":
    main()
