"""Purging in-process caches that hold tenant content when an erasure is requested.

Some hot-path caches are keyed by content: the orchestrator's sentence caches and guardrail's grounding
word caches by chunk and answer text, retrieval's query-vector cache by query text. An erasure cannot
tell which entries came from the erased documents (a key is a text, not a document), so every erasure
(``isthmus.erasures.requested.v1``, requested here or mirrored from a peer region) clears them whole; they
refill from the next requests.

Every process must purge its own caches, so the subscription's consumer group is made unique per process
(``<module>-erasure-caches-<random>``): each replica hears every erasure. On Kafka such a group starts
from the earliest retained erasure (clearing caches that are still empty: harmless), and its committed
offsets expire with the broker's ``offsets.retention.minutes`` once the process is gone.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from typing import Literal

import structlog

from isthmus_core.bus.port import Subscription
from isthmus_core.bus.replication import replica_subscriptions
from isthmus_core.bus.typed import subscribe
from isthmus_core.contracts import topics
from isthmus_core.contracts.events import ErasureRequested

log = structlog.get_logger("isthmus.erasure")


def purge_on_erasure(
    module: str, peers: Sequence[str], clears: Sequence[Callable[[], None]]
) -> list[Subscription]:
    """Subscriptions (local topic and each peer's mirrored copy) that call every function of ``clears``
    on each erasure, in this process (a consumer group of its own: see the module docstring)."""
    group = f"{module}-erasure-caches-{uuid.uuid4().hex[:12]}"

    def purge(ev: ErasureRequested) -> None:
        for clear in clears:
            clear()
        log.info("content caches purged", module=module, tenant=ev.tenant_id, erasure=ev.erasure_id)

    async def local(ev: ErasureRequested) -> None:
        purge(ev)

    async def mirrored(ev: ErasureRequested) -> Literal["applied"]:
        purge(ev)
        return "applied"

    return [
        subscribe(topics.ERASURES_REQUESTED, group, local),
        *replica_subscriptions(topics.ERASURES_REQUESTED, group, peers, mirrored, service=module),
    ]
