"""Consuming what MirrorMaker 2 mirrors from the other regions (see :mod:`isthmus_core.regions`).

A module that applies a replicated topic subscribes to its mirrored copies with :func:`replica_subscriptions`:
one subscription per peer region, same group and handler shape as the local topic, but the handler says
what it did with each event (``applied``, ``stale``: older than what this region holds, ``tenant_absent``:
the tenant does not live in this region) and each outcome is counted in
``isthmus_replication_events_total{origin, service, outcome}``. :func:`replica_topics` lists the copies
for ``Offer.topics``, so a region creates them before MM2 writes to them (MM2 keeps partition numbers,
so a document's mirrored batches stay in order on their partition).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Literal, TypeVar

from isthmus_core.bus.port import RetryPolicy, Subscription
from isthmus_core.bus.typed import subscribe
from isthmus_core.contracts.events import Event
from isthmus_core.contracts.topics import AnyTopic, TopicSpec
from isthmus_core.regions import mirrored
from isthmus_core.telemetry.metrics import REPLICATION_EVENTS

EventT = TypeVar("EventT", bound=Event)
Outcome = Literal["applied", "stale", "tenant_absent"]


def replica_subscriptions(
    spec: TopicSpec[EventT],
    group: str,
    peers: Sequence[str],
    apply: Callable[[EventT], Awaitable[Outcome]],
    *,
    service: str,
    retry: RetryPolicy | None = None,
) -> list[Subscription]:
    """``group``'s subscriptions to ``spec`` as mirrored from each of ``peers``."""

    def counted(origin: str) -> Callable[[EventT], Awaitable[None]]:
        async def handle(event: EventT) -> None:
            outcome = await apply(event)
            REPLICATION_EVENTS.labels(origin, service, outcome).inc()

        handle.__qualname__ = f"replica[{origin}]({getattr(apply, '__qualname__', repr(apply))})"
        return handle

    return [subscribe(mirrored(spec, peer), group, counted(peer), retry) for peer in peers]


def replica_topics(specs: Sequence[AnyTopic], peers: Sequence[str]) -> list[AnyTopic]:
    """The mirrored copies of ``specs`` from each peer, for a module's ``Offer.topics``."""
    return [mirrored(spec, peer) for spec in specs for peer in peers]
