"""Identical requests in flight share one run: one factory call, the result (or the exception) for every
caller, and a caller's cancellation does not take the others' result away."""

from __future__ import annotations

import asyncio

import pytest

from isthmus_agent_orchestrator.agents.caches import Coalescer
from isthmus_agent_orchestrator.agents.types import CacheKey


class Gate:
    """A factory that counts its calls and finishes when released."""

    def __init__(self, result: str = "answer", error: Exception | None = None) -> None:
        self.calls = 0
        self.started = asyncio.Event()
        self.release = asyncio.Event()
        self.cancelled = False
        self.ended = asyncio.Event()
        self.result = result
        self.error = error

    async def __call__(self) -> str:
        self.calls += 1
        self.started.set()
        try:
            await self.release.wait()
        except asyncio.CancelledError:
            self.cancelled = True
            raise
        finally:
            self.ended.set()
        if self.error is not None:
            raise self.error
        return self.result


async def test_identical_calls_in_flight_run_the_factory_once() -> None:
    coalescer: Coalescer[str] = Coalescer()
    gate = Gate()
    tasks = [asyncio.create_task(coalescer.run("k", gate)) for _ in range(5)]
    # callers run in creation order before the shared run starts: all have joined once it has started
    await gate.started.wait()
    gate.release.set()
    assert list(await asyncio.gather(*tasks)) == ["answer"] * 5
    assert gate.calls == 1
    assert coalescer.in_flight() == 0


async def test_different_keys_run_separately_and_a_finished_key_runs_again() -> None:
    coalescer: Coalescer[str] = Coalescer()
    a, b = Gate("a"), Gate("b")
    ta, tb = asyncio.create_task(coalescer.run("a", a)), asyncio.create_task(coalescer.run("b", b))
    await a.started.wait()
    await b.started.wait()
    a.release.set()
    b.release.set()
    assert list(await asyncio.gather(ta, tb)) == ["a", "b"]
    again = Gate("a2")
    again.release.set()
    assert await coalescer.run("a", again) == "a2"
    assert (a.calls, b.calls, again.calls) == (1, 1, 1)


async def test_cache_keys_that_name_one_answer_share_a_run() -> None:
    coalescer: Coalescer[str] = Coalescer()
    gate = Gate()
    k1 = CacheKey("acme", "rag", "What is a glider?", ("b", "a"), 5)
    k2 = CacheKey("acme", "rag", "what is a  glider", ("a", "b"), 5)
    other_tenant = CacheKey("globex", "rag", "What is a glider?", ("a", "b"), 5)
    solo = Gate("globex")
    t1 = asyncio.create_task(coalescer.run(k1, gate))
    t2 = asyncio.create_task(coalescer.run(k2, gate))
    t3 = asyncio.create_task(coalescer.run(other_tenant, solo))
    await gate.started.wait()
    await solo.started.wait()
    gate.release.set()
    solo.release.set()
    assert list(await asyncio.gather(t1, t2, t3)) == ["answer", "answer", "globex"]
    assert (gate.calls, solo.calls) == (1, 1)


async def test_the_first_callers_cancellation_does_not_cancel_the_others_result() -> None:
    coalescer: Coalescer[str] = Coalescer()
    gate = Gate()
    first = asyncio.create_task(coalescer.run("k", gate))
    others = [asyncio.create_task(coalescer.run("k", gate)) for _ in range(3)]
    await gate.started.wait()
    first.cancel()
    with pytest.raises(asyncio.CancelledError):
        await first
    gate.release.set()
    assert list(await asyncio.gather(*others)) == ["answer"] * 3
    assert gate.calls == 1 and not gate.cancelled


async def test_the_run_is_cancelled_when_every_caller_has_gone() -> None:
    coalescer: Coalescer[str] = Coalescer()
    gate = Gate()
    tasks = [asyncio.create_task(coalescer.run("k", gate)) for _ in range(2)]
    await gate.started.wait()
    for t in tasks:
        t.cancel()
    for t in tasks:
        with pytest.raises(asyncio.CancelledError):
            await t
    assert coalescer.in_flight() == 0  # a new identical call starts afresh, it does not join the dying run
    fresh = Gate("fresh")
    fresh.release.set()
    assert await coalescer.run("k", fresh) == "fresh"
    # the abandoned run was cancelled (its cancellation ran before the fresh run: the loop is FIFO)
    assert gate.ended.is_set() and gate.cancelled and gate.calls == 1


async def test_an_exception_reaches_every_caller() -> None:
    coalescer: Coalescer[str] = Coalescer()
    gate = Gate(error=ValueError("retrieval failed"))
    tasks = [asyncio.create_task(coalescer.run("k", gate)) for _ in range(4)]
    await gate.started.wait()
    gate.release.set()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    assert all(isinstance(r, ValueError) and str(r) == "retrieval failed" for r in results)
    assert gate.calls == 1
    assert coalescer.in_flight() == 0
