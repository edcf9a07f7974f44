"""Micro-batching in front of a synchronous :class:`~isthmus_core.ports.embedder.Embedder`.

Concurrent callers' texts are coalesced into batches of at most ``max_batch`` texts of one kind. A
single worker task forms a batch (waiting at most ``max_wait_ms`` after the oldest queued text for
more texts to arrive), runs ``embedder.embed`` in a dedicated thread — the event loop never blocks —
and hands each caller exactly its own rows, in order. One batch runs at a time — the embedder spreads
a batch over every core itself (see :mod:`isthmus_core.onnx_embedder`) — and texts queue up while it runs,
so under load the next batch leaves at once, without waiting.

A caller's request larger than ``max_batch`` is split across consecutive batches; a batch may hold the
tail of one request and the head of the next. If the embedder raises, every caller with texts in that
batch gets the exception (and the rest of its request is dropped); other callers are unaffected.
"""

from __future__ import annotations

import asyncio
import collections
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from isthmus_core.errors import ConfigurationError, IsthmusError, Unavailable
from isthmus_core.ports.embedder import Embedder, Embeddings, TextKind
from isthmus_core.ports.hashing_embedder import check_embed_args


@dataclass(eq=False, slots=True)
class _Request:
    texts: list[str]
    kind: TextKind
    future: asyncio.Future[Embeddings]
    enqueued_at: float
    #: texts before ``taken`` are in a batch (running or done)
    taken: int = 0
    #: rows computed so far, as (start, vectors) parts
    parts: list[tuple[int, npt.NDArray[np.float32]]] = field(default_factory=list)
    filled: int = 0

    @property
    def pending(self) -> int:
        return len(self.texts) - self.taken

    @property
    def abandoned(self) -> bool:
        """Failed or cancelled by its caller: no more work should be done for it."""
        return self.future.done()


@dataclass(slots=True)
class _Slice:
    request: _Request
    start: int
    end: int


class MicroBatcher:
    """Coalesces concurrent ``embed`` calls into batches computed in a worker thread."""

    def __init__(self, embedder: Embedder, *, max_batch: int = 32, max_wait_ms: float = 5.0) -> None:
        if max_batch < 1:
            raise ConfigurationError(f"max_batch must be at least 1, got {max_batch}")
        if max_wait_ms < 0:
            raise ConfigurationError(f"max_wait_ms must not be negative, got {max_wait_ms}")
        self._embedder = embedder
        self._max_batch = max_batch
        self._max_wait = max_wait_ms / 1000.0
        self._queue: collections.deque[_Request] = collections.deque()
        self._wakeup: asyncio.Event | None = None
        self._worker: asyncio.Task[None] | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._inflight: list[_Slice] = []
        self._accepting = False

    @property
    def embedder(self) -> Embedder:
        return self._embedder

    @property
    def running(self) -> bool:
        return self._accepting

    async def start(self) -> None:
        """Start the worker (idempotent)."""
        if self._worker is not None and not self._worker.done():
            self._accepting = True
            return
        self._wakeup = asyncio.Event()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="isthmus-embed")
        self._accepting = True
        self._worker = asyncio.create_task(self._run(), name="isthmus-embedding-batcher")

    async def stop(self) -> None:
        """Stop accepting texts, finish everything already queued, then stop the worker (idempotent)."""
        self._accepting = False
        worker, self._worker = self._worker, None
        if worker is None:
            return
        assert self._wakeup is not None
        self._wakeup.set()
        try:
            await worker
        finally:
            if self._executor is not None:
                self._executor.shutdown(wait=True)
                self._executor = None

    async def embed(self, texts: Sequence[str], kind: TextKind = "passage") -> Embeddings:
        """Embed ``texts`` as part of a shared batch; returns exactly these texts' vectors, in order."""
        check_embed_args(texts, kind)
        if not self._accepting or self._wakeup is None:
            raise Unavailable("the embedding batcher is not running (not started yet, or shutting down)")
        if not texts:
            return Embeddings(
                np.empty((0, self._embedder.dimension), dtype=np.float32), self._embedder.model_id
            )
        loop = asyncio.get_running_loop()
        request = _Request(list(texts), kind, loop.create_future(), time.monotonic())
        self._queue.append(request)
        self._wakeup.set()
        return await request.future

    # -- worker ---------------------------------------------------------------------------------------

    async def _run(self) -> None:
        try:
            await self._loop()
        finally:  # cancelled or crashed: nobody may wait forever
            reason = Unavailable("the embedding batcher stopped before computing these texts")
            for request in [*self._queue, *(s.request for s in self._inflight)]:
                if not request.future.done():
                    request.future.set_exception(reason)
            self._queue.clear()
            self._inflight = []

    async def _loop(self) -> None:
        assert self._wakeup is not None
        while True:
            self._drop_abandoned()
            if not self._queue:
                if not self._accepting:
                    return
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            await self._wait_for_more()
            batch = self._take_batch()
            if batch:
                self._inflight = batch
                await self._compute(batch)
                self._inflight = []

    async def _wait_for_more(self) -> None:
        """Wait until a full batch is queued, the oldest text has waited max_wait, or we are stopping."""
        assert self._wakeup is not None
        deadline = self._queue[0].enqueued_at + self._max_wait
        while self._accepting and self._queued(self._queue[0].kind) < self._max_batch:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            self._wakeup.clear()
            try:
                await asyncio.wait_for(self._wakeup.wait(), remaining)
            except TimeoutError:
                return
            self._drop_abandoned()
            if not self._queue:
                return

    def _queued(self, kind: TextKind) -> int:
        return sum(r.pending for r in self._queue if r.kind == kind)

    def _drop_abandoned(self) -> None:
        if any(r.abandoned for r in self._queue):
            self._queue = collections.deque(r for r in self._queue if not r.abandoned)

    def _take_batch(self) -> list[_Slice]:
        """Up to max_batch texts of the oldest request's kind, oldest first."""
        self._drop_abandoned()
        if not self._queue:
            return []
        kind = self._queue[0].kind
        batch: list[_Slice] = []
        room = self._max_batch
        for request in list(self._queue):
            if room == 0:
                break
            if request.kind != kind:
                continue
            n = min(room, request.pending)
            batch.append(_Slice(request, request.taken, request.taken + n))
            request.taken += n
            room -= n
            if request.pending == 0:
                self._queue.remove(request)
        return batch

    async def _compute(self, batch: list[_Slice]) -> None:
        texts = [t for s in batch for t in s.request.texts[s.start : s.end]]
        kind = batch[0].request.kind
        loop = asyncio.get_running_loop()
        try:
            result = await loop.run_in_executor(self._executor, self._embedder.embed, texts, kind)
            if result.vectors.shape[0] != len(texts):
                raise IsthmusError(
                    f"embedder {self._embedder.model_id} returned {result.vectors.shape[0]} vectors "
                    f"for {len(texts)} texts"
                )
        except Exception as exc:
            for s in batch:
                if not s.request.future.done():
                    s.request.future.set_exception(exc)
            return
        offset = 0
        for s in batch:
            n = s.end - s.start
            request = s.request
            if not request.future.done():
                request.parts.append((s.start, result.vectors[offset : offset + n]))
                request.filled += n
                if request.filled == len(request.texts):
                    request.future.set_result(Embeddings(_assemble(request.parts), result.model_id))
            offset += n


def _assemble(parts: list[tuple[int, npt.NDArray[np.float32]]]) -> npt.NDArray[np.float32]:
    if len(parts) == 1:
        return parts[0][1]
    return np.concatenate([vectors for _, vectors in sorted(parts, key=lambda p: p[0])])
