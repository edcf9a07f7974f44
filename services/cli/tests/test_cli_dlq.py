"""``isthmus dlq list|replay`` on a real broker: the same listing and replay-once records as
OperationsService (isthmus_core.bus.admin), so a letter replayed by either is not replayed again."""

from __future__ import annotations

import asyncio
import json
import uuid

import pytest
from typer.testing import CliRunner

from isthmus_cli.main import app
from isthmus_core.bus.admin import DeadLetters
from isthmus_core.bus.kafka import KafkaBus
from isthmus_core.bus.kafka_admin import KafkaBusAdmin
from isthmus_core.bus.port import H_ERROR_CLASS, H_ERROR_MESSAGE, H_GROUP, H_SOURCE_TOPIC
from isthmus_core.contracts import topics

runner = CliRunner()
SPEC = topics.APPROVALS_DECIDED  # nobody consumes it here: a replayed letter just lands on the topic


async def _dead_letters(bootstrap: str, uid: str) -> None:
    bus = KafkaBus(bootstrap, client_id="cli-dlq-test", partitions=2)
    await bus.ensure_topics([SPEC])
    await bus.start()
    try:
        for tenant in ("acme", "beta"):
            headers = {
                H_ERROR_CLASS: "InvalidArgument",
                H_ERROR_MESSAGE: "bad event",
                H_GROUP: "g",
                H_SOURCE_TOPIC: SPEC.name,
                "x-custom": "kept",
            }
            value = json.dumps({"tenant_id": tenant, "uid": uid}).encode()
            await bus.publish(SPEC.dlq, f"{tenant}/{uid}", value, headers)
    finally:
        await bus.stop()


async def _replay_by_rpc_logic(bootstrap: str, uid: str) -> None:
    """What ReplayDeadLetter does for beta's letter (the same core code)."""
    bus = KafkaBus(bootstrap, client_id="cli-dlq-test")
    await bus.start()
    try:
        desk = DeadLetters(KafkaBusAdmin(bus))
        [beta] = [
            d for d in (await desk.listing(SPEC.dlq, limit=None)).dead_letters if d.key == f"beta/{uid}"
        ]
        await desk.replay(SPEC.dlq, beta.at.partition, beta.at.offset, tenant="beta", by="bob")
    finally:
        await bus.stop()


def _mine(bootstrap: str, uid: str) -> list[dict[str, object]]:
    result = runner.invoke(app, ["dlq", "list", SPEC.name, "--json", "--bootstrap", bootstrap])
    assert result.exit_code == 0, result.output
    return [r for r in json.loads(result.stdout) if uid in str(r["key"])]


@pytest.mark.kafka
def test_dlq_list_and_replay_share_the_operations_records(kafka_bootstrap: str) -> None:
    uid = uuid.uuid4().hex[:8]
    asyncio.run(_dead_letters(kafka_bootstrap, uid))
    rows = {r["key"]: r for r in _mine(kafka_bootstrap, uid)}
    assert set(rows) == {f"acme/{uid}", f"beta/{uid}"}
    acme = rows[f"acme/{uid}"]
    assert (acme["tenant_id"], acme["error_class"], acme["error"], acme["replayed_to"]) == (
        "acme",
        "InvalidArgument",
        "bad event",
        None,
    )
    assert uid in str(acme["value_preview"])
    result = runner.invoke(
        app, ["dlq", "list", SPEC.name, "--json", "--tenant", "beta", "--bootstrap", kafka_bootstrap]
    )
    assert result.exit_code == 0 and {r["tenant_id"] for r in json.loads(result.stdout)} == {"beta"}

    asyncio.run(_replay_by_rpc_logic(kafka_bootstrap, uid))  # beta's, as ReplayDeadLetter would
    result = runner.invoke(
        app, ["dlq", "replay", SPEC.name, "--key-prefix", "acme/", "--bootstrap", kafka_bootstrap]
    )
    assert result.exit_code == 0 and "replayed 1 dead letter(s)" in result.stdout, result.output
    result = runner.invoke(
        app, ["dlq", "replay", SPEC.name, "--key-prefix", "beta/", "--bootstrap", kafka_bootstrap]
    )
    assert result.exit_code == 0 and "replayed 0 dead letter(s)" in result.stdout, result.output
    assert all(r["replayed_to"] for r in _mine(kafka_bootstrap, uid))


def test_dlq_list_refuses_a_bad_tenant_before_touching_kafka() -> None:
    result = runner.invoke(app, ["dlq", "list", SPEC.name, "--tenant", "Bad/T", "--bootstrap", "127.0.0.1:1"])
    assert result.exit_code != 0 and "tenant ids are" in " ".join(result.output.split())
