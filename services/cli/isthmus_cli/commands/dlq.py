"""``isthmus dlq list|replay``: inspect and re-drive dead-lettered messages (Kafka)."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape
from rich.table import Table

from isthmus_cli.client import kafka_security, run
from isthmus_cli.options import DEFAULT_BOOTSTRAP, AsJson, Bootstrap, ConfigFile
from isthmus_cli.output import console, fail

if TYPE_CHECKING:
    from isthmus_core.bus.admin import DeadLetterView, Listing
    from isthmus_core.bus.kafka import KafkaBus
    from isthmus_core.bus.kafka_security import KafkaSecurity

app = typer.Typer(help="Inspect and re-drive dead-lettered messages (Kafka).", no_args_is_help=True)


def _dlq_topic(topic: str) -> str:
    """The dead-letter topic of ``topic``: a registry topic (``isthmus.`` optional) or a copy mirrored
    from another region (``<region>.isthmus.<name>``, docs/multi-region.md)."""
    from isthmus_core.contracts.topics import DLQ_SUFFIX, by_name
    from isthmus_core.regions import REPLICATED_TOPICS, is_region, remote_topic

    region, _, rest = topic.partition(".")
    if is_region(region) and rest.startswith("isthmus.") and region != "isthmus":
        mirrored = {remote_topic(region, spec.name) for spec in REPLICATED_TOPICS}
        if topic.removesuffix(DLQ_SUFFIX) in mirrored:
            return topic.removesuffix(DLQ_SUFFIX) + DLQ_SUFFIX
    try:
        spec = by_name(topic if topic.startswith("isthmus.") else f"isthmus.{topic}")
    except KeyError:
        from isthmus_core.contracts.topics import ALL_TOPICS

        known = ", ".join(t.name for t in ALL_TOPICS)
        fail(f"unknown topic {topic!r}; choose from {known}, or '<region>.<topic>' for a mirrored one")
    return spec.name + DLQ_SUFFIX


def _kafka_bus(bootstrap: str, security: KafkaSecurity) -> KafkaBus:
    from isthmus_core.bus.kafka import KafkaBus

    return KafkaBus(bootstrap, client_id="isthmus-cli", security=security)


def _row(d: DeadLetterView) -> dict[str, object]:
    return {
        "partition": d.at.partition,
        "offset": d.at.offset,
        "key": d.key,
        "tenant_id": d.tenant_id,
        "bytes": d.payload_size,
        "group": d.group,
        "attempts": d.attempts,
        "error_class": d.error_class,
        "error": d.error_message,
        "source": f"{d.source.topic}/{d.source.partition}/{d.source.offset}",
        "timestamp_ms": d.timestamp_ms,
        "value_preview": d.payload_preview,
        "replayed_to": (
            f"{d.replay.to.topic}/{d.replay.to.partition}/{d.replay.to.offset}"
            if d.replay is not None
            else None
        ),
    }


@app.command("list")
def dlq_list(
    topic: Annotated[
        str, typer.Argument(help="source topic, e.g. isthmus.chunks.created.v1 or chunks.created.v1")
    ],
    bootstrap: Bootstrap = DEFAULT_BOOTSTRAP,
    limit: Annotated[int, typer.Option(help="at most this many, the newest (0 = all)")] = 0,
    tenant: Annotated[str, typer.Option(help="only this tenant's dead letters")] = "",
    as_json: AsJson = False,
    config: ConfigFile = None,
) -> None:
    """List the dead letters of a topic, newest first: key, tenant, original size, error class and reason,
    and whether (and where to) each was replayed. The same listing as OperationsService.ListDeadLetters."""
    from isthmus_core.bus.admin import DeadLetters
    from isthmus_core.bus.kafka_admin import KafkaBusAdmin
    from isthmus_core.contracts.ids import parse_tenant_id
    from isthmus_core.errors import InvalidArgument

    dlq = _dlq_topic(topic)
    if limit < 0:
        fail(f"--limit must be >= 0, got {limit}")
    try:
        tenant = parse_tenant_id(tenant, "--tenant") if tenant else ""
    except InvalidArgument as exc:
        fail(exc.reason)
    security = kafka_security(config)

    async def main() -> Listing:
        desk = DeadLetters(KafkaBusAdmin(_kafka_bus(bootstrap, security)))
        return await desk.listing(dlq, limit=limit or None, tenant=tenant)

    listing = run(main())
    rows = [_row(d) for d in listing.dead_letters]
    if as_json:
        print(json.dumps(rows, indent=2))
        return
    table = Table("partition/offset", "key", "tenant", "bytes", "group", "error", "replayed to")
    for r in rows:
        table.add_row(
            f"{r['partition']}/{r['offset']}",
            escape(str(r["key"])),
            str(r["tenant_id"]),
            str(r["bytes"]),
            escape(str(r["group"])),
            escape(f"{r['error_class']}: {r['error']}"),
            str(r["replayed_to"] or ""),
        )
    console.print(table)
    console.print(f"{len(rows)} of {listing.total} dead letter(s) on {dlq}")


@app.command("replay")
def dlq_replay(
    topic: Annotated[str, typer.Argument(help="source topic whose dead letters to re-drive")],
    bootstrap: Bootstrap = DEFAULT_BOOTSTRAP,
    key_prefix: Annotated[str, typer.Option(help="only keys starting with this (e.g. 'tenant/')")] = "",
    config: ConfigFile = None,
) -> None:
    """Publish dead letters back to their source topic (original key, bytes and headers). Each dead letter
    is replayed once: every replay is recorded on isthmus.deadletters.replayed.v1, like those of
    OperationsService.ReplayDeadLetter, and what either replayed is not replayed again."""
    from isthmus_core.bus.admin import DeadLetters
    from isthmus_core.bus.kafka_admin import KafkaBusAdmin

    dlq = _dlq_topic(topic)
    security = kafka_security(config)

    async def main() -> int:
        bus = _kafka_bus(bootstrap, security)
        await bus.start()
        try:
            desk = DeadLetters(KafkaBusAdmin(bus))
            return len(await desk.replay_pending(dlq, key_prefix=key_prefix, by="cli"))
        finally:
            await bus.stop()

    n = run(main())
    console.print(f"replayed {n} dead letter(s) from {dlq} to {dlq.removesuffix('.dlq')}")
