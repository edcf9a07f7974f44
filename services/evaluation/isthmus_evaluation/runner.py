"""``RunEval`` / ``RunEvalUpload``: ingest a BEIR dataset for a throwaway tenant, run its queries per
mode, score them.

The runner is given a loaded dataset (read under the datasets root, or parsed from uploaded bytes: see
:mod:`isthmus_evaluation.datasets`) and talks to the platform only through the
:class:`~isthmus_core.ports.eval_platform.EvalPlatform` port (the gRPC client of
:mod:`isthmus_evaluation.clients` in the module), so it measures exactly what users get.
"""

from __future__ import annotations

import asyncio
import re
import time
import uuid
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass

from isthmus_core.contracts.ids import TenantId, parse_tenant_id
from isthmus_core.errors import InvalidArgument, Unavailable
from isthmus_core.ports.eval_platform import EvalPlatform
from isthmus_core.store.port import SearchMode
from isthmus_evaluation.datasets import BeirDataset, CorpusDoc, doc_text
from isthmus_evaluation.metrics import chunk_hits_to_doc_run, evaluate_run, percentile
from isthmus_evaluation.report import EvalReport, ModeReport

#: eval mode → (search mode, rerank); every mode says whether it reranks, whatever the service default
SEARCHES: Mapping[str, tuple[SearchMode, bool]] = {
    "bm25": (SearchMode.BM25, False),
    "dense": (SearchMode.DENSE, False),
    "hybrid": (SearchMode.HYBRID, False),
    "hybrid+rerank": (SearchMode.HYBRID, True),
}
MODES = tuple(SEARCHES)


def eval_tenant_id(dataset: str) -> TenantId:
    """A fresh throwaway tenant named after the dataset, ``eval-<name>-<8 hex>``: the name folded to the
    tenant id alphabet (a directory name may hold dots, spaces, capitals...), then parsed."""
    slug = re.sub(r"[^a-z0-9]+", "-", dataset.lower()).strip("-")[:40].strip("-")
    return parse_tenant_id("-".join(p for p in ("eval", slug, uuid.uuid4().hex[:8]) if p))


@dataclass(frozen=True, slots=True)
class EvalProgress:
    phase: str
    done: int
    total: int


def check_modes(modes: Sequence[str]) -> list[str]:
    """The modes to run (all when empty), or :class:`InvalidArgument` naming the unknown ones."""
    chosen = list(modes) or list(MODES)
    bad = [m for m in chosen if m not in MODES]
    if bad:
        raise InvalidArgument(f"unknown mode(s) {bad}; choose from {list(MODES)}")
    return chosen


class EvalRunner:
    def __init__(
        self,
        platform: EvalPlatform,
        *,
        upload_concurrency: int = 8,
        search_concurrency: int = 4,
        index_timeout_s: float = 3600.0,
        top_k: int = 100,
        poll_interval_s: float = 0.5,
    ) -> None:
        self._platform = platform
        self._up = upload_concurrency
        self._sq = search_concurrency
        self._timeout = index_timeout_s
        self._k = top_k
        self._poll = poll_interval_s

    async def run(
        self, ds: BeirDataset, modes: Sequence[str] = (), max_queries: int = 0, keep_tenant: bool = False
    ) -> AsyncIterator[EvalProgress | EvalReport]:
        modes = check_modes(modes)
        queries = sorted(ds.queries.items())
        if max_queries > 0:
            queries = queries[:max_queries]
        qrels = {qid: ds.qrels[qid] for qid, _ in queries}
        tenant = eval_tenant_id(ds.name)
        await self._platform.create_tenant(tenant)
        try:
            t0 = time.perf_counter()
            async for p in self._ingest(tenant, ds):
                yield p
            ingest_s = time.perf_counter() - t0
            reports = []
            for mode in modes:
                async for item in self._search_mode(tenant, mode, queries, qrels):
                    if isinstance(item, ModeReport):
                        reports.append(item)
                    else:
                        yield item
            yield EvalReport(
                dataset=ds.name,
                documents=len(ds.corpus),
                queries=len(queries),
                ingest_seconds=ingest_s,
                tenant_id=tenant,
                modes=reports,
            )
        finally:
            if not keep_tenant:
                await self._platform.delete_tenant(tenant)

    async def _search_mode(
        self,
        tenant: TenantId,
        mode: str,
        queries: Sequence[tuple[str, str]],
        qrels: dict[str, dict[str, int]],
    ) -> AsyncIterator[EvalProgress | ModeReport]:
        run: dict[str, dict[str, float]] = {}
        latencies: list[float] = []
        sem = asyncio.Semaphore(self._sq)
        search_mode, rerank = SEARCHES[mode]

        async def one(qid: str, text: str) -> None:
            async with sem:
                q0 = time.perf_counter()
                hits = await self._platform.search(tenant, text, search_mode, self._k, rerank=rerank)
                latencies.append((time.perf_counter() - q0) * 1000)
            run[qid] = chunk_hits_to_doc_run(hits)

        tasks = [asyncio.create_task(one(qid, text)) for qid, text in queries]
        try:
            for n, fut in enumerate(asyncio.as_completed(tasks), 1):
                await fut
                if n % 25 == 0 or n == len(queries):
                    yield EvalProgress(f"search:{mode}", n, len(queries))
        finally:
            for t in tasks:
                t.cancel()
        m = evaluate_run(qrels, run)
        yield ModeReport(
            mode=mode,
            ndcg_at_10=m.ndcg_at_10,
            recall_at_100=m.recall_at_100,
            mrr_at_10=m.mrr_at_10,
            latency_p50_ms=percentile(latencies, 50) if latencies else 0.0,
            latency_p95_ms=percentile(latencies, 95) if latencies else 0.0,
        )

    async def _ingest(self, tenant: TenantId, ds: BeirDataset) -> AsyncIterator[EvalProgress]:
        corpus = ds.corpus
        sem = asyncio.Semaphore(self._up)
        uploaded = 0

        async def up(doc_id: str, doc: CorpusDoc) -> None:
            nonlocal uploaded
            async with sem:
                await self._platform.upload(tenant, doc_id, f"{doc_id}.txt", doc_text(doc).encode())
            uploaded += 1

        # documents with no text at all (two in Cranfield) cannot be indexed: they stay unretrievable,
        # which is also how BEIR's own evaluation treats them
        docs = {i: d for i, d in corpus.items() if doc_text(d).strip()}
        total = len(docs)
        tasks = [asyncio.create_task(up(i, d)) for i, d in docs.items()]
        try:
            for fut in asyncio.as_completed(tasks):
                await fut
                if uploaded % 100 == 0 or uploaded == total:
                    yield EvalProgress("upload", uploaded, total)
        finally:
            for t in tasks:
                t.cancel()
        deadline = time.monotonic() + self._timeout
        while True:  # bounded by the deadline
            state = await self._platform.progress(tenant)
            yield EvalProgress("index", state.indexed + state.failed, state.total)
            if state.done:
                return
            if time.monotonic() > deadline:
                raise Unavailable(
                    f"corpus not indexed within {self._timeout:.0f}s "
                    f"({state.indexed}/{state.total} documents)"
                )
            await asyncio.sleep(self._poll)
