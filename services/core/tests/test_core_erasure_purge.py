"""Content caches are purged on every erasure, in every process: a subscription per process (its own
consumer group) on the local erasure topic and on each peer region's mirrored copy."""

from __future__ import annotations

from isthmus_core.bus.inprocess import InProcessBus
from isthmus_core.bus.purge import purge_on_deletion, purge_on_erasure
from isthmus_core.bus.typed import publish_event
from isthmus_core.contracts import topics
from isthmus_core.contracts.events import DocumentDeleted, ErasureRequested
from isthmus_core.regions import mirrored


def request(erasure: str) -> ErasureRequested:
    return ErasureRequested(tenant_id="acme", idempotency_key=erasure, erasure_id=erasure * 32)


async def test_every_process_purges_its_caches_on_local_and_mirrored_erasures() -> None:
    bus = InProcessBus()
    cleared: dict[str, int] = {"replica-1": 0, "replica-2": 0}

    def clear(name: str) -> None:
        cleared[name] += 1

    subs = [
        *purge_on_erasure("retrieval", ["a"], [lambda: clear("replica-1")]),
        *purge_on_erasure("retrieval", ["a"], [lambda: clear("replica-2")]),
    ]
    assert len({s.group for s in subs}) == 2  # one group per process: both replicas hear each erasure
    for s in subs:
        bus.subscribe(s)
    await bus.start()
    try:
        await publish_event(bus, topics.ERASURES_REQUESTED, request("1"))
        await publish_event(bus, mirrored(topics.ERASURES_REQUESTED, "a"), request("2"))
        await bus.drain()
    finally:
        await bus.stop()
    assert cleared == {"replica-1": 2, "replica-2": 2}


async def test_every_process_purges_its_caches_on_local_and_mirrored_deletions() -> None:
    bus = InProcessBus()
    cleared: dict[str, int] = {"replica-1": 0, "replica-2": 0}

    def clear(name: str) -> None:
        cleared[name] += 1

    subs = [
        *purge_on_deletion("retrieval", ["a"], [lambda: clear("replica-1")]),
        *purge_on_deletion("retrieval", ["a"], [lambda: clear("replica-2")]),
    ]
    assert len({s.group for s in subs}) == 2
    for s in subs:
        bus.subscribe(s)
    deleted = DocumentDeleted(
        tenant_id="acme", idempotency_key="acme/d1/deleted/v1", document_id="d1", version=1
    )
    await bus.start()
    try:
        await publish_event(bus, topics.DOCUMENTS_DELETED, deleted)
        await publish_event(bus, mirrored(topics.DOCUMENTS_DELETED, "a"), deleted)
        await publish_event(bus, topics.ERASURES_REQUESTED, request("1"))  # not theirs
        await bus.drain()
    finally:
        await bus.stop()
    assert cleared == {"replica-1": 2, "replica-2": 2}
