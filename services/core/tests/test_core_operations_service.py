"""OperationsService through a real runtime over gRPC, with authentication on, on the in-process bus and on
Kafka: consumer positions of the process's own subscriptions, dead letters made by a real handler, the
tenant rules (a tenant admin sees and replays only their tenant's letters), replay once, audit, and bad
input refused as INVALID_ARGUMENT with its reason."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, ClassVar

import grpc
import pytest

from isthmus.operations.v1 import operations_pb2 as pb
from isthmus.operations.v1 import operations_pb2_grpc as pb_grpc
from isthmus_core.auth.stack import ListAudit
from isthmus_core.auth.wiring import local_issuer
from isthmus_core.bus.port import Message, RetryPolicy, Subscription
from isthmus_core.contracts import topics
from isthmus_core.errors import InvalidArgument
from isthmus_core.runtime.module import Module, ModuleContext, Offer
from isthmus_core.runtime.runtime import Runtime
from isthmus_core.settings import SectionSettings, section_config
from isthmus_core.testing.client import bearer_channel

TOPIC = topics.QUALITY_DROPPED
OPS = "/isthmus.operations.v1.OperationsService/"
ACCESS = """
[platform]
bindings = [{ principal = "root", role = "platform-admin" }]

[tenants.acme]
bindings = [{ principal = "alice", role = "tenant-admin" }, { principal = "carol", role = "reader" }]

[tenants.beta]
bindings = [{ principal = "bob", role = "tenant-admin" }]
"""


class ShopSettings(SectionSettings):
    section: ClassVar[str] = "shop"
    model_config = section_config("shop")


def _build_for(group: str) -> Module[ShopSettings]:
    async def refuse(message: Message) -> None:
        if b"poison" in message.value:
            raise InvalidArgument("poison refused")

    async def build(ctx: ModuleContext[ShopSettings]) -> Offer:
        retry = RetryPolicy(max_attempts=1)
        return Offer(topics=[TOPIC], subscriptions=[Subscription(TOPIC.name, group, refuse, retry)])

    return Module(name="shop", settings_cls=ShopSettings, build=build)


@pytest.fixture(params=["inprocess", pytest.param("kafka", marks=pytest.mark.kafka)])
async def runtime(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[tuple[Runtime, str]]:
    (tmp_path / "access.toml").write_text(ACCESS)
    common: dict[str, Any] = {
        "data_dir": str(tmp_path),
        "grpc_port": 0,
        "metrics_port": 0,
        "auth": "local",
        "access_file": str(tmp_path / "access.toml"),
        "bus": request.param,
        "shutdown_grace_s": 1.0,
    }
    if request.param == "kafka":
        common["kafka_bootstrap_servers"] = request.getfixturevalue("kafka_bootstrap")
        common["kafka_partitions"] = 2
    group = f"shop-{uuid.uuid4().hex[:8]}"
    rt = Runtime.from_settings("all", [_build_for(group)], overrides={"common": common})
    await rt.start()
    try:
        yield rt, group
    finally:
        await rt.stop()


async def _code(call: Any) -> tuple[grpc.StatusCode, str]:
    try:
        await call
    except grpc.aio.AioRpcError as exc:
        return exc.code(), exc.details() or ""
    return grpc.StatusCode.OK, ""


async def _letters(
    stub: pb_grpc.OperationsServiceStub, uid: str, count: int, **req: Any
) -> list[pb.DeadLetter]:
    deadline = time.monotonic() + 60
    while True:
        reply = await stub.ListDeadLetters(pb.ListDeadLettersRequest(topic=TOPIC.name, **req))
        mine = [d for d in reply.dead_letters if uid in d.key or uid.encode() in d.payload_preview.encode()]
        if len(mine) >= count:
            return mine
        assert time.monotonic() < deadline, f"{len(mine)} of {count} dead letters after 60 s"
        await asyncio.sleep(0.2)


async def test_operations_over_grpc(runtime: tuple[Runtime, str]) -> None:
    rt, group = runtime
    assert rt.auth is not None
    audit = ListAudit()
    rt.auth.audit = audit  # what the interceptor records (the bus sink is started: replace it)
    issuer = local_issuer(rt.common)
    uid = uuid.uuid4().hex[:8]
    assert rt.bus is not None
    for tenant in ("acme", "beta"):
        body = {"tenant_id": tenant, "poison": True, "secret": f"{tenant}-{uid}"}
        await rt.bus.publish(TOPIC.name, f"{tenant}/{uid}", json.dumps(body).encode())
    await rt.bus.publish(TOPIC.name, "", f"\x00poison {uid}".encode())  # no tenant known
    await rt.bus.publish(TOPIC.name, f"acme/{uid}-fine", b'{"tenant_id": "acme"}')  # handled

    async with (
        bearer_channel(rt.address, issuer.mint("root")) as root_ch,
        bearer_channel(rt.address, issuer.mint("alice")) as alice_ch,
        bearer_channel(rt.address, issuer.mint("carol")) as carol_ch,
    ):
        root, alice, carol = (pb_grpc.OperationsServiceStub(c) for c in (root_ch, alice_ch, carol_ch))

        # every letter, platform-wide: the tenant of each from its payload and key, the error, the group
        everything = await _letters(root, uid, 3)
        by_tenant = {d.tenant_id: d for d in everything}
        assert set(by_tenant) == {"acme", "beta", ""}
        acme = by_tenant["acme"]
        assert (acme.error_class, acme.error_message, acme.group, acme.attempts) == (
            "InvalidArgument",
            "poison refused",
            group,
            1,
        )
        assert acme.topic == TOPIC.dlq and acme.source_topic == TOPIC.name and not acme.replayed
        assert f"acme-{uid}" in acme.payload_preview and acme.payload_size == len(acme.payload_preview)
        assert acme.timestamp.seconds > 0

        # consumer positions of this process's subscription, with the module that owns it
        deadline = time.monotonic() + 60
        while True:
            consumers = await root.ListConsumers(pb.ListConsumersRequest())
            mine = [c for c in consumers.consumers if c.group == group]
            if mine and sum(c.lag for c in mine) == 0 and sum(c.end_offset for c in mine) >= 4:
                break
            assert time.monotonic() < deadline, consumers
            await asyncio.sleep(0.2)
        assert consumers.bus == rt.common.bus and list(consumers.modules) == ["shop"]
        assert {(c.topic, tuple(c.modules)) for c in mine} == {(TOPIC.name, ("shop",))}
        assert all(c.position == c.end_offset for c in mine if c.committed)

        # a tenant admin: their tenant's letters only; nothing platform-wide, nothing of another tenant
        assert [d.tenant_id for d in await _letters(alice, uid, 1, tenant_id="acme")] == ["acme"]
        for request in (
            pb.ListDeadLettersRequest(topic=TOPIC.name),
            pb.ListDeadLettersRequest(topic=TOPIC.name, tenant_id="beta"),
        ):
            code, details = await _code(alice.ListDeadLetters(request))
            assert code == grpc.StatusCode.PERMISSION_DENIED and "ops.read" in details, details
        assert (await _code(alice.ListConsumers(pb.ListConsumersRequest())))[
            0
        ] == grpc.StatusCode.PERMISSION_DENIED
        assert (
            await _code(carol.ListDeadLetters(pb.ListDeadLettersRequest(topic=TOPIC.name, tenant_id="acme")))
        )[0] == grpc.StatusCode.PERMISSION_DENIED

        # replay: another tenant's letter is not found; one's own goes back once, audited
        beta = by_tenant["beta"]
        foreign = pb.ReplayDeadLetterRequest(
            topic=TOPIC.name, partition=beta.partition, offset=beta.offset, tenant_id="acme"
        )
        code, details = await _code(alice.ReplayDeadLetter(foreign))
        assert code == grpc.StatusCode.NOT_FOUND and "beta" not in details, details
        own = pb.ReplayDeadLetterRequest(
            topic=TOPIC.name, partition=acme.partition, offset=acme.offset, tenant_id="acme"
        )
        replayed = await alice.ReplayDeadLetter(own)
        assert replayed.dead_letter.replayed and replayed.replayed_to.topic == TOPIC.name
        assert replayed.replayed_to.replayed_by == "alice" and replayed.replayed_to.offset >= 0
        code, details = await _code(alice.ReplayDeadLetter(own))
        assert code == grpc.StatusCode.FAILED_PRECONDITION and "replayed already" in details, details
        # the replayed message is refused again by the handler: a new letter, the first marked replayed
        after = await _letters(root, uid, 4)
        marked = {(d.partition, d.offset): d for d in after}
        assert marked[(acme.partition, acme.offset)].replayed_to.offset == replayed.replayed_to.offset
        assert sum(1 for d in after if d.tenant_id == "acme" and not d.replayed) == 1
        # the platform admin replays the letter of no tenant
        nobody = by_tenant[""]
        await root.ReplayDeadLetter(
            pb.ReplayDeadLetterRequest(topic=TOPIC.name, partition=nobody.partition, offset=nobody.offset)
        )
        actions = [
            (r.principal, r.tenant_id, r.outcome)
            for r in audit.records
            if r.kind == "admin_action" and r.method == OPS + "ReplayDeadLetter"
        ]
        assert actions == [
            ("alice", "acme", "failed"),  # the foreign letter: not found
            ("alice", "acme", "ok"),
            ("alice", "acme", "failed"),  # replayed already
            ("root", "", "ok"),
        ], actions

        # bad input: INVALID_ARGUMENT with the reason, never INTERNAL
        bad = [
            (pb.ListDeadLettersRequest(topic="nope"), "unknown topic 'nope'; known topics: "),
            (pb.ListDeadLettersRequest(topic=TOPIC.name, limit=5000), "limit must be"),
            (pb.ListDeadLettersRequest(topic=TOPIC.name, limit=-1), "limit must be"),
            (pb.ListDeadLettersRequest(topic=TOPIC.name, tenant_id="ACME!"), "tenant_id"),
        ]
        for request, reason in bad:
            code, details = await _code(root.ListDeadLetters(request))
            assert code == grpc.StatusCode.INVALID_ARGUMENT and reason in details, (request, details)
        code, details = await _code(
            root.ReplayDeadLetter(pb.ReplayDeadLetterRequest(topic=TOPIC.name, partition=-1))
        )
        assert code == grpc.StatusCode.INVALID_ARGUMENT and "partition and offset must be >= 0" in details
        code, details = await _code(root.ReplayDeadLetter(pb.ReplayDeadLetterRequest(topic="x.dlq")))
        assert code == grpc.StatusCode.INVALID_ARGUMENT and TOPIC.name in details
        code, details = await _code(
            root.ReplayDeadLetter(pb.ReplayDeadLetterRequest(topic=TOPIC.name, partition=0, offset=10**12))
        )
        assert code == grpc.StatusCode.NOT_FOUND and "no dead letter at partition 0" in details
