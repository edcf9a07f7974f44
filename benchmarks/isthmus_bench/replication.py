"""What to mirror between regions, measured: the chunked documents (the target region embeds them again)
or the embedded ones (the target only indexes them) — and, against two live regions, how far behind the
replica is under steady ingest.

``python -m isthmus_bench.replication [--docs 200] [--json]`` (offline: the real ingestion, embedding and
retrieval cores with their default settings — bge-small ONNX, the embedded store — wired without a bus):
for the same documents, side by side in one run,

* **bytes per document** a mirror copies: the JSON of the ``chunks.created`` events vs the
  ``chunks.embedded`` events (record values, as MirrorMaker 2 copies them; headers are the same for both);
* **target-region time per document** (wall clock, one step after another): embedding the chunks and
  indexing them (mirror ``chunks.created``) vs indexing only (mirror ``chunks.embedded``).

``python -m isthmus_bench.replication --regions regions.toml [--rate 2] [--duration 30]`` (live, the regions
of ``make regions-up``): a steady writer uploads small unique documents to the tenant's primary; for each
it records the acknowledgement, the moment the primary lists it INDEXED (the local baseline) and the
moment the other region does (replication lag = that minus the acknowledgement).

Texts: SciFact abstracts from ``../shared/datasets/scifact`` (see its README), else Cranfield.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import statistics
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

DATASETS = Path(__file__).resolve().parents[2].parent / "shared" / "datasets"


def _texts(n: int) -> tuple[list[tuple[str, str]], str]:
    for name in ("scifact", "cranfield"):
        corpus = DATASETS / name / "corpus.jsonl"
        if corpus.is_file():
            docs: list[tuple[str, str]] = []
            with corpus.open(encoding="utf-8") as f:
                for line in f:
                    d = json.loads(line)
                    docs.append((str(d["_id"]), f"{d.get('title', '')}\n\n{d.get('text', '')}".strip()))
                    if len(docs) == n:
                        break
            return docs, f"{name} ({len(docs)} documents)"
    raise SystemExit(f"no dataset under {DATASETS}: the offline comparison needs ../shared/datasets")


def offline(n_docs: int) -> dict[str, Any]:
    """The real pipeline cores with their default settings, wired by hand without a bus: ingestion
    chunks each document into ``chunks.created`` events, embedding turns each into a ``chunks.embedded``
    event, retrieval applies it to an embedded store (as it applies a mirrored batch)."""
    from isthmus_core.contracts.events import ChunksCreated, ChunksEmbedded, ChunksIndexed, TenantDeleted
    from isthmus_core.contracts.ids import TenantId
    from isthmus_core.models import BGE_SMALL_EN, bundled_model_dir
    from isthmus_core.onnx_embedder import OnnxEmbedder
    from isthmus_core.ports.embedding_client import QueryEmbedding
    from isthmus_core.ports.tenants import InMemoryTenantDirectory
    from isthmus_core.telemetry.logging import configure_logging
    from isthmus_embedding.batcher import MicroBatcher
    from isthmus_embedding.service import EmbeddingCore
    from isthmus_embedding.settings import EmbeddingSettings
    from isthmus_ingestion.chunking import Chunker
    from isthmus_ingestion.registry import DocumentRegistry
    from isthmus_ingestion.service import Ingestion
    from isthmus_ingestion.settings import IngestionSettings
    from isthmus_retrieval.service import Retrieval
    from isthmus_retrieval.store_embedded import EmbeddedStore

    ing, emb = IngestionSettings.model_fields, EmbeddingSettings.model_fields
    model_dir = bundled_model_dir(BGE_SMALL_EN)
    docs, source = _texts(n_docs)
    tenant = TenantId("bench")
    created: list[ChunksCreated] = []
    embedded: list[ChunksEmbedded] = []
    embed_s = index_s = 0.0

    async def keep_created(ev: ChunksCreated) -> None:
        created.append(ev)

    async def keep_embedded(ev: ChunksEmbedded) -> None:
        embedded.append(ev)

    async def ignore(ev: ChunksIndexed | TenantDeleted) -> None:
        pass

    class NoQueries:
        async def embed_query(self, text: str) -> QueryEmbedding:
            raise AssertionError("the bench searches nothing")

    async def run() -> None:
        nonlocal embed_s, index_s
        with tempfile.TemporaryDirectory() as tmp:
            registry = DocumentRegistry(Path(tmp) / "documents.sqlite")
            chunker = Chunker(
                model_dir / "tokenizer.json",
                max_tokens=ing["chunk_max_tokens"].default,
                overlap_tokens=ing["chunk_overlap_tokens"].default,
            )
            ingestion = Ingestion(
                registry,
                chunker,
                InMemoryTenantDirectory([tenant]),
                keep_created,
                max_bytes=ing["max_upload_bytes"].default,
                chunks_per_event=ing["chunks_per_event"].default,
            )
            batcher = MicroBatcher(
                OnnxEmbedder(model_dir),
                max_batch=emb["max_batch"].default,
                max_wait_ms=emb["max_wait_ms"].default,
            )
            embedding = EmbeddingCore(
                batcher,
                keep_embedded,
                max_texts=emb["max_texts_per_request"].default,
                max_text_chars=emb["max_text_chars"].default,
            )
            store = EmbeddedStore(Path(tmp) / "store")
            await store.create_tenant(tenant)
            retrieval = Retrieval(store, NoQueries(), ignore, ignore)
            await batcher.start()
            try:
                await batcher.embed(["warm up the session"], "passage")
                for doc_id, text in docs:
                    await ingestion.ingest(tenant, f"{doc_id}.txt", text.encode(), document_id=doc_id)
                for ev in created:
                    t0 = time.perf_counter()
                    await embedding.on_chunks_created(ev)
                    embed_s += time.perf_counter() - t0
                for out in embedded:
                    t0 = time.perf_counter()
                    await retrieval.apply(out)
                    index_s += time.perf_counter() - t0
            finally:
                await batcher.stop()
                await store.close()
                registry.close()

    configure_logging("warning")  # the cores log every document; the figures go to stdout alone
    asyncio.run(run())
    n = len(docs)
    created_bytes = sum(len(ev.model_dump_json().encode()) for ev in created)
    embedded_bytes = sum(len(ev.model_dump_json().encode()) for ev in embedded)
    return {
        "texts": source,
        "documents": n,
        "chunks": sum(len(ev.chunks) for ev in created),
        "mirror_chunks_created": {
            "bytes_per_document": created_bytes / n,
            "target_ms_per_document": (embed_s + index_s) * 1000 / n,
        },
        "mirror_chunks_embedded": {
            "bytes_per_document": embedded_bytes / n,
            "target_ms_per_document": index_s * 1000 / n,
        },
    }


def live(regions_file: Path, rate: float, duration_s: float, tenant: str) -> dict[str, Any]:
    import grpc

    from isthmus.ingestion.v1 import ingestion_pb2 as ipb
    from isthmus.ingestion.v1 import ingestion_pb2_grpc as igrpc
    from isthmus.retrieval.v1 import retrieval_pb2 as rpb
    from isthmus.retrieval.v1 import retrieval_pb2_grpc as rgrpc
    from isthmus_core.regions import load_regions

    config = load_regions(regions_file)
    primary = config.primary_of(tenant)
    replica = next(r for r in config.names if r != primary)
    channels: dict[str, grpc.aio.Channel] = {}

    async def run() -> dict[str, Any]:
        channels.update({r: grpc.aio.insecure_channel(config.region(r).endpoint) for r in config.names})
        for ch in channels.values():
            try:
                await rgrpc.RetrievalServiceStub(ch).CreateTenant(
                    rpb.CreateTenantRequest(tenant_id=tenant), timeout=10
                )
            except grpc.aio.AioRpcError as exc:
                if exc.code() != grpc.StatusCode.ALREADY_EXISTS:
                    raise
        ingest = {r: igrpc.IngestionServiceStub(ch) for r, ch in channels.items()}
        run_id = uuid.uuid4().hex[:8]
        acked: dict[str, float] = {}
        seen: dict[str, dict[str, float]] = {primary: {}, replica: {}}

        async def write(i: int) -> None:
            doc = f"lag-{run_id}-{i}"
            text = f"Replication lag probe {run_id} number {i}: a document about tidal estuaries {i}."

            async def parts() -> Any:
                yield ipb.UploadRequest(
                    header=ipb.UploadHeader(tenant_id=tenant, filename=f"{doc}.txt", document_id=doc)
                )
                yield ipb.UploadRequest(data=text.encode())

            await ingest[primary].Upload(parts(), timeout=30)
            acked[doc] = time.monotonic()

        async def watch(region: str) -> None:
            while True:
                resp = await ingest[region].ListDocuments(
                    ipb.ListDocumentsRequest(tenant_id=tenant, status=ipb.DOCUMENT_STATUS_INDEXED), timeout=10
                )
                now = time.monotonic()
                for d in resp.documents:
                    if d.document_id in acked and d.document_id not in seen[region]:
                        seen[region][d.document_id] = now
                if writing_done.is_set() and all(len(seen[r]) == len(acked) for r in seen):
                    caught_up.set()
                await asyncio.sleep(0.2)

        writing_done, caught_up = asyncio.Event(), asyncio.Event()
        watchers = [asyncio.create_task(watch(r)) for r in (primary, replica)]
        n = int(rate * duration_s)
        start = time.monotonic()
        for i in range(n):
            await asyncio.sleep(max(0.0, start + i / rate - time.monotonic()))
            await write(i)
        writing_done.set()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(caught_up.wait(), 120)
        for w in watchers:
            w.cancel()

        def lags(region: str) -> dict[str, float | int]:
            xs = sorted(seen[region][d] - acked[d] for d in seen[region])
            if not xs:
                return {"documents": 0}
            return {
                "documents": len(xs),
                "p50_s": statistics.median(xs),
                "p95_s": xs[min(len(xs) - 1, int(0.95 * len(xs)))],
                "max_s": xs[-1],
            }

        return {
            "tenant": tenant,
            "primary": primary,
            "replica": replica,
            "acknowledged": len(acked),
            "indexed_in_primary_after_ack": lags(primary),
            "indexed_in_replica_after_ack": lags(replica),
            "missing_in_replica_after_120s": len(acked) - len(seen[replica]),
        }

    async def run_and_close() -> dict[str, Any]:
        try:
            return await run()
        finally:
            for ch in channels.values():
                await ch.close()

    return asyncio.run(run_and_close())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--docs", type=int, default=200, help="documents for the offline comparison")
    ap.add_argument("--regions", type=Path, help="a regions file: measure replication lag live instead")
    ap.add_argument("--rate", type=float, default=2.0, help="live: uploads per second")
    ap.add_argument("--duration", type=float, default=30.0, help="live: seconds of uploads")
    ap.add_argument("--tenant", default="bench-lag", help="live: the tenant (created in every region)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    if args.regions:
        result = live(args.regions, args.rate, args.duration, args.tenant)
        if args.json:
            print(json.dumps(result, indent=2))
            return
        print(
            f"steady ingest: {result['acknowledged']} uploads to {result['primary']} "
            f"({args.rate}/s for {args.duration:.0f} s), tenant {result['tenant']}"
        )
        for label, key in (
            ("indexed in the primary (baseline)", "indexed_in_primary_after_ack"),
            ("indexed in the replica", "indexed_in_replica_after_ack"),
        ):
            r = result[key]
            if r["documents"]:
                print(
                    f"  {label:36s} after ack: p50 {r['p50_s']:.2f} s  p95 {r['p95_s']:.2f} s  "
                    f"max {r['max_s']:.2f} s  ({r['documents']} documents)"
                )
        print(f"  missing in the replica after 120 s: {result['missing_in_replica_after_120s']}")
        return
    result = offline(args.docs)
    if args.json:
        print(json.dumps(result, indent=2))
        return
    c, e = result["mirror_chunks_created"], result["mirror_chunks_embedded"]
    print(f"texts: {result['texts']}, {result['chunks']} chunks")
    print(f"{'mirror':22s} {'bytes/document':>15s} {'target ms/document':>24s}")
    print(f"{'chunks.created':22s} {c['bytes_per_document']:15,.0f} {c['target_ms_per_document']:24.1f}")
    print(f"{'chunks.embedded':22s} {e['bytes_per_document']:15,.0f} {e['target_ms_per_document']:24.1f}")
    print(
        f"embedded mirror: x{e['bytes_per_document'] / c['bytes_per_document']:.1f} bytes, "
        f"x{e['target_ms_per_document'] / c['target_ms_per_document']:.2f} target time"
    )


if __name__ == "__main__":
    main()
