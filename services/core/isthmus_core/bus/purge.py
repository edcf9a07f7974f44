"""Purging in-process caches that hold tenant content when an erasure is requested.

Some hot-path caches are keyed by content: the orchestrator's sentence caches and guardrail's grounding
word caches by chunk and answer text, retrieval's query-vector cache by query text. An erasure cannot
tell which entries came from the erased documents (a key is a text, not a document), so every erasure
(``isthmus.erasures.requested.v1``, requested here or mirrored from a peer region) clears them whole; they
refill from the next requests.

A cache that may serve a deleted document (retrieval's query vectors) is purged on every deletion too
(``isthmus.documents.deleted.v1``, here or mirrored): :func:`purge_on_deletion`.

Every process must purge its own caches, so the subscription's consumer group is made unique per process
(``<module>-erasure-caches-<random>``): each replica hears every erasure. On Kafka such a group starts
from the earliest retained erasure (clearing caches that are still empty: harmless), and its committed
offsets expire with the broker's ``offsets.retention.minutes`` once the process is gone.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from typing import Literal, TypeVar

import structlog

from isthmus_core.bus.port import Subscription
from isthmus_core.bus.replication import replica_subscriptions
from isthmus_core.bus.typed import subscribe
from isthmus_core.contracts import topics
from isthmus_core.contracts.events import Event
from isthmus_core.contracts.topics import TopicSpec

log = structlog.get_logger("isthmus.erasure")


EventT = TypeVar("EventT", bound=Event)


def purge_on_erasure(
    module: str, peers: Sequence[str], clears: Sequence[Callable[[], None]]
) -> list[Subscription]:
    """Subscriptions (local topic and each peer's mirrored copy) that call every function of ``clears``
    on each erasure, in this process (a consumer group of its own: see the module docstring)."""
    return _purge_on(topics.ERASURES_REQUESTED, "erasure", module, peers, clears)


def purge_on_deletion(
    module: str, peers: Sequence[str], clears: Sequence[Callable[[], None]]
) -> list[Subscription]:
    """As :func:`purge_on_erasure`, on each document deletion (``documents.deleted``)."""
    return _purge_on(topics.DOCUMENTS_DELETED, "deletion", module, peers, clears)


def _purge_on(
    spec: TopicSpec[EventT],
    what: str,
    module: str,
    peers: Sequence[str],
    clears: Sequence[Callable[[], None]],
) -> list[Subscription]:
    group = f"{module}-{what}-caches-{uuid.uuid4().hex[:12]}"

    def purge(ev: EventT) -> None:
        for clear in clears:
            clear()
        log.info("content caches purged", module=module, tenant=ev.tenant_id, on=what, event_id=ev.event_id)

    async def local(ev: EventT) -> None:
        purge(ev)

    async def mirrored(ev: EventT) -> Literal["applied"]:
        purge(ev)
        return "applied"

    return [
        subscribe(spec, group, local),
        *replica_subscriptions(spec, group, peers, mirrored, service=module),
    ]
