from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator, Sequence

import numpy as np
import pytest

from isthmus_core.errors import ConfigurationError, InvalidArgument, Unavailable
from isthmus_core.ports.embedder import Embeddings, TextKind
from isthmus_core.ports.hashing_embedder import HashingEmbedder
from isthmus_embedding.batcher import MicroBatcher


class BoomError(RuntimeError):
    pass


class RecordingEmbedder:
    """HashingEmbedder that records each batch (size, kind, thread), can be slow, and fails on 'boom'."""

    def __init__(self, delay_s: float = 0.0) -> None:
        self.inner = HashingEmbedder(dimension=16)
        self.delay_s = delay_s
        self.batches: list[tuple[int, str]] = []
        self.threads: set[int] = set()

    @property
    def model_id(self) -> str:
        return self.inner.model_id

    @property
    def dimension(self) -> int:
        return self.inner.dimension

    def embed(self, texts: Sequence[str], kind: TextKind = "passage") -> Embeddings:
        self.batches.append((len(texts), kind))
        self.threads.add(threading.get_ident())
        if self.delay_s:
            time.sleep(self.delay_s)
        if any("boom" in t for t in texts):
            raise BoomError("the embedder exploded")
        return self.inner.embed(texts, kind)


def texts_of(caller: int, n: int) -> list[str]:
    return [f"caller {caller} text {j} word{caller * 100 + j}" for j in range(n)]


@pytest.fixture
async def started() -> AsyncIterator[tuple[MicroBatcher, RecordingEmbedder]]:
    fake = RecordingEmbedder()
    batcher = MicroBatcher(fake, max_batch=8, max_wait_ms=50)
    await batcher.start()
    yield batcher, fake
    await batcher.stop()


async def test_concurrent_callers_are_coalesced(started: tuple[MicroBatcher, RecordingEmbedder]) -> None:
    batcher, fake = started
    await asyncio.gather(*(batcher.embed(texts_of(i, 2)) for i in range(6)))
    sizes = [n for n, _ in fake.batches]
    assert sum(sizes) == 12
    assert max(sizes) == 8  # four callers' texts in one batch
    assert len(sizes) == 2


async def test_each_caller_gets_its_own_vectors_in_order(
    started: tuple[MicroBatcher, RecordingEmbedder],
) -> None:
    batcher, fake = started
    requests = [texts_of(i, n) for i, n in enumerate([3, 1, 5, 2, 7, 4])]
    results = await asyncio.gather(*(batcher.embed(t) for t in requests))
    assert len(fake.batches) < len(requests)  # coalescing happened, so the check below is meaningful
    for texts, result in zip(requests, results, strict=True):
        expected = fake.inner.embed(texts).vectors
        np.testing.assert_array_equal(result.vectors, expected)
        assert result.model_id == fake.model_id


async def test_a_request_larger_than_max_batch_is_split(
    started: tuple[MicroBatcher, RecordingEmbedder],
) -> None:
    batcher, fake = started
    texts = texts_of(1, 20)
    result = await batcher.embed(texts)
    assert [n for n, _ in fake.batches] == [8, 8, 4]
    np.testing.assert_array_equal(result.vectors, fake.inner.embed(texts).vectors)


async def test_kinds_are_never_mixed_in_a_batch(started: tuple[MicroBatcher, RecordingEmbedder]) -> None:
    batcher, fake = started
    kinds: list[TextKind] = ["query", "passage", "query", "passage", "query"]
    await asyncio.gather(*(batcher.embed(texts_of(i, 3), kind) for i, kind in enumerate(kinds)))
    assert sum(n for n, kind in fake.batches if kind == "query") == 9
    assert sum(n for n, kind in fake.batches if kind == "passage") == 6


async def test_errors_reach_the_callers_of_the_failed_batch_only() -> None:
    fake = RecordingEmbedder()
    batcher = MicroBatcher(fake, max_batch=4, max_wait_ms=50)
    await batcher.start()
    try:
        good_neighbour = batcher.embed(["fine one", "fine two"])
        bad = batcher.embed(["boom", "fine three"])
        later = batcher.embed(texts_of(3, 4))
        results = await asyncio.gather(good_neighbour, bad, later, return_exceptions=True)
    finally:
        await batcher.stop()
    assert [n for n, _ in fake.batches] == [4, 4]
    assert isinstance(results[0], BoomError)
    assert isinstance(results[1], BoomError)
    assert isinstance(results[2], Embeddings) and results[2].vectors.shape == (4, 16)


async def test_the_batcher_keeps_working_after_a_failure(
    started: tuple[MicroBatcher, RecordingEmbedder],
) -> None:
    batcher, _ = started
    with pytest.raises(BoomError, match="exploded"):
        await batcher.embed(["boom"])
    result = await batcher.embed(["still alive"])
    assert result.vectors.shape == (1, 16)


async def test_stop_finishes_queued_work_then_refuses_new_work() -> None:
    fake = RecordingEmbedder(delay_s=0.02)
    batcher = MicroBatcher(fake, max_batch=4, max_wait_ms=1000)
    await batcher.start()
    tasks = [asyncio.create_task(batcher.embed(texts_of(i, 3))) for i in range(5)]
    await asyncio.sleep(0)  # let every caller enqueue
    await batcher.stop()
    assert all(t.done() for t in tasks)
    assert [t.result().vectors.shape[0] for t in tasks] == [3] * 5
    assert sum(n for n, _ in fake.batches) == 15
    with pytest.raises(Unavailable, match="not running"):
        await batcher.embed(["too late"])


async def test_embed_before_start_is_unavailable() -> None:
    batcher = MicroBatcher(RecordingEmbedder())
    with pytest.raises(Unavailable, match="not running"):
        await batcher.embed(["x"])


async def test_work_runs_off_the_event_loop() -> None:
    fake = RecordingEmbedder(delay_s=0.3)
    batcher = MicroBatcher(fake, max_batch=4, max_wait_ms=0)
    await batcher.start()
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1

    ticking = asyncio.create_task(ticker())
    try:
        await batcher.embed(["slow text"])
    finally:
        ticking.cancel()
        await batcher.stop()
    assert ticks >= 5  # the loop kept running during the 0.3 s embed (~30 ticks when idle)
    assert threading.get_ident() not in fake.threads


async def test_a_full_batch_does_not_wait_for_max_wait() -> None:
    fake = RecordingEmbedder()
    batcher = MicroBatcher(fake, max_batch=4, max_wait_ms=60_000)
    await batcher.start()
    try:
        result = await asyncio.wait_for(batcher.embed(texts_of(0, 4)), timeout=5)
    finally:
        await batcher.stop()
    assert result.vectors.shape == (4, 16)


async def test_a_lone_partial_batch_goes_after_max_wait() -> None:
    fake = RecordingEmbedder()
    batcher = MicroBatcher(fake, max_batch=64, max_wait_ms=30)
    await batcher.start()
    try:
        started_at = time.monotonic()
        result = await asyncio.wait_for(batcher.embed(["alone"]), timeout=5)
        elapsed = time.monotonic() - started_at
    finally:
        await batcher.stop()
    assert result.vectors.shape == (1, 16)
    assert 0.02 <= elapsed < 2.0


async def test_a_cancelled_caller_does_not_disturb_others() -> None:
    fake = RecordingEmbedder()
    batcher = MicroBatcher(fake, max_batch=8, max_wait_ms=100)
    await batcher.start()
    try:
        doomed = asyncio.create_task(batcher.embed(texts_of(0, 5)))
        survivor = asyncio.create_task(batcher.embed(texts_of(1, 2)))
        await asyncio.sleep(0)
        doomed.cancel()
        result = await survivor
    finally:
        await batcher.stop()
    assert doomed.cancelled()
    np.testing.assert_array_equal(result.vectors, fake.inner.embed(texts_of(1, 2)).vectors)
    assert [n for n, _ in fake.batches] == [2]  # the cancelled request's texts were never embedded


async def test_empty_input_and_bad_arguments(started: tuple[MicroBatcher, RecordingEmbedder]) -> None:
    batcher, fake = started
    empty = await batcher.embed([])
    assert empty.vectors.shape == (0, 16)
    with pytest.raises(InvalidArgument, match="kind"):
        await batcher.embed(["x"], "document")  # type: ignore[arg-type]
    assert fake.batches == []


@pytest.mark.parametrize(
    ("kwargs", "message"), [({"max_batch": 0}, "max_batch"), ({"max_wait_ms": -1}, "max_wait")]
)
def test_bad_settings_are_configuration_errors(kwargs: dict[str, float], message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        MicroBatcher(RecordingEmbedder(), **kwargs)  # type: ignore[arg-type]
