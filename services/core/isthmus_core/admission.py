"""Admission control: per RPC *family*, bounded concurrency and a bounded, deadline-aware wait queue.

Past capacity a service refuses at once (the gRPC edge answers ``RESOURCE_EXHAUSTED`` with a
``RetryInfo``, see :mod:`isthmus_core.grpc.admission`) instead of queueing without limit, so admitted calls
keep their latency and refused callers learn within milliseconds when to come back.

A :class:`Family` (by default one per gRPC method, e.g. ``AgentOrchestratorService/Ask``) lets at most
``max_concurrent`` calls run; the next ones wait in a FIFO queue of at most ``max_queue``. A call that
would have to wait is refused *at arrival* when:

* the queue is full (:attr:`Reason.QUEUE_FULL`);
* its predicted wait exceeds ``max_queue_wait_s`` (:attr:`Reason.QUEUE_WAIT`);
* its predicted wait plus the family's expected service time exceeds the call's remaining deadline: it
  would time out anyway, after holding a queue place (:attr:`Reason.DEADLINE`).

The predicted wait of the n-th queued call is ``n * service time / max_concurrent`` (slots free up at
that rate), the service time an exponentially weighted moving average of admitted calls' durations
(admission to release; a streaming call holds its slot until it ends). A call that finds a free slot is
never refused: with idle capacity there is nothing to protect. As a safety net, a queued call still
waiting after ``max_queue_wait_s`` is refused then (:attr:`Reason.QUEUE_TIMEOUT`); overdue waiters are
also swept whenever a call arrives or ends.

The retry hint is the predicted time for the queue to drain, clamped to
[:data:`RETRY_MIN_S`, :data:`RETRY_MAX_S`].

Pure logic: no gRPC; the clock is injectable (tests drive it by hand); waiting uses asyncio futures.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Final

#: bounds of the retry hint, in seconds
RETRY_MIN_S: Final = 0.01
RETRY_MAX_S: Final = 5.0
#: the hint while a family has no measured service time yet
RETRY_UNKNOWN_S: Final = 0.1
#: weight of the newest duration in the service-time average
EWMA_ALPHA: Final = 0.2

Clock = Callable[[], float]


class Reason(StrEnum):
    QUEUE_FULL = "queue_full"
    QUEUE_WAIT = "queue_wait"
    DEADLINE = "deadline"
    QUEUE_TIMEOUT = "queue_timeout"


@dataclass(frozen=True, slots=True)
class Limits:
    max_concurrent: int
    max_queue: int
    max_queue_wait_s: float

    def __post_init__(self) -> None:
        if self.max_concurrent < 1 or self.max_queue < 0 or self.max_queue_wait_s < 0:
            raise ValueError(f"admission limits out of range: {self}")


@dataclass(frozen=True, slots=True)
class Override:
    """Per-family changes to the default :class:`Limits` (``None``: keep the default)."""

    max_concurrent: int | None = None
    max_queue: int | None = None
    max_queue_wait_s: float | None = None

    def apply(self, limits: Limits) -> Limits:
        changes = {k: v for k in Limits.__slots__ if (v := getattr(self, k)) is not None}
        return replace(limits, **changes)


class Refused(Exception):
    """A call the family will not take now; ``str()`` names the family, its load and why."""

    def __init__(
        self, family: str, reason: Reason, why: str, in_flight: int, queued: int, retry_after_s: float
    ) -> None:
        self.family = family
        self.reason = reason
        self.in_flight = in_flight
        self.queued = queued
        self.retry_after_s = retry_after_s
        super().__init__(f"{family} is over capacity: {in_flight} in flight, {queued} queued ({why})")


class _Waiter:
    __slots__ = ("future", "since")

    def __init__(self, future: asyncio.Future[float], since: float) -> None:
        self.future = future
        self.since = since

    @property
    def granted(self) -> bool:
        """A slot was handed to this waiter (its future holds the admission time)."""
        f = self.future
        return f.done() and not f.cancelled() and f.exception() is None


class Family:
    """The admission state of one family of calls (see the module docstring)."""

    def __init__(self, name: str, limits: Limits, clock: Clock = time.monotonic) -> None:
        self.name = name
        self.limits = limits
        self._clock = clock
        self.in_flight = 0
        #: the EWMA of admitted calls' durations, None until one has ended
        self.service_time_s: float | None = None
        self._waiters: deque[_Waiter] = deque()

    @property
    def queued(self) -> int:
        return len(self._waiters)

    def predicted_wait_s(self, position: int) -> float:
        """How long the ``position``-th queued call (1-based) should wait for a slot."""
        if self.service_time_s is None:
            return 0.0
        return position * self.service_time_s / self.limits.max_concurrent

    def retry_after_s(self) -> float:
        """The hint given with a refusal: the time for the queue (and one more call) to drain."""
        if self.service_time_s is None:
            return RETRY_UNKNOWN_S
        return min(max(self.predicted_wait_s(self.queued + 1), RETRY_MIN_S), RETRY_MAX_S)

    def _refused(self, reason: Reason, why: str) -> Refused:
        return Refused(self.name, reason, why, self.in_flight, self.queued, self.retry_after_s())

    def arrive(self, remaining_s: float | None = None) -> _Waiter | None:
        """A call arrives with ``remaining_s`` until its deadline (None: no deadline). Returns None if it
        is admitted now (it holds a slot: call :meth:`release` when it ends), a waiter to await with
        :meth:`wait` if it is queued; raises :class:`Refused` otherwise."""
        self.expire()
        lim = self.limits
        if self.in_flight < lim.max_concurrent and not self._waiters:
            self.in_flight += 1
            return None
        if self.queued >= lim.max_queue:
            raise self._refused(Reason.QUEUE_FULL, f"queue full, max {lim.max_queue}")
        wait = self.predicted_wait_s(self.queued + 1)
        if wait > lim.max_queue_wait_s:
            raise self._refused(
                Reason.QUEUE_WAIT, f"predicted wait {wait:.3f} s > max queue wait {lim.max_queue_wait_s:g} s"
            )
        service = self.service_time_s or 0.0
        if remaining_s is not None and wait + service > remaining_s:
            raise self._refused(
                Reason.DEADLINE,
                f"predicted wait {wait:.3f} s + service {service:.3f} s > deadline in {remaining_s:.3f} s",
            )
        waiter = _Waiter(asyncio.get_running_loop().create_future(), self._clock())
        self._waiters.append(waiter)
        return waiter

    async def wait(self, waiter: _Waiter) -> float:
        """Wait for a slot; returns the admission time. Raises :class:`Refused` if the call waited
        ``max_queue_wait_s`` (safety net); a cancelled wait gives its place (or its slot) back."""
        try:
            async with asyncio.timeout(max(self.limits.max_queue_wait_s - (self._clock() - waiter.since), 0)):
                return await waiter.future
        except TimeoutError:
            if waiter.granted:  # the slot came as the time ran out: take it
                return waiter.future.result()
            self._drop(waiter)
            raise self._refused(
                Reason.QUEUE_TIMEOUT, f"waited {self.limits.max_queue_wait_s:g} s in the queue"
            ) from None
        except asyncio.CancelledError:
            self.abandon(waiter)
            raise

    def abandon(self, waiter: _Waiter) -> None:
        """The queued call gave up (cancelled): leave the queue, or pass on a slot it was just given."""
        if waiter.granted:
            self._hand_over()
        else:
            self._drop(waiter)

    def _drop(self, waiter: _Waiter) -> None:
        if waiter in self._waiters:
            self._waiters.remove(waiter)
        if not waiter.future.done():
            waiter.future.cancel()

    def release(self, admitted_at: float) -> None:
        """An admitted call ended (however): record its duration, give its slot to the next waiter."""
        duration = max(self._clock() - admitted_at, 0.0)
        prev = self.service_time_s
        self.service_time_s = duration if prev is None else prev + EWMA_ALPHA * (duration - prev)
        self._hand_over()
        self.expire()

    def _hand_over(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.future.done():
                waiter.future.set_result(self._clock())  # the slot passes on: in_flight unchanged
                return
        self.in_flight -= 1

    def expire(self) -> None:
        """Refuse the queued calls that have waited ``max_queue_wait_s`` (safety net)."""
        now = self._clock()
        limit = self.limits.max_queue_wait_s
        while self._waiters and now - self._waiters[0].since >= limit:  # FIFO: the oldest first
            waiter = self._waiters.popleft()
            if not waiter.future.done():
                waiter.future.set_exception(
                    self._refused(Reason.QUEUE_TIMEOUT, f"waited {limit:g} s in the queue")
                )

    async def acquire(self, remaining_s: float | None = None) -> float:
        """:meth:`arrive`, then :meth:`wait` if queued: returns the admission time (give it to
        :meth:`release`) or raises :class:`Refused`."""
        waiter = self.arrive(remaining_s)
        return self._clock() if waiter is None else await self.wait(waiter)

    @asynccontextmanager
    async def admit(self, remaining_s: float | None = None) -> AsyncIterator[None]:
        """Hold a slot for the body (raises :class:`Refused` before it if the call is not taken)."""
        admitted_at = await self.acquire(remaining_s)
        try:
            yield
        finally:
            self.release(admitted_at)


def short_method(method: str) -> tuple[str, str]:
    """``/isthmus.x.v1.XService/Do`` → (``XService/Do``, ``XService``)."""
    service, _, name = method.lstrip("/").partition("/")
    service = service.rsplit(".", 1)[-1]
    return f"{service}/{name}", service


class Policy:
    """Which family a method belongs to, and its limits.

    ``families`` maps ``Service/Method`` (or a whole ``Service``) to a family name (default: the method's
    own ``Service/Method``), so methods can share one family. ``overrides`` maps a family name, or a
    service name (each of its families), to an :class:`Override` of ``defaults``; the family's own
    entry wins over its service's."""

    def __init__(
        self,
        defaults: Limits,
        families: Mapping[str, str] | None = None,
        overrides: Mapping[str, Override] | None = None,
        clock: Clock = time.monotonic,
    ) -> None:
        self.defaults = defaults
        self._families = dict(families or {})
        self._overrides = dict(overrides or {})
        self._clock = clock
        self._by_name: dict[str, Family] = {}

    def family_for(self, method: str) -> Family:
        key, service = short_method(method)
        name = self._families.get(key) or self._families.get(service) or key
        family = self._by_name.get(name)
        if family is None:
            limits = self.defaults
            for k in (service, name):  # the service's override, then the family's own
                if (override := self._overrides.get(k)) is not None:
                    limits = override.apply(limits)
            family = self._by_name[name] = Family(name, limits, self._clock)
        return family

    def families(self) -> list[Family]:
        """The families met so far (for metrics and tests)."""
        return list(self._by_name.values())
