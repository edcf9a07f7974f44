"""Benchmarks behind ``make bench`` (figures, not tests; record results in docs/benchmarks.md).

* ``embedding`` — Isthmus's embedding path vs a raw ONNX Runtime session on the same model and inputs;
* ``query`` — all-in-one ``Ask`` and ``Search`` latency p50/p95 at a fixed offered (open-loop) load;
* ``distributed`` — the same corpus and load through all-in-one and through six processes on a real Kafka.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import time
import urllib.request
from pathlib import Path
from typing import Any

import grpc
from rich.console import Console
from rich.table import Table

from isthmus.agent_orchestrator.v1 import agent_orchestrator_pb2 as ao
from isthmus.agent_orchestrator.v1 import agent_orchestrator_pb2_grpc as ao_grpc
from isthmus.ingestion.v1 import ingestion_pb2, ingestion_pb2_grpc
from isthmus.retrieval.v1 import retrieval_pb2, retrieval_pb2_grpc
from isthmus_cli.standalone import standalone_platform
from isthmus_evaluation.metrics import percentile

DATASETS = Path(__file__).resolve().parents[2].parent / "shared" / "datasets"


def _corpus(n_docs: int) -> tuple[list[tuple[str, str]], list[str]]:
    """Cranfield's first documents and queries when the shared datasets are there, else generated text."""
    corpus_file = DATASETS / "cranfield" / "corpus.jsonl"
    if corpus_file.exists():
        docs, queries = [], []
        with corpus_file.open() as fh:
            for line in fh:
                d = json.loads(line)
                if (d.get("title") or d.get("text", "")).strip():
                    docs.append((d["_id"], f"{d.get('title', '')}\n\n{d.get('text', '')}"))
                if len(docs) >= n_docs:
                    break
        with (DATASETS / "cranfield" / "queries.jsonl").open() as fh:
            queries = [json.loads(line)["text"] for line in fh][:200]
        return docs, queries
    topics = ["boundary layer", "shock wave", "heat transfer", "wing flutter", "supersonic flow"]
    docs = [
        (str(i), f"Report {i} on {topics[i % 5]}. The {topics[i % 5]} was measured at Mach {i % 7 + 1}.")
        for i in range(n_docs)
    ]
    return docs, [f"what is known about {t}?" for t in topics] * 20


async def _offered_load(call, payloads: list[object], rate: float, duration_s: float) -> list[float]:  # type: ignore[no-untyped-def]
    """Open loop: requests start on a fixed schedule whatever the latency (no coordinated omission)."""
    latencies: list[float] = []
    n = int(rate * duration_s)
    start = time.perf_counter()

    async def one(i: int) -> None:
        await asyncio.sleep(max(0.0, start + i / rate - time.perf_counter()))
        t0 = time.perf_counter()
        await call(payloads[i % len(payloads)])
        latencies.append((time.perf_counter() - t0) * 1000)

    await asyncio.gather(*(one(i) for i in range(n)))
    return latencies


async def query_bench(n_docs: int, rate: float, duration_s: float) -> dict[str, float]:
    docs, queries = _corpus(n_docs)
    async with standalone_platform() as address:
        async with grpc.aio.insecure_channel(address) as ch:
            retrieval = retrieval_pb2_grpc.RetrievalServiceStub(ch)
            ingestion = ingestion_pb2_grpc.IngestionServiceStub(ch)
            await retrieval.CreateTenant(retrieval_pb2.CreateTenantRequest(tenant_id="bench"))
            t0 = time.perf_counter()
            for doc_id, text in docs:

                async def parts(doc_id: str = doc_id, text: str = text):  # type: ignore[no-untyped-def]
                    yield ingestion_pb2.UploadRequest(
                        header=ingestion_pb2.UploadHeader(
                            tenant_id="bench", filename=f"{doc_id}.txt", document_id=doc_id
                        )
                    )
                    yield ingestion_pb2.UploadRequest(data=text.encode())

                await ingestion.Upload(parts())
            while True:
                listed = await ingestion.ListDocuments(
                    ingestion_pb2.ListDocumentsRequest(
                        tenant_id="bench", status=ingestion_pb2.DOCUMENT_STATUS_INDEXED
                    )
                )
                if len(listed.documents) >= len(docs):
                    break
                await asyncio.sleep(0.2)
            ingest_s = time.perf_counter() - t0
            orchestrator = ao_grpc.AgentOrchestratorServiceStub(ch)

            async def ask(q: object) -> None:
                await orchestrator.Ask(ao.AskRequest(tenant_id="bench", question=str(q)))

            async def search(q: object) -> None:
                await retrieval.Search(retrieval_pb2.SearchRequest(tenant_id="bench", query=str(q), top_k=10))

            for i in range(5):  # warm-up
                await ask(queries[i])
            ask_lat = await _offered_load(ask, list(queries), rate, duration_s)
            search_lat = await _offered_load(search, list(queries), rate, duration_s)
    return {
        "documents": len(docs),
        "ingest_s": ingest_s,
        "rate_rps": rate,
        "duration_s": duration_s,
        "ask_p50_ms": percentile(ask_lat, 50),
        "ask_p95_ms": percentile(ask_lat, 95),
        "search_p50_ms": percentile(search_lat, 50),
        "search_p95_ms": percentile(search_lat, 95),
        "requests": len(ask_lat) + len(search_lat),
    }


async def _lag_total(metrics_ports: list[int]) -> float:
    """Sum of isthmus_bus_consumer_lag over every group and partition (this process, or scraped)."""
    from prometheus_client.parser import text_string_to_metric_families

    if not metrics_ports:
        from isthmus_core.telemetry.metrics import BUS_CONSUMER_LAG

        return sum(s.value for m in BUS_CONSUMER_LAG.collect() for s in m.samples)

    def fetch(url: str) -> str:
        with urllib.request.urlopen(url, timeout=2) as resp:
            return str(resp.read().decode())

    total = 0.0
    for port in metrics_ports:
        url = f"http://127.0.0.1:{port}/metrics"
        try:
            text = await asyncio.to_thread(fetch, url)
        except OSError:
            continue
        for fam in text_string_to_metric_families(text):
            if fam.name == "isthmus_bus_consumer_lag":
                total += sum(s.value for s in fam.samples)
    return total


async def _ingest_and_query(
    endpoints: dict[str, str],
    docs: list[tuple[str, str]],
    queries: list[str],
    rate: float,
    duration_s: float,
    metrics_ports: list[int],
) -> dict[str, float]:
    from isthmus_core.testing.client import upload

    async with (
        grpc.aio.insecure_channel(endpoints["retrieval"]) as rch,
        grpc.aio.insecure_channel(endpoints["ingestion"]) as ich,
        grpc.aio.insecure_channel(endpoints["agent-orchestrator"]) as och,
    ):
        retrieval = retrieval_pb2_grpc.RetrievalServiceStub(rch)
        await retrieval.CreateTenant(retrieval_pb2.CreateTenantRequest(tenant_id="bench"))
        sem = asyncio.Semaphore(8)
        expected = 0

        async def one(doc_id: str, text: str) -> None:
            nonlocal expected
            async with sem:
                r = await upload(ich, "bench", f"{doc_id}.txt", text.encode(), document_id=doc_id)
            expected += r.chunk_count

        t0 = time.perf_counter()
        await asyncio.gather(*(one(i, t) for i, t in docs))
        lags: list[float] = []
        while True:
            n = (await retrieval.GetTenant(retrieval_pb2.GetTenantRequest(tenant_id="bench"))).chunk_count
            lags.append(await _lag_total(metrics_ports))
            if n >= expected:
                break
            await asyncio.sleep(0.5)
        ingest_s = time.perf_counter() - t0
        orchestrator = ao_grpc.AgentOrchestratorServiceStub(och)

        async def ask(q: object) -> None:
            await orchestrator.Ask(ao.AskRequest(tenant_id="bench", question=str(q)))

        for q in queries[:5]:
            await ask(q)
        ask_lat = await _offered_load(ask, list(queries), rate, duration_s)
    return {
        "chunks": expected,
        "ingest_s": ingest_s,
        "chunks_per_s": expected / ingest_s,
        "lag_max": max(lags),
        "lag_p50": percentile(lags, 50),
        "ask_p50_ms": percentile(ask_lat, 50),
        "ask_p95_ms": percentile(ask_lat, 95),
    }


def _broker(cmd: str, data: Path, port: int = 0) -> str:
    script = str(Path(__file__).resolve().parents[2] / "tests" / "infra" / "kafka.sh")
    args = ["bash", script, cmd, "--dir", str(data), *(["--port", str(port)] if port else [])]
    if cmd == "down" and not data.exists():
        return ""
    out = subprocess.run(args, capture_output=True, text=True, check=True)
    return out.stdout.strip().splitlines()[-1] if out.stdout.strip() else ""


async def distributed_bench(n_docs: int, rate: float, duration_s: float, bootstrap: str) -> dict[str, Any]:
    """The same corpus and load through all-in-one and through six processes on a real Kafka."""
    import tempfile

    from isthmus_core.testing.cluster import SERVICES, Cluster, free_port

    docs, queries = _corpus(n_docs)
    async with standalone_platform() as address:
        aio = await _ingest_and_query({s: address for s in SERVICES}, docs, queries, rate, duration_s, [])
    with tempfile.TemporaryDirectory(prefix="isthmus-bench-") as tmp:
        broker_dir = Path(tmp) / "kafka"
        if not bootstrap:
            bootstrap = await asyncio.to_thread(_broker, "up", broker_dir, free_port())
        cluster = Cluster(Path(tmp), bootstrap, metrics=True)
        try:
            for svc in SERVICES:
                cluster.start(svc)
            for svc in SERVICES:
                await cluster.wait_healthy(svc)
            dist = await _ingest_and_query(
                cluster.endpoints, docs, queries, rate, duration_s, list(cluster.metrics_ports.values())
            )
        finally:
            cluster.stop_all()
            await asyncio.to_thread(_broker, "down", broker_dir)
    return {"all-in-one": aio, "distributed": dist, "documents": len(docs)}


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m isthmus_bench.query")
    sub = parser.add_subparsers(dest="which", required=True)
    sub.add_parser("embedding")
    q = sub.add_parser("query")
    q.add_argument("--docs", type=int, default=400)
    q.add_argument("--rate", type=float, default=4.0, help="offered requests per second")
    q.add_argument("--duration", type=float, default=20.0, help="seconds per measured phase")
    d = sub.add_parser("distributed", help="all-in-one vs six processes on a real Kafka")
    d.add_argument("--docs", type=int, default=600)
    d.add_argument("--rate", type=float, default=4.0)
    d.add_argument("--duration", type=float, default=20.0)
    d.add_argument("--bootstrap", default="", help="an existing Kafka; default: start one (Java + Maven)")
    args = parser.parse_args()
    console = Console()
    if args.which == "embedding":
        from isthmus_bench import embedding

        embedding.main([])
        return
    if args.which == "distributed":
        res = asyncio.run(distributed_bench(args.docs, args.rate, args.duration, args.bootstrap))
        t = Table(title=f"ingest + query, {res['documents']} docs, {args.rate:.0f} Ask/s offered")
        for col in ("mode", "chunks", "chunks/s", "consumer lag p50 / max", "Ask p50 ms", "Ask p95 ms"):
            t.add_column(col)
        for mode in ("all-in-one", "distributed"):
            m = res[mode]
            t.add_row(
                mode,
                str(m["chunks"]),
                f"{m['chunks_per_s']:.1f}",
                f"{m['lag_p50']:.0f} / {m['lag_max']:.0f}",
                f"{m['ask_p50_ms']:.1f}",
                f"{m['ask_p95_ms']:.1f}",
            )
        console.print(t)
        ratio = res["distributed"]["chunks_per_s"] / res["all-in-one"]["chunks_per_s"]
        console.print(f"distributed / all-in-one ingestion throughput: {ratio:.2f}x (target >= 0.8x)")
        return
    r = asyncio.run(query_bench(args.docs, args.rate, args.duration))
    table = Table(title=f"all-in-one query latency, {r['rate_rps']:.0f} req/s offered, {r['documents']} docs")
    table.add_column("call")
    table.add_column("p50 ms", justify="right")
    table.add_column("p95 ms", justify="right")
    table.add_row(
        "Ask (guard → search → extractive → guard)", f"{r['ask_p50_ms']:.1f}", f"{r['ask_p95_ms']:.1f}"
    )
    table.add_row("Search (hybrid, top 10)", f"{r['search_p50_ms']:.1f}", f"{r['search_p95_ms']:.1f}")
    console.print(table)
    console.print(f"ingest of {r['documents']} documents until indexed: {r['ingest_s']:.1f} s")


if __name__ == "__main__":
    main()
