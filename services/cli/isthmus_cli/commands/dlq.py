"""``isthmus dlq list|replay``: inspect and re-drive dead-lettered messages (Kafka)."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from isthmus_cli.client import kafka_security, run
from isthmus_cli.options import DEFAULT_BOOTSTRAP, AsJson, Bootstrap, ConfigFile
from isthmus_cli.output import console, fail

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


@app.command("list")
def dlq_list(
    topic: Annotated[
        str, typer.Argument(help="source topic, e.g. isthmus.chunks.created.v1 or chunks.created.v1")
    ],
    bootstrap: Bootstrap = DEFAULT_BOOTSTRAP,
    limit: Annotated[int, typer.Option(help="at most this many (0 = all)")] = 0,
    as_json: AsJson = False,
    config: ConfigFile = None,
) -> None:
    """List the dead letters of a topic: key, original size, error class and reason."""
    from isthmus_core.bus.kafka_tools import read_topic
    from isthmus_core.bus.port import H_ATTEMPTS, H_ERROR_CLASS, H_ERROR_MESSAGE, H_GROUP

    dlq = _dlq_topic(topic)
    messages, _ = run(read_topic(bootstrap, dlq, limit=limit, security=kafka_security(config)))
    rows = [
        {
            "partition": m.partition,
            "offset": m.offset,
            "key": m.key,
            "bytes": len(m.value),
            "group": m.headers.get(H_GROUP, ""),
            "attempts": m.headers.get(H_ATTEMPTS, ""),
            "error_class": m.headers.get(H_ERROR_CLASS, ""),
            "error": m.headers.get(H_ERROR_MESSAGE, ""),
            "value_preview": m.value[:120].decode("utf-8", "replace"),
        }
        for m in messages
    ]
    if as_json:
        print(json.dumps(rows, indent=2))
        return
    table = Table("partition/offset", "key", "bytes", "group", "error")
    for r in rows:
        table.add_row(
            f"{r['partition']}/{r['offset']}",
            str(r["key"]),
            str(r["bytes"]),
            str(r["group"]),
            escape(f"{r['error_class']}: {r['error']}"),
        )
    console.print(table)
    console.print(f"{len(rows)} dead letter(s) on {dlq}")


@app.command("replay")
def dlq_replay(
    topic: Annotated[str, typer.Argument(help="source topic whose dead letters to re-drive")],
    bootstrap: Bootstrap = DEFAULT_BOOTSTRAP,
    key_prefix: Annotated[str, typer.Option(help="only keys starting with this (e.g. 'tenant/')")] = "",
    config: ConfigFile = None,
) -> None:
    """Publish dead letters back to their source topic (original bytes and headers). Each dead letter is
    replayed once: progress is committed in the consumer group 'isthmus-dlq-replay'."""
    from isthmus_core.bus.kafka_tools import DEAD_LETTER_HEADERS, REPLAY_GROUP, read_topic, republish
    from isthmus_core.bus.port import H_SOURCE_TOPIC

    dlq = _dlq_topic(topic)
    source = dlq.removesuffix(".dlq")

    security = kafka_security(config)

    async def main() -> int:
        messages, commit = await read_topic(
            bootstrap, dlq, key_prefix=key_prefix, group=REPLAY_GROUP, security=security
        )
        n = await republish(
            bootstrap,
            messages,
            lambda m: m.headers.get(H_SOURCE_TOPIC, source),
            strip=DEAD_LETTER_HEADERS,
            security=security,
        )
        assert commit is not None
        await commit()
        return n

    n = run(main())
    console.print(f"replayed {n} dead letter(s) from {dlq} to {source}")
