"""Failover on a three-node Kafka cluster (tests/infra/kafka-cluster.sh): a broker is killed with -9
while the bus publishes and consumes with replication factor 3; nothing is lost."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import subprocess
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import pytest_asyncio
from pydantic import BaseModel

from isthmus_core.bus.kafka import KafkaBus
from isthmus_core.bus.port import Message, Subscription
from isthmus_core.contracts.topics import TopicSpec
from isthmus_core.testing.cluster import free_port

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = str(ROOT / "tests" / "infra" / "kafka-cluster.sh")


def _script(*args: str) -> str:
    proc = subprocess.run(["bash", SCRIPT, *args], capture_output=True, text=True, timeout=300)
    if proc.returncode != 0:
        pytest.fail(f"kafka-cluster.sh {args[0]} failed: {proc.stderr[-2000:]}", pytrace=False)
    return proc.stdout.strip()


@pytest.fixture(scope="module")
def three_brokers(
    kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, Path]]:
    # kafka_bootstrap first: it resolves the jars (and fails in CI / skips locally without Java)
    assert shutil.which("java")
    data = tmp_path_factory.mktemp("kafka-cluster")
    port = free_port()
    bootstrap = _script("up", "--port", str(port), "--dir", str(data)).splitlines()[-1]
    try:
        yield bootstrap, data
    finally:
        _script("down", "--dir", str(data))


@pytest_asyncio.fixture
async def bus(three_brokers: tuple[str, Path]) -> AsyncIterator[KafkaBus]:
    b = KafkaBus(three_brokers[0], client_id="failover", partitions=3, replication_factor=3)
    yield b
    await b.stop()


async def test_killing_a_broker_loses_no_message(bus: KafkaBus, three_brokers: tuple[str, Path]) -> None:
    spec = TopicSpec("isthmus.failover.checked.v1", BaseModel, "key", partitions=3)
    seen: set[bytes] = set()
    sent = [f"m{i}".encode() for i in range(300)]
    complete = asyncio.Event()

    async def handler(m: Message) -> None:
        seen.add(m.value)
        if seen >= set(sent):
            complete.set()

    await bus.ensure_topics([spec])
    bus.subscribe(Subscription(spec.name, "failover", handler))
    await bus.start()
    await bus.wait_ready(60)
    for v in sent[:150]:
        await bus.publish(spec.name, f"k{int(v[1:]) % 7}", v)
    _script("kill", "1", "--dir", str(three_brokers[1]))
    for v in sent[150:]:
        await bus.publish(spec.name, f"k{int(v[1:]) % 7}", v)
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(complete.wait(), 180)
    _script("start", "1", "--dir", str(three_brokers[1]))
    assert seen == set(sent), f"{len(set(sent) - seen)} messages lost"
