"""Two regions with real Kafka and real MirrorMaker 2 (tests/infra/regions.sh): what region a writes
reaches region b as ``a.<topic>``, byte for byte, region b indexes it, and `isthmus regions status`
reports the replication lag both ways from MM2's heartbeats."""

from __future__ import annotations

import asyncio
import json
import uuid

import grpc
import pytest

from isthmus.ingestion.v1 import ingestion_pb2 as ipb
from isthmus.ingestion.v1 import ingestion_pb2_grpc as igrpc
from isthmus_core.bus.kafka_security import KafkaSecurity
from isthmus_core.bus.kafka_tools import newest_timestamp_ms, read_topic
from isthmus_core.bus.port import Message
from isthmus_core.contracts import topics
from isthmus_core.errors import NotFound
from isthmus_core.regions import remote_topic
from isthmus_core.testing.client import run_cli, upload, wait_indexed

pytestmark = [pytest.mark.multiregion, pytest.mark.slow]

MIRROR_WITHIN_S = 120


async def records_of(bootstrap: str, topic: str, key: str) -> list[Message]:
    try:
        messages, _ = await read_topic(bootstrap, topic, key_prefix=key)
    except NotFound:  # MM2 creates the remote topic when it first sees the source one
        return []
    return [m for m in messages if m.key == key]


async def wait_for_records(bootstrap: str, topic: str, key: str, count: int) -> list[Message]:
    """Poll ``topic`` (from the beginning) until it holds ``count`` records under ``key``, bounded."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + MIRROR_WITHIN_S
    while len(found := await records_of(bootstrap, topic, key)) < count:
        if loop.time() > deadline:
            raise AssertionError(f"{len(found)}/{count} records of {key} on {topic} after {MIRROR_WITHIN_S}s")
        await asyncio.sleep(0.5)
    return found


async def test_what_region_a_writes_reaches_region_b_through_mirrormaker(regions) -> None:  # type: ignore[no-untyped-def]
    tenant = f"mr-{uuid.uuid4().hex[:8]}"
    for region in ("a", "b"):  # the tenant registry is not mirrored: each region holds the tenant
        code, _, err = await run_cli("tenant", "create", tenant, endpoint=regions.endpoint(region))
        assert code == 0, err

    text = "The Isthmus of Panama joins two continents and separates two oceans.\n" * 3
    async with grpc.aio.insecure_channel(regions.endpoint("a")) as ch:
        doc = await upload(ch, tenant, "isthmus.txt", text.encode())
        await wait_indexed(ch, tenant, [doc.document_id])
        in_a = await igrpc.IngestionServiceStub(ch).GetDocument(
            ipb.GetDocumentRequest(tenant_id=tenant, document_id=doc.document_id)
        )

    key = f"{tenant}/{doc.document_id}"
    local = await records_of(regions.bootstrap("a"), topics.CHUNKS_EMBEDDED.name, key)
    assert local, "region a published the embedded chunks on its own Kafka"
    mirror_topic = remote_topic("a", topics.CHUNKS_EMBEDDED.name)
    mirrored = await wait_for_records(regions.bootstrap("b"), mirror_topic, key, len(local))
    # MM2 copies value, key, headers and partition as they are (its own headers aside)
    assert sorted((m.partition, m.value) for m in mirrored) == sorted((m.partition, m.value) for m in local)
    for m in mirrored:
        original = next(o for o in local if o.value == m.value)
        assert original.headers.items() <= m.headers.items()
    # and nothing of b's own topics came back as a copy of a copy
    assert await records_of(regions.bootstrap("a"), remote_topic("b", mirror_topic), key) == []

    # region b indexes the mirrored document without re-embedding it: same id, version, hash, chunks
    async with grpc.aio.insecure_channel(regions.endpoint("b")) as ch:
        await wait_indexed(ch, tenant, [doc.document_id], within_s=MIRROR_WITHIN_S)
        in_b = await igrpc.IngestionServiceStub(ch).GetDocument(
            ipb.GetDocumentRequest(tenant_id=tenant, document_id=doc.document_id)
        )
    assert in_b.status == ipb.DOCUMENT_STATUS_INDEXED
    assert (in_b.version, in_b.content_hash, in_b.chunk_count) == (
        in_a.version,
        in_a.content_hash,
        in_a.chunk_count,
    )

    # the replication lag into each region, from the heartbeats MM2 mirrors with the data
    code, out, err = await run_cli("regions", "status", "--regions", str(regions.path), "--json")
    assert code == 0, err
    status = json.loads(out)["regions"]
    for region, peer in (("a", "b"), ("b", "a")):
        assert status[region]["health"] == "SERVING"
        link = status[region]["replication"][peer]
        assert link["error"] == "" and link["topic"] == f"{peer}.heartbeats"
        assert isinstance(link["lag_s"], float) and link["lag_s"] >= 0
        assert isinstance(link["behind_s"], float) and link["behind_s"] >= 0


async def test_stopping_the_link_stops_replication_into_the_region_and_starting_it_resumes(regions) -> None:  # type: ignore[no-untyped-def]
    """stop-link b stops the MM2 of region b: a goes on emitting heartbeats, none reaches b until
    start-link b, after which the newer ones arrive."""
    mirrored = remote_topic("a", "heartbeats")

    async def newest(region: str, topic: str) -> int:
        ts, _ = await newest_timestamp_ms(regions.bootstrap(region), topic, KafkaSecurity())
        assert ts is not None, f"no record on {topic} in region {region}"
        return ts

    async def until_newer(region: str, topic: str, than: int) -> int:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + MIRROR_WITHIN_S
        while (ts := await newest(region, topic)) <= than:
            assert loop.time() < deadline, f"nothing newer on {topic} in {region} within {MIRROR_WITHIN_S}s"
            await asyncio.sleep(0.5)
        return ts

    await asyncio.to_thread(regions.run, "b", "stop_link")
    try:
        stopped_at = await newest("b", mirrored)
        # a's own MM2 still emits heartbeats into a: there is something newer to mirror...
        await until_newer("a", "heartbeats", stopped_at)
        # ... and it has not reached b
        assert await newest("b", mirrored) == stopped_at
    finally:
        await asyncio.to_thread(regions.run, "b", "start_link")
    assert await until_newer("b", mirrored, stopped_at) > stopped_at
