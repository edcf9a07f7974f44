"""Admission control's pure logic (:mod:`isthmus_core.admission`), on a clock the tests move by hand."""

from __future__ import annotations

import asyncio

import pytest

from isthmus_core.admission import (
    RETRY_MAX_S,
    RETRY_MIN_S,
    RETRY_UNKNOWN_S,
    Family,
    Limits,
    Override,
    Policy,
    Reason,
    Refused,
)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def family(max_concurrent: int = 1, max_queue: int = 10, max_wait_s: float = 60.0) -> tuple[Family, Clock]:
    clock = Clock()
    return Family("Svc/Do", Limits(max_concurrent, max_queue, max_wait_s), clock), clock


def measured(fam: Family, clock: Clock, service_s: float) -> None:
    """One call taken and ended after ``service_s`` (the family's first measured duration)."""
    assert fam.arrive() is None
    start = clock.now
    clock.now += service_s
    fam.release(start)


async def test_concurrency_is_bounded_and_the_queue_is_served_in_order() -> None:
    fam, clock = family(max_concurrent=2)
    assert fam.arrive() is None and fam.arrive() is None
    first, second = fam.arrive(), fam.arrive()
    assert first is not None and second is not None
    assert (fam.in_flight, fam.queued) == (2, 2)
    fam.release(clock.now)  # a slot frees: it goes to the oldest waiter, not to a newcomer
    assert first.future.done() and not second.future.done()
    assert await fam.wait(first) == clock.now
    assert (fam.in_flight, fam.queued) == (2, 1)
    fam.release(clock.now)
    fam.release(clock.now)
    assert second.granted and (fam.in_flight, fam.queued) == (1, 0)
    fam.release(clock.now)
    assert (fam.in_flight, fam.queued) == (0, 0)


async def test_a_full_queue_refuses_at_arrival_naming_the_family_and_its_load() -> None:
    fam, _ = family(max_concurrent=1, max_queue=1)
    assert fam.arrive() is None
    assert fam.arrive() is not None
    with pytest.raises(Refused) as info:
        fam.arrive()
    assert info.value.reason == Reason.QUEUE_FULL
    assert "Svc/Do" in str(info.value) and "1 in flight, 1 queued" in str(info.value)
    assert (fam.in_flight, fam.queued) == (1, 1)  # the refused call took nothing


async def test_no_queue_refuses_as_soon_as_every_slot_is_taken() -> None:
    fam, _ = family(max_concurrent=1, max_queue=0)
    assert fam.arrive() is None
    with pytest.raises(Refused, match="0 queued"):
        fam.arrive()


async def test_a_call_that_would_miss_its_deadline_is_refused_at_arrival() -> None:
    fam, clock = family(max_concurrent=1)
    measured(fam, clock, 2.0)  # calls take 2 s
    assert fam.arrive(remaining_s=0.5) is None  # a free slot: taken, whatever the deadline
    # the next call waits ~2 s for the slot, then runs ~2 s: with 3 s left it would time out anyway
    with pytest.raises(Refused) as info:
        fam.arrive(remaining_s=3.0)
    assert info.value.reason == Reason.DEADLINE
    assert fam.queued == 0
    assert fam.arrive(remaining_s=5.0) is not None  # enough time: it queues
    assert fam.arrive(remaining_s=None) is not None  # no deadline: it queues


async def test_a_call_predicted_to_wait_longer_than_max_queue_wait_is_refused_at_arrival() -> None:
    fam, clock = family(max_concurrent=2, max_wait_s=3.0)
    measured(fam, clock, 2.0)
    assert fam.arrive() is None and fam.arrive() is None
    assert fam.arrive() is not None  # 1st in line: ~1 s (2 slots free up every 2 s)
    assert fam.arrive() is not None  # 2nd: ~2 s
    assert fam.arrive() is not None  # 3rd: ~3 s
    with pytest.raises(Refused) as info:
        fam.arrive()  # 4th: ~4 s > 3 s
    assert info.value.reason == Reason.QUEUE_WAIT
    assert fam.queued == 3


async def test_a_call_queued_past_max_queue_wait_is_refused_then() -> None:
    fam, clock = family(max_concurrent=1, max_wait_s=5.0)
    assert fam.arrive() is None
    waiter = fam.arrive()
    assert waiter is not None
    clock.now += 5.0
    fam.expire()
    with pytest.raises(Refused) as info:
        await fam.wait(waiter)
    assert info.value.reason == Reason.QUEUE_TIMEOUT
    assert (fam.in_flight, fam.queued) == (1, 0)


async def test_overdue_waiters_are_swept_when_a_call_arrives() -> None:
    fam, clock = family(max_concurrent=1, max_queue=1, max_wait_s=5.0)
    assert fam.arrive() is None
    stale = fam.arrive()
    assert stale is not None
    clock.now += 6.0
    fresh = fam.arrive()  # the queue was full, but its only waiter is overdue: refused, and out
    assert fresh is not None
    with pytest.raises(Refused, match="waited 5 s"):
        await fam.wait(stale)


async def test_the_queue_wait_is_bounded_even_if_nothing_else_happens() -> None:
    fam, _ = family(max_concurrent=1, max_wait_s=0.0)  # the real-time backstop fires at once
    assert fam.arrive() is None
    waiter = fam.arrive()
    assert waiter is not None
    with pytest.raises(Refused) as info:
        await fam.wait(waiter)
    assert info.value.reason == Reason.QUEUE_TIMEOUT
    assert (fam.in_flight, fam.queued) == (1, 0)


async def test_the_retry_hint_is_the_time_to_drain_the_queue_clamped() -> None:
    fam, clock = family(max_concurrent=2)
    assert fam.retry_after_s() == RETRY_UNKNOWN_S  # nothing measured yet
    measured(fam, clock, 1.0)
    assert fam.arrive() is None and fam.arrive() is None
    assert fam.arrive() is not None and fam.arrive() is not None
    # 2 queued + the refused one, 2 slots freeing every 1 s
    assert fam.retry_after_s() == pytest.approx(1.5)
    slow, clock2 = family()
    measured(slow, clock2, 600.0)
    assert slow.retry_after_s() == RETRY_MAX_S
    fast, clock3 = family()
    measured(fast, clock3, 0.0001)
    assert fast.retry_after_s() == RETRY_MIN_S


async def test_the_service_time_is_a_moving_average() -> None:
    fam, clock = family()
    measured(fam, clock, 1.0)
    assert fam.service_time_s == 1.0
    measured(fam, clock, 2.0)
    assert fam.service_time_s == pytest.approx(1.2)


async def test_a_call_that_fails_releases_its_slot() -> None:
    fam, _ = family(max_concurrent=1, max_queue=0)
    with pytest.raises(RuntimeError):
        async with fam.admit():
            assert fam.in_flight == 1
            raise RuntimeError("boom")
    assert fam.in_flight == 0
    async with fam.admit():  # the slot is free again
        pass


async def test_a_cancelled_waiter_leaves_the_queue_and_takes_no_slot() -> None:
    fam, clock = family(max_concurrent=1)
    assert fam.arrive() is None
    started = asyncio.Event()

    async def queued_call() -> None:
        started.set()
        async with fam.admit():
            raise AssertionError("a cancelled call never runs")

    task = asyncio.create_task(queued_call())
    await started.wait()  # the task ran up to its wait in the queue
    assert fam.queued == 1
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert fam.queued == 0
    fam.release(clock.now)
    assert fam.in_flight == 0


async def test_a_slot_handed_to_a_waiter_that_gave_up_passes_on() -> None:
    fam, clock = family(max_concurrent=1)
    assert fam.arrive() is None
    gone, next_one = fam.arrive(), fam.arrive()
    assert gone is not None and next_one is not None
    fam.release(clock.now)  # the slot goes to `gone`...
    assert gone.granted
    fam.abandon(gone)  # ...which was cancelled before it could run: the slot moves on
    assert next_one.granted and (fam.in_flight, fam.queued) == (1, 0)
    fam.release(clock.now)
    assert fam.in_flight == 0


def test_policy_families_default_to_the_method_and_can_be_grouped_and_overridden() -> None:
    policy = Policy(
        Limits(4, 8, 1.0),
        families={"Orchestrator/AskStream": "Orchestrator/Ask", "Tools": "tools"},
        overrides={
            "Orchestrator/Ask": Override(max_concurrent=1),
            "Guard": Override(max_queue=0),
            "Guard/CheckInput": Override(max_queue_wait_s=0.5),
        },
    )
    ask = policy.family_for("/isthmus.orchestrator.v1.Orchestrator/Ask")
    assert policy.family_for("/isthmus.orchestrator.v1.Orchestrator/AskStream") is ask
    assert ask.limits == Limits(1, 8, 1.0)
    assert policy.family_for("/x.Tools/A") is policy.family_for("/x.Tools/B")
    check = policy.family_for("/isthmus.guard.v1.Guard/CheckInput")
    assert check.name == "Guard/CheckInput" and check.limits == Limits(4, 0, 0.5)
    assert policy.family_for("/isthmus.guard.v1.Guard/Other").limits == Limits(4, 0, 1.0)
    assert check is not ask
