"""The worker that judges sampled live answers.

Samples wait in the store as ``pending`` (:class:`~isthmus_evaluation.online_store.OnlineStore`): the
worker reads a bounded batch of the oldest, scores ``concurrency`` of them at once with ``score`` (the
RAG metrics with the configured judge: ``rag_metrics.score_sample``), writes each result back (``scored``
or ``failed`` with the judge's failure code), and goes on until none is left; then it sleeps until a new
sample is announced (:meth:`SampleScorer.wake`). Nothing is held in memory but the batch: after a
restart the samples still pending are scored.

A score function that raises (it should return failures as ``SampleScores.failure``) fails the sample
with the code ``error``; :func:`no_judge` fails every sample with ``no_judge`` (a judge configured that
this deployment cannot build).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable

import structlog

from isthmus_core.ports.judge import JudgeFailed
from isthmus_evaluation.online import rag_sample
from isthmus_evaluation.online_store import DEFAULT_PENDING_BATCH, OnlineStore, PendingSample
from isthmus_evaluation.rag_metrics import RagSample, SampleScores

log = structlog.get_logger(__name__)

ScoreFn = Callable[[RagSample, str], Awaitable[SampleScores]]


def no_judge(reason: str) -> ScoreFn:
    """A score function failing every sample with the code ``no_judge`` and ``reason`` as its detail."""

    async def score(sample: RagSample, tenant_id: str) -> SampleScores:
        return SampleScores(failure="no_judge", detail=reason)

    return score


class SampleScorer:
    def __init__(
        self,
        store: OnlineStore,
        score: ScoreFn,
        *,
        concurrency: int = 2,
        batch: int = DEFAULT_PENDING_BATCH,
    ) -> None:
        self._store = store
        self._score = score
        self._concurrency = asyncio.Semaphore(concurrency)
        self._batch = batch
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def wake(self) -> None:
        """A sample was added: score it soon."""
        self._wake.set()

    async def score_pending(self) -> int:
        """Score every pending sample (batch after batch); how many were judged."""
        done = 0
        while True:
            batch = await asyncio.to_thread(self._store.pending, self._batch)
            if not batch:
                return done
            results = await asyncio.gather(*(self._one(p) for p in batch))
            done += sum(results)

    async def _one(self, p: PendingSample) -> bool:
        async with self._concurrency:
            try:
                result = await self._score(rag_sample(p.sample), p.tenant_id)
            except JudgeFailed as exc:
                result = SampleScores(failure=exc.failure, detail=str(exc))
            except Exception as exc:  # a defect of the scorer: counted, never retried forever
                log.exception("online sample scoring failed", tenant=p.tenant_id, answer=p.answer_id)
                result = SampleScores(failure="error", detail=f"{type(exc).__name__}: {exc}")
        return await asyncio.to_thread(self._store.record_scores, p.tenant_id, p.answer_id, result)

    async def _run(self) -> None:
        while True:
            self._wake.clear()
            try:
                await self.score_pending()
            except Exception:  # the store unavailable a moment: try again at the next sample
                log.exception("online scoring pass failed")
            await self._wake.wait()

    async def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="isthmus-online-scorer")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
